//! The WebSocket proxy: browser <-> gateway <-> agent, every frame (text,
//! binary, ping, pong, close) passed through unchanged both ways.
//!
//! Once both handshakes are done the gateway relays bytes, not messages: the
//! agent's frames are unmasked, as the browser expects a server's to be, and
//! the browser's are masked, as the agent expects a client's to be. So a
//! frame is neither decoded nor re-encoded on the way (`scripts/bench-gateway.sh`:
//! a replay through the gateway went from 0.59x to 0.97x of direct, and an
//! idle connection from 23 to 8 KiB); the gateway only tracks frame
//! boundaries (`frames`), to write frames of its own at a boundary: an
//! `error` and a close 1012 when the agent dies, a close 1001 when the
//! gateway shuts down, a close 1002 to a browser that sends no valid frames.
//! When the agent ends a connection itself (its own close frame, e.g. 1009
//! for a message over its limit), that close is what the browser gets.

mod agent_conn;
pub mod frames;
mod relay;
pub mod upgrade;

use std::pin::pin;
use std::time::Duration;

use dispatch_api::ErrorCode;
use dispatch_api::protocol::ServerMessage;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

pub use agent_conn::{AgentConn, ConnectError, connect as connect_agent};
use frames::Sender;
use relay::{Buffer, End, Half, IoSource, Source, TcpSource, relay};
pub use upgrade::{RelayContext, Upgrade};

use crate::metrics::{DirectionLabel, Metrics};

/// Largest frame accepted from either side. Above the agent's own frame
/// limit, so the agent (not the gateway) answers oversized input with its
/// `too_large` error.
pub const MAX_FRAME_BYTES: u64 = 16 << 20;
/// Bytes read from the browser's socket at a time, held for the connection's
/// life (most of an idle connection's cost; input is small).
pub const BROWSER_READ_BYTES: usize = 4 << 10;
/// Bytes read from the agent's socket at a time: output is the hot path.
/// Held only while output flows. Larger than the agent's output frames
/// (128 KiB of payload), so they go out whole.
pub const AGENT_READ_BYTES: usize = 160 << 10;
/// How long the closing handshake may take once one side has gone.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Proxies one browser connection to one agent connection until either ends.
/// When the agent goes away without closing, the browser gets an `error`
/// (code `unavailable`) and a close with code 1012 (service restart), so it
/// knows to reconnect and resume with `session.attach {since}`.
pub async fn run(
    browser: Upgraded,
    agent: AgentConn,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let counter = |direction| {
        metrics
            .proxied_bytes
            .get_or_create(&DirectionLabel { direction })
            .clone()
    };
    let (to_agent, to_client) = (counter("to_agent"), counter("to_client"));
    metrics.ws_open.inc();

    let (b_read, mut b_write) = tokio::io::split(TokioIo::new(browser));
    let mut b_read = IoSource(b_read);
    let AgentConn { tcp, early } = agent;
    let (a_read, mut a_write) = tcp.into_split();
    let mut a_read = TcpSource(a_read);
    let mut down = Half::new(Sender::Server, MAX_FRAME_BYTES);
    let mut up = Half::new(Sender::Client, MAX_FRAME_BYTES);
    let mut down_buf = Buffer::with_bytes(AGENT_READ_BYTES, &early);
    // It may hold on to all of hyper's read buffer.
    drop(early);
    let mut up_buf = Buffer::new(BROWSER_READ_BYTES);

    // Which direction ended first and how; the other keeps going while a
    // closing handshake completes. `agent_closed`: a write to the agent
    // failed because the agent had closed the connection itself.
    let (from_agent, end, agent_closed) = {
        let mut d = pin!(relay(
            &mut a_read,
            &mut b_write,
            &mut down,
            &mut down_buf,
            &to_client
        ));
        let mut u = pin!(relay(
            &mut b_read,
            &mut a_write,
            &mut up,
            &mut up_buf,
            &to_agent
        ));
        let first = tokio::select! {
            e = &mut d => (true, Some(e)),
            e = &mut u => (false, Some(e)),
            () = shutdown.cancelled() => (true, None),
        };
        match first {
            // A close went one way: let the other side's close come back.
            (true, Some(End::Closed)) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut u).await;
                (true, Some(End::Closed), false)
            }
            (false, Some(End::Closed)) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut d).await;
                (false, Some(End::Closed), false)
            }
            // Writing to the agent failed. Either it is gone, or it closed
            // this connection itself (a message over its size limit: it
            // stops reading, and the unread rest resets the socket) after
            // sending its own error and close, which are still to be read.
            // Only the first is a crash to report.
            (false, Some(End::SinkLost(why))) => {
                match tokio::time::timeout(CLOSE_GRACE, &mut d).await {
                    Ok(End::Closed) => (true, Some(End::Closed), true),
                    _ => (false, Some(End::SinkLost(why)), false),
                }
            }
            (from_agent, end) => (from_agent, end, false),
        }
    };
    let why = match &end {
        None => "gateway shutting down".to_owned(),
        Some(End::Closed) => "closed".to_owned(),
        Some(End::SourceLost(why) | End::SinkLost(why)) => why.clone(),
        Some(End::Invalid(e)) => e.to_string(),
    };
    tracing::debug!(from_agent, agent_closed, why, "proxied websocket ending");

    let agent_gone = matches!(
        (from_agent, &end),
        (true, Some(End::SourceLost(_) | End::Invalid(_))) | (false, Some(End::SinkLost(_)))
    );
    let browser_invalid = matches!((from_agent, &end), (false, Some(End::Invalid(_))));
    let discard = Counter::default();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if agent_gone {
            let msg = ServerMessage::error(
                ErrorCode::Unavailable,
                "the workspace's agent stopped; it is being restarted: reconnect and attach with `since` to resume",
                None,
            );
            if down.sink_at_message_boundary() {
                let mut out = frames::text(Sender::Server, &msg.to_json());
                out.extend(frames::close(
                    Sender::Server,
                    CloseCode::Restart,
                    "agent restarting; reconnect",
                ));
                let _ = write_frames(&mut b_write, &out).await;
                // Wait for the browser's close reply.
                drain(&mut b_read, &mut up, &mut up_buf, &discard).await;
            }
        } else if end.is_none() || browser_invalid {
            let (code, reason) = if browser_invalid {
                (CloseCode::Protocol, "invalid WebSocket frames")
            } else {
                (CloseCode::Away, "gateway shutting down")
            };
            if down.sink_at_frame_boundary() {
                let _ = write_frames(&mut b_write, &frames::close(Sender::Server, code, reason)).await;
            }
            if up.sink_at_frame_boundary() {
                let away = frames::close(Sender::Client, CloseCode::Away, "client gone");
                let _ = write_frames(&mut a_write, &away).await;
            }
            tokio::join!(
                drain(&mut b_read, &mut up, &mut up_buf, &discard),
                drain(&mut a_read, &mut down, &mut down_buf, &discard),
            );
        } else if agent_closed {
            // The agent's close reached the browser: read on to its reply.
            drain(&mut b_read, &mut up, &mut up_buf, &discard).await;
        } else if !matches!(end, Some(End::Closed)) {
            // The browser went away: tell the agent, and let it answer.
            if up.sink_at_frame_boundary() {
                let away = frames::close(Sender::Client, CloseCode::Away, "client gone");
                let _ = write_frames(&mut a_write, &away).await;
                drain(&mut a_read, &mut down, &mut down_buf, &discard).await;
            }
        }
    })
    .await;
    // The server end closes TCP first (RFC 6455, 7.1.1).
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = b_write.shutdown().await;
        let _ = a_write.shutdown().await;
    })
    .await;
    metrics.ws_open.dec();
}

async fn write_frames<W: AsyncWrite + Unpin>(dst: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    dst.write_all(bytes).await?;
    dst.flush().await
}

/// Reads `src` until its close frame (or its end), discarding everything.
async fn drain<S: Source>(src: &mut S, half: &mut Half, buf: &mut Buffer, discard: &Counter) {
    relay(src, &mut tokio::io::sink(), half, buf, discard).await;
}
