//! The Dispatch agent: runs inside one workspace, hosts its sessions, and
//! serves them over a WebSocket (see `dispatch_api` for the protocol).
//!
//! Module map: [`config`] flags; [`auth`] the bearer token; [`http`] routes;
//! [`ws`] one client connection; [`agent`] the agent as opened at start;
//! [`sessions`] the sessions service (the kinds as one enum, restore,
//! stop-all); [`registry`] sessions by id and the gate new ones pass (one at
//! a time, within the limit); [`session`] what all kinds share; [`lock`];
//! [`memory`] giving freed memory back to the system;
//! [`terminal`] PTY sessions (PTY, ring, output log, emulated screen);
//! [`claude`] Claude sessions; [`procs`] finding and ending process trees;
//! [`db`] SQLite; [`event_log_bounds`] what the event log
//! keeps; [`workspace_identity`] which workspace the state belongs to;
//! [`outbox`] what attachments send to a client; [`metrics`]; [`paths`];
//! [`ratelimit`]; [`holder`] shells that outlive the agent; [`leftovers`]
//! what sessions of a crashed run left running; [`files`] the workspace's
//! files over HTTP, confined to its root; [`git`] git over HTTP; [`turns`]
//! each Claude turn's changes, with undo.

pub mod agent;
pub mod auth;
pub mod claude;
pub mod claude_routes;
pub mod config;
pub mod db;
pub mod event_log_bounds;
pub mod files;
pub mod git;
pub mod holder;
pub mod http;
pub mod leftovers;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod paths;
pub mod procs;
pub mod ratelimit;
pub mod registry;
pub mod session;
pub mod session_requests;
pub mod sessions;
pub mod terminal;
pub mod turns;
pub mod workspace_identity;
pub mod ws;

pub use agent::Agent;
pub use config::Config;

/// Binds, announces the address on stdout, and serves until SIGTERM or
/// SIGINT; then stops the sessions and returns.
pub async fn run(config: Config, token: auth::Token) -> anyhow::Result<()> {
    let stop = dispatch_process::shutdown_signal();
    let inherited = config.listen_fd.map(inherited_listener).transpose()?;
    let state = Agent::open(config, token)?;
    let listener = match inherited {
        Some(l) => tokio::net::TcpListener::from_std(l)?,
        None => tokio::net::TcpListener::bind(state.config.listen).await?,
    };
    let addr = listener.local_addr()?;
    if let Some(holder) = &state.terminals.holder {
        // The holder announces the address, once, for all its agents.
        holder.ready();
    } else {
        dispatch_process::announce(&[&format!("DISPATCH_AGENT_LISTENING {addr}")])?;
    }
    tracing::info!(%addr, workspace = %state.root.display(), "agent listening");
    let app = http::router(state.clone());
    let st = state.clone();
    let listener = axum::serve::ListenerExt::tap_io(listener, tune_socket);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down: stopping sessions");
            st.sessions.stop_all("agent stopped").await;
            let _ = st.shutdown.send(true);
        })
        .await?;
    // axum's graceful shutdown does not wait for WebSocket connections (an
    // upgraded connection is no longer its to track), and returning ends the
    // process, resetting their sockets: wait (bounded) until each has sent
    // its sessions' `session.ended` and closed, giving back its slot.
    let slots = state.config.max_connections;
    let closed = tokio::time::timeout(
        ws::SHUTDOWN_DRAIN + std::time::Duration::from_secs(2),
        state.connection_slots.acquire_many(slots),
    )
    .await;
    if closed.is_err() {
        tracing::warn!("shutting down with connections still open");
    }
    let _ = state.services.db.call(|_| Ok(())).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The listening socket a holder passed down as `fd`: kept from the shells,
/// non-blocking for tokio.
fn inherited_listener(fd: i32) -> anyhow::Result<std::net::TcpListener> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
    // SAFETY: only borrowed to check that it is open.
    fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD)
        .map_err(|e| anyhow::anyhow!("--listen-fd {fd}: {e}"))?;
    // SAFETY: open (checked above), passed to this process alone.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let l = std::net::TcpListener::from(owned);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Keystrokes and their echo are small writes: no Nagle delay.
///
/// (TCP_NOTSENT_LOWAT, to keep a flood from queueing much ahead of an echo on
/// the same connection, was tried: with it a subscriber's socket sometimes
/// stayed unwritable for seconds, so it is not set.)
fn tune_socket(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}
