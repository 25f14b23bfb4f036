//! The Dispatch agent: runs inside one workspace, hosts its sessions, and
//! serves them over a WebSocket (see `dispatch_api` for the protocol).
//!
//! Module map: [`config`] flags; [`auth`] the bearer token; [`http`] routes;
//! [`ws`] one client connection; [`state`] the agent and session creation;
//! [`registry`] sessions by id; [`session`] what all kinds share;
//! [`terminal`] PTY sessions; [`pty`] spawning and killing process trees;
//! [`ring`], [`output_log`], [`screen`] a terminal's output as memory, disk and
//! emulated screen; [`db`] SQLite; [`metrics`]; [`paths`]; [`ratelimit`].

pub mod auth;
pub mod claude;
pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
pub mod output_log;
pub mod paths;
pub mod pty;
pub mod ratelimit;
pub mod registry;
pub mod ring;
pub mod screen;
pub mod screen_worker;
pub mod session;
pub mod session_requests;
pub mod state;
pub mod terminal;
pub mod ws;

use std::io::Write;
use std::sync::Arc;

pub use config::Config;
pub use state::AgentState;

/// Binds, announces the address on stdout, and serves until SIGTERM or
/// SIGINT; then stops the sessions and returns.
pub async fn run(config: Config, token: auth::Token) -> anyhow::Result<()> {
    let state = AgentState::open(config, token)?;
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "DISPATCH_AGENT_LISTENING {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, workspace = %state.root.display(), "agent listening");
    let app = http::router(state.clone());
    let st = state.clone();
    let listener = axum::serve::ListenerExt::tap_io(listener, tune_socket);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: stopping sessions");
            st.stop_all("agent stopped").await;
            let _ = st.shutdown.send(true);
        })
        .await?;
    let _ = state.services.db.call(|_| Ok(())).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Keystrokes and their echo are small writes: no Nagle delay.
///
/// (TCP_NOTSENT_LOWAT, to keep a flood from queueing much ahead of an echo on
/// the same connection, was tried: with it a subscriber's socket sometimes
/// stayed unwritable for seconds, so it is not set.)
fn tune_socket(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// For code (the Claude sessions) that needs the state reachable from a
/// session.
pub type SharedState = Arc<AgentState>;
