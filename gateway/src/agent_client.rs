//! The few REST calls the gateway makes to an agent (`GET /sessions`,
//! `GET /claude/status`, answering a permission request), over plain
//! HTTP/1.1 on the agent's loopback (or pod) address.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::backend::AgentEndpoint;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest agent response read into memory.
const MAX_BODY: usize = 8 << 20;

/// `GET <path>` on the agent with its token; the JSON body when 200.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    ep: &AgentEndpoint,
    path: &str,
) -> Result<T, String> {
    get_json_within(ep, path, TIMEOUT).await
}

/// `GET <path>` that may take up to `timeout` (a long poll).
pub async fn get_json_within<T: serde::de::DeserializeOwned>(
    ep: &AgentEndpoint,
    path: &str,
    timeout: Duration,
) -> Result<T, String> {
    tokio::time::timeout(timeout, get_json_inner(ep, path))
        .await
        .map_err(|_| format!("agent GET {path} timed out"))?
}

type Body = http_body_util::Either<Empty<Bytes>, Full<Bytes>>;
type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// A connection to the agent, and the authority to name in requests.
async fn connect(ep: &AgentEndpoint) -> Result<(Sender, String), String> {
    let authority = ep
        .base_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported agent url {}", ep.base_url))?;
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connecting to the agent: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("agent handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, authority.to_owned()))
}

/// `POST <path>` with a JSON body: the status and (bounded) body.
pub async fn post_json<B: serde::Serialize>(
    ep: &AgentEndpoint,
    path: &str,
    body: &B,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    tokio::time::timeout(TIMEOUT, async {
        let (mut sender, authority) = connect(ep).await?;
        let req = Request::post(path)
            .header("host", authority)
            .header("authorization", format!("Bearer {}", ep.token))
            .header("content-type", "application/json")
            .body(http_body_util::Either::Right(Full::new(Bytes::from(json))))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("agent POST {path}: {e}"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("agent POST {path} body: {e}"))?
            .to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| format!("agent POST {path} timed out"))?
}

async fn get_json_inner<T: serde::de::DeserializeOwned>(
    ep: &AgentEndpoint,
    path: &str,
) -> Result<T, String> {
    let (mut sender, authority) = connect(ep).await?;
    let req = Request::get(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {}", ep.token))
        .body(http_body_util::Either::Left(Empty::<Bytes>::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("agent GET {path}: {e}"))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("agent GET {path} body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "agent GET {path}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("agent GET {path}: bad JSON: {e}"))
}
