//! The WebSocket proxy: browser <-> gateway <-> agent, every frame (text,
//! binary, ping, pong, close) passed through unchanged both ways.
//!
//! Both sides are tokio-tungstenite streams (the browser side is upgraded by
//! hand from hyper, so one message type flows through without conversion).
//! Backpressure: each direction reads the next message only after the other
//! side has accepted the previous one into its bounded write buffer, so a slow
//! browser stalls reading from the agent (and TCP pushes back to the agent)
//! instead of the gateway buffering without bound. Small read buffers keep an
//! idle connection cheap.

use std::time::Duration;

use dispatch_api::ErrorCode;
use dispatch_api::protocol::ServerMessage;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::backend::AgentEndpoint;
use crate::metrics::{DirectionLabel, Metrics};

/// Largest message or frame accepted from either side. Above the agent's own
/// frame limit, so the agent (not the gateway) answers oversized input with
/// its `too_large` error.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Bytes read from the browser's socket at a time (preallocated: it is most
/// of an idle connection's cost; input is small).
pub const READ_BUFFER_BYTES: usize = 4 << 10;
/// Bytes read from the agent's socket at a time: output is the hot path, and
/// fewer, larger reads keep its throughput close to a direct connection.
pub const AGENT_READ_BUFFER_BYTES: usize = 16 << 10;
/// Small frames are gathered up to this much before a write system call.
pub const WRITE_BUFFER_BYTES: usize = 16 << 10;
/// How long the closing handshake may take once one side has gone.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// The agent side's settings: larger reads for the output stream.
pub fn agent_ws_config() -> WebSocketConfig {
    ws_config().read_buffer_size(AGENT_READ_BUFFER_BYTES)
}

/// Opens the agent side: `GET <agent>/ws` with the agent's bearer token.
pub async fn connect_agent(
    ep: &AgentEndpoint,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ep
        .ws_url()
        .into_client_request()
        .map_err(|e| format!("agent url: {e}"))?;
    let auth = format!("Bearer {}", ep.token)
        .parse()
        .map_err(|_| "agent token is not a valid header".to_owned())?;
    req.headers_mut().insert("authorization", auth);
    let (ws, _resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(req, Some(agent_ws_config()), true),
    )
    .await
    .map_err(|_| "connecting to the agent timed out".to_owned())?
    .map_err(|e| format!("connecting to the agent: {e}"))?;
    Ok(ws)
}

/// How one direction of the proxy ended.
#[derive(Debug)]
enum End {
    /// The source sent a Close frame, which was forwarded.
    Closed,
    /// The source vanished without a Close (reset, EOF, protocol error).
    SourceLost(String),
    /// Writing to the destination failed.
    SinkLost(String),
    /// The gateway is shutting down.
    Shutdown,
}

fn payload_len(m: &Message) -> u64 {
    match m {
        Message::Text(t) => t.len() as u64,
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len() as u64,
        Message::Close(_) | Message::Frame(_) => 0,
    }
}

/// Copies messages from `src` to `dst` until either ends. Messages already
/// waiting are fed together and flushed once, so bursts cost one write.
async fn pump<S, K>(src: &mut S, dst: &mut K, bytes: &Counter) -> End
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
    K: Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let mut next = src.next().await;
        loop {
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return End::SourceLost(e.to_string()),
                None => return End::SourceLost("connection closed without a close frame".into()),
            };
            let close = matches!(msg, Message::Close(_));
            bytes.inc_by(payload_len(&msg));
            if let Err(e) = dst.feed(msg).await {
                return End::SinkLost(e.to_string());
            }
            if close {
                let _ = dst.flush().await;
                return End::Closed;
            }
            // Anything more already here? (Polled once; a pending stream is
            // polled again, with a real waker, at the top of the loop.)
            match src.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        if let Err(e) = dst.flush().await {
            return End::SinkLost(e.to_string());
        }
    }
}

fn close_frame(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Proxies one browser connection to one agent connection until either ends.
/// When the agent goes away without closing, the browser gets an `error`
/// (code `unavailable`) and a close with code 1012 (service restart), so it
/// knows to reconnect and resume with `session.attach {since}`.
pub async fn run<B, A>(browser: B, agent: A, metrics: Metrics, shutdown: CancellationToken)
where
    B: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    A: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let to_agent = metrics
        .proxied_bytes
        .get_or_create(&DirectionLabel {
            direction: "to_agent",
        })
        .clone();
    let to_client = metrics
        .proxied_bytes
        .get_or_create(&DirectionLabel {
            direction: "to_client",
        })
        .clone();
    let (mut b_tx, mut b_rx) = browser.split();
    let (mut a_tx, mut a_rx) = agent.split();
    metrics.ws_open.inc();

    let (from_agent, end) = {
        let down = pump(&mut a_rx, &mut b_tx, &to_client);
        let up = pump(&mut b_rx, &mut a_tx, &to_agent);
        tokio::select! {
            e = down => (true, e),
            e = up => (false, e),
            () = shutdown.cancelled() => (true, End::Shutdown),
        }
    };
    let why = match &end {
        End::SourceLost(why) | End::SinkLost(why) => why.as_str(),
        End::Closed => "closed",
        End::Shutdown => "gateway shutting down",
    };
    tracing::debug!(from_agent, why, "proxied websocket ending");

    let agent_gone = matches!(
        (from_agent, &end),
        (true, End::SourceLost(_)) | (false, End::SinkLost(_))
    );
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if agent_gone {
            let msg = ServerMessage::error(
                ErrorCode::Unavailable,
                "the workspace's agent stopped; it is being restarted: reconnect and attach with `since` to resume",
                None,
            );
            let _ = b_tx.feed(Message::Text(msg.to_json().into())).await;
            let _ = b_tx
                .send(close_frame(CloseCode::Restart, "agent restarting; reconnect"))
                .await;
        } else if matches!(end, End::Shutdown) {
            let _ = b_tx
                .send(close_frame(CloseCode::Away, "gateway shutting down"))
                .await;
            let _ = a_tx.send(close_frame(CloseCode::Away, "gateway shutting down")).await;
        }
        // Finish the closing handshakes: flush pending close replies and let
        // the peers answer, without forwarding anything more.
        let _ = b_tx.close().await;
        let _ = a_tx.close().await;
        let drain_b = async { while let Some(Ok(_)) = b_rx.next().await {} };
        let drain_a = async { while let Some(Ok(_)) = a_rx.next().await {} };
        tokio::join!(drain_b, drain_a);
    })
    .await;
    metrics.ws_open.dec();
}
