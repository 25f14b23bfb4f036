//! A small HTTP client for the files and git routes of a real agent
//! (hyper, one connection per request), with streamed bodies.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame};

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    /// The stable error code of an error reply.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn bytes(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> Body {
    bytes(Bytes::new())
}

/// A body of `len` bytes made on the fly in chunks (byte i is `i % 251`),
/// so that the sender never holds it.
pub fn generated(len: u64) -> Body {
    const CHUNK: u64 = 1 << 20;
    let s = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= len {
            return None;
        }
        let n = CHUNK.min(len - at);
        let chunk: Vec<u8> = (at..at + n).map(|i| (i % 251) as u8).collect();
        Some((Ok(Frame::data(Bytes::from(chunk))), at + n))
    });
    StreamBody::new(s).boxed()
}

/// Sends a request to `addr` (`host:port`); reads the whole reply.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Reply {
    let (status, headers, mut body) = request_streamed(addr, method, path, headers, body).await;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.expect("reply body").into_data() {
            out.extend_from_slice(&d);
        }
    }
    Reply {
        status,
        headers,
        body: out,
    }
}

/// As [`request`], with the reply body left to the caller.
pub async fn request_streamed(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (u16, hyper::HeaderMap, hyper::body::Incoming) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender.send_request(req.body(body).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status.as_u16(), parts.headers, body)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
