//! Opening the agent side of a proxied WebSocket: `GET <agent>/ws` with the
//! agent's bearer token, upgraded by hyper, handed over as the bare TCP
//! stream (plus any bytes the agent sent right behind its 101, such as its
//! `hello`) so the proxy can relay bytes rather than re-frame messages.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{
    AUTHORIZATION, CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use dispatch_api::ErrorCode;
use dispatch_api::rest::ApiError;

use crate::backend::AgentEndpoint;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a refusal's body read for its message.
const REFUSAL_BODY_BYTES: usize = 4 << 10;

/// Why the agent side could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered (yet): the agent may be starting or restarting.
    #[error("{0}")]
    Unreachable(String),
    /// The agent answered, and not with 101 (its own reason when it gave
    /// one as `{code, message}`): trying again will not change that soon.
    #[error("the agent refused the connection: {message}")]
    Refused {
        status: hyper::StatusCode,
        code: Option<ErrorCode>,
        message: String,
    },
}

/// An open WebSocket to an agent, after the handshake.
pub struct AgentConn {
    pub tcp: TcpStream,
    /// Bytes of the WebSocket stream read along with the handshake.
    pub early: Bytes,
}

pub async fn connect(ep: &AgentEndpoint) -> Result<AgentConn, ConnectError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(ep))
        .await
        .map_err(|_| ConnectError::Unreachable("connecting to the agent timed out".to_owned()))?
}

async fn connect_inner(ep: &AgentEndpoint) -> Result<AgentConn, ConnectError> {
    let unreachable = ConnectError::Unreachable;
    let authority = ep
        .base_url
        .strip_prefix("http://")
        .ok_or_else(|| unreachable(format!("unsupported agent url {}", ep.base_url)))?;
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|e| unreachable(format!("connecting to the agent: {e}")))?;
    // Terminal echo is latency-bound: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(format!("agent handshake: {e}")))?;
    // Ends once the upgrade hands the connection over.
    tokio::spawn(conn.with_upgrades());

    let key = generate_key();
    let req = Request::get("/ws")
        .header(HOST, authority)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_KEY, &key)
        .header(AUTHORIZATION, format!("Bearer {}", ep.token))
        .body(Empty::<Bytes>::new())
        .map_err(|_| unreachable("agent token is not a valid header".to_owned()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(format!("connecting to the agent: {e}")))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(resp).await);
    }
    let accept_ok = resp
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes());
    if !accept_ok {
        return Err(unreachable(
            "connecting to the agent: wrong Sec-WebSocket-Accept".to_owned(),
        ));
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| unreachable(format!("agent upgrade: {e}")))?;
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| unreachable("agent upgrade: not a TCP stream".to_owned()))?;
    Ok(AgentConn {
        tcp: parts.io.into_inner(),
        early: parts.read_buf,
    })
}

/// The agent's refusal of the upgrade, with its `{code, message}` if it
/// sent one (read up to a bound).
async fn refusal(resp: hyper::Response<hyper::body::Incoming>) -> ConnectError {
    let status = resp.status();
    let limited = http_body_util::Limited::new(resp.into_body(), REFUSAL_BODY_BYTES);
    let said = http_body_util::BodyExt::collect(limited)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<ApiError>(&b.to_bytes()).ok());
    match said {
        Some(e) => ConnectError::Refused {
            status,
            code: Some(e.code),
            message: e.message,
        },
        None => ConnectError::Refused {
            status,
            code: None,
            message: format!("it answered {status} to the WebSocket upgrade"),
        },
    }
}
