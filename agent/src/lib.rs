//! The Dispatch agent: runs inside one workspace, hosts its sessions, and
//! serves them over a WebSocket (see `dispatch_api` for the protocol).
//!
//! The crate root exposes what the binary and the tests use: [`run`],
//! [`Config`], [`Token`], [`hold`] and [`event_kinds`]; the modules are
//! private.
//!
//! Module map: `config` flags; `auth` the bearer token; `http` routes;
//! `claude_routes` the REST routes for watchers of Claude; `ws` one client
//! connection; `session_requests` reading back a terminal's output and
//! renaming a session; `agent` the agent as opened at start; `sessions` the
//! sessions service (the kinds as one enum, restore, stop-all); `registry`
//! sessions by id and the gate new ones pass (one at a time, within the
//! limit); `session` what all kinds share; `lock`; `memory` giving freed
//! memory back to the system; `terminal` PTY sessions (PTY, ring, output
//! log, emulated screen); `claude` Claude sessions; `procs` finding and
//! ending process trees; `db` SQLite; `event_log_bounds` what the event log
//! keeps; `workspace_identity` which workspace the state belongs to;
//! `outbox` what attachments send to a client; `metrics`; `paths`;
//! `ratelimit`; `holder` shells that outlive the agent; `leftovers` what
//! sessions of a crashed run left running; `files` the workspace's files
//! over HTTP, confined to its root; `git` git over HTTP; `turns` each
//! Claude turn's changes, with undo.

mod agent;
mod auth;
mod claude;
mod claude_routes;
mod config;
mod db;
mod event_log_bounds;
mod files;
mod git;
mod holder;
mod http;
mod leftovers;
mod lock;
mod memory;
mod metrics;
mod outbox;
mod paths;
mod procs;
mod ratelimit;
mod registry;
mod session;
mod session_requests;
mod sessions;
mod terminal;
mod turns;
mod workspace_identity;
mod ws;

pub use auth::Token;
pub use config::Config;
/// The tests read the event log with it.
pub use db::event_kinds;
/// `dispatch-agent --hold`.
pub use holder::process::run as hold;

use agent::Agent;

/// Binds, announces the address on stdout, and serves until SIGTERM or
/// SIGINT; then stops the sessions and returns.
pub async fn run(config: Config, token: Token) -> anyhow::Result<()> {
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
