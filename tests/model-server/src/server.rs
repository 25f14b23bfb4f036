//! The HTTP side: loopback listener, the Messages API routes the CLI calls,
//! control routes for scripts, and a record of every request.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use crate::script::Turn;
use crate::sse::{MessageMeta, turn_events, turn_message};

/// Request bodies the CLI sends grow with the conversation.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as the server saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub uri: String,
    /// Lowercased names; credential values replaced by `<set>`.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a string when it was not JSON.
    pub body: Value,
    /// Index of the scripted turn that answered, for `/v1/messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<usize>,
}

impl RecordedRequest {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// Whether this is a model call (`POST /v1/messages`), not a token count.
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path() == "/v1/messages"
    }

    /// Every string anywhere in the request's `messages`, for asserting that
    /// a conversation's earlier turns were sent again.
    pub fn message_texts(&self) -> Vec<String> {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(o) => o
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "role" | "type" | "id" | "tool_use_id"))
                    .for_each(|(_, x)| walk(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.body["messages"], &mut out);
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Default)]
struct Inner {
    turns: VecDeque<Turn>,
    next_turn: usize,
    requests: Vec<RecordedRequest>,
    unexpected: Vec<String>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
    requests_total: Family<RouteLabel, Counter>,
    registry: Registry,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running model server. Dropping it stops the listener.
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _shutdown: oneshot::Sender<()>,
}

fn redact(name: &str, value: &str) -> String {
    match name {
        "x-api-key" | "authorization" | "proxy-authorization" | "cookie" => "<set>".into(),
        _ => value.to_owned(),
    }
}

fn record(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    turn: Option<usize>,
) {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_ascii_lowercase();
            let value = redact(&name, &String::from_utf8_lossy(v.as_bytes()));
            (name, value)
        })
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    shared.lock().requests.push(RecordedRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body,
        turn,
    });
    shared.changed.notify_waiters();
}

fn count(shared: &Shared, route: &str) {
    shared
        .requests_total
        .get_or_create(&RouteLabel {
            route: route.to_owned(),
        })
        .inc();
}

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared, "messages");
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            record(&shared, &method, &uri, &headers, &body, None);
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("body is not JSON: {e}"),
            );
        }
    };
    let (index, turn) = {
        let mut inner = shared.lock();
        let index = inner.next_turn;
        inner.next_turn += 1;
        match inner.turns.pop_front() {
            Some(t) => (index, t),
            None => {
                let note = format!("no scripted turn left for request {index}");
                tracing::warn!("{note}");
                inner.unexpected.push(note);
                (
                    index,
                    Turn::text("(dispatch-model-server: no scripted turn left)"),
                )
            }
        }
    };
    record(&shared, &method, &uri, &headers, &body, Some(index));
    tracing::info!(turn = index, "answering POST /v1/messages");

    if let Some(err) = &turn.error {
        let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(err.body())).into_response();
        if let Ok(v) = "req_scripted".parse() {
            resp.headers_mut().insert("request-id", v);
        }
        return resp;
    }

    let meta = MessageMeta {
        message_id: format!("msg_scripted_{index}"),
        model: parsed["model"]
            .as_str()
            .unwrap_or("claude-scripted")
            .to_owned(),
        tool_use_id: format!("toolu_scripted_{index}"),
        input_tokens: (body.len() as u64 / 4).max(1),
    };
    if parsed["stream"] != Value::Bool(true) {
        return axum::Json(turn_message(&turn, &meta)).into_response();
    }
    let chunks: Vec<String> = turn_events(&turn, &meta)
        .iter()
        .map(|e| e.encode())
        .collect();
    let delay = Duration::from_millis(turn.delay_ms.unwrap_or(0));
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), true),
        move |(mut it, first)| async move {
            let chunk = it.next()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok::<Bytes, Infallible>(Bytes::from(chunk)), (it, false)))
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("request-id", "req_scripted")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared, "count_tokens");
    record(&shared, &method, &uri, &headers, &body, None);
    axum::Json(json!({"input_tokens": (body.len() as u64 / 4).max(1)})).into_response()
}

async fn models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    count(&shared, "models");
    record(&shared, &method, &uri, &headers, &Bytes::new(), None);
    let model = json!({"type": "model", "id": "claude-scripted", "display_name": "Scripted",
                       "created_at": "2025-01-01T00:00:00Z"});
    axum::Json(json!({"data": [model], "has_more": false,
                      "first_id": "claude-scripted", "last_id": "claude-scripted"}))
    .into_response()
}

async fn unexpected(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared, "unexpected");
    let note = format!("unexpected request {method} {uri}");
    tracing::warn!("{note}");
    shared.lock().unexpected.push(note);
    record(&shared, &method, &uri, &headers, &body, None);
    api_error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!(
            "dispatch-model-server does not serve {method} {}",
            uri.path()
        ),
    )
}

async fn control_add_turns(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    count(&shared, "control");
    let text = String::from_utf8_lossy(&body);
    match crate::script::parse_turns(&text) {
        Ok(turns) => {
            let n = turns.len();
            shared.lock().turns.extend(turns);
            axum::Json(json!({"added": n})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": "bad_script", "message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn control_requests(State(shared): State<Arc<Shared>>) -> Response {
    count(&shared, "control");
    axum::Json(shared.lock().requests.clone()).into_response()
}

async fn control_unexpected(State(shared): State<Arc<Shared>>) -> Response {
    count(&shared, "control");
    axum::Json(shared.lock().unexpected.clone()).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &shared.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(models))
        .route("/control/turns", post(control_add_turns))
        .route("/control/requests", get(control_requests))
        .route("/control/unexpected", get(control_unexpected))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(unexpected)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The real node's bridge host address (tests/kube/real-node/lib.sh, `RN_HOST_IP`).
pub const REAL_NODE_BRIDGE_HOST: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 213, 0, 1));

impl ModelServer {
    /// Listens on `addr` (use port 0 for any free port) and serves `turns`.
    /// Only loopback addresses are accepted, and the real node's bridge host
    /// address (pods reach the server there; the bridge exists only on this
    /// machine, so binding it fails anywhere else): this server exists for tests.
    pub async fn start(addr: SocketAddr, turns: Vec<Turn>) -> anyhow::Result<ModelServer> {
        anyhow::ensure!(
            addr.ip().is_loopback() || addr.ip() == REAL_NODE_BRIDGE_HOST,
            "the model server listens on loopback (or the real node's bridge, \
             {REAL_NODE_BRIDGE_HOST}) only, not {addr}"
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut registry = Registry::default();
        let requests_total = Family::<RouteLabel, Counter>::default();
        registry.register(
            "model_server_requests",
            "Requests served, by route",
            requests_total.clone(),
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                turns: turns.into(),
                ..Inner::default()
            }),
            changed: Notify::new(),
            requests_total,
            registry,
        });
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("model server stopped: {e}");
            }
        });
        Ok(ModelServer {
            addr,
            shared,
            _shutdown: tx,
        })
    }

    /// On 127.0.0.1, any free port.
    pub async fn start_local(turns: Vec<Turn>) -> anyhow::Result<ModelServer> {
        ModelServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), turns).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What `ANTHROPIC_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends turns to the script.
    pub fn push(&self, turns: impl IntoIterator<Item = Turn>) {
        self.shared.lock().turns.extend(turns);
    }

    /// Scripted turns not yet played.
    pub fn remaining_turns(&self) -> usize {
        self.shared.lock().turns.len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Only the model calls (`POST /v1/messages`).
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_messages())
            .cloned()
            .collect()
    }

    /// Requests it had no answer for: unknown routes, or model calls after
    /// the script ran out.
    pub fn unexpected(&self) -> Vec<String> {
        self.shared.lock().unexpected.clone()
    }

    /// Waits until `n` model calls have arrived, or `timeout` passes.
    pub async fn wait_for_message_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>, Vec<RecordedRequest>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let got = self.message_requests();
            if got.len() >= n {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.message_requests());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bare HTTP/1.1 exchange over a real socket: what the server writes
    /// is exactly what the CLI would read.
    async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nx-api-key: sk-test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn plays_turns_in_order_and_records_requests() {
        let server = ModelServer::start_local(vec![Turn::text("one two"), Turn::error(529)])
            .await
            .unwrap();
        let body = r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = exchange(server.addr(), "POST", "/v1/messages?beta=true", body).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("text/event-stream"));
        assert!(out.contains("event: message_start"));
        assert!(out.contains(r#""text":"one ""#));
        assert!(out.contains("event: message_stop"));

        let out = exchange(server.addr(), "POST", "/v1/messages", body).await;
        assert!(out.starts_with("HTTP/1.1 529"), "{out}");
        assert!(out.contains("overloaded_error"));

        let reqs = server.message_requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].uri, "/v1/messages?beta=true");
        assert_eq!(reqs[0].turn, Some(0));
        assert_eq!(reqs[0].headers["x-api-key"], "<set>");
        assert_eq!(reqs[0].message_texts(), ["hi"]);
        assert!(server.unexpected().is_empty());

        // The script is used up: still a valid answer, but noted.
        let out = exchange(server.addr(), "POST", "/v1/messages", body).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(server.unexpected().len(), 1);
    }

    #[tokio::test]
    async fn unknown_routes_are_recorded_and_answered_404() {
        let server = ModelServer::start_local(vec![]).await.unwrap();
        let out = exchange(server.addr(), "GET", "/api/oauth/profile", "").await;
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        assert!(out.contains("not_found_error"));
        assert_eq!(
            server.unexpected(),
            ["unexpected request GET /api/oauth/profile"]
        );
        let out = exchange(server.addr(), "POST", "/v1/messages/count_tokens", "{}").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("input_tokens"));
    }

    #[tokio::test]
    async fn control_route_adds_turns_and_rejects_bad_scripts() {
        let server = ModelServer::start_local(vec![]).await.unwrap();
        let out = exchange(server.addr(), "POST", "/control/turns", r#"[{"text":"x"}]"#).await;
        assert!(out.contains(r#"{"added":1}"#), "{out}");
        assert_eq!(server.remaining_turns(), 1);
        let out = exchange(server.addr(), "POST", "/control/turns", r#"[{"bogus":1}]"#).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("bad_script"));
        assert_eq!(server.remaining_turns(), 1);
        let out = exchange(server.addr(), "GET", "/metrics", "").await;
        assert!(out.contains("model_server_requests_total"), "{out}");
    }

    #[tokio::test]
    async fn refuses_to_listen_beyond_loopback() {
        let err = ModelServer::start(SocketAddr::from(([0, 0, 0, 0], 0)), vec![]).await;
        assert!(err.is_err());
        // A private address that is not the real node's bridge is refused too.
        let err = ModelServer::start(SocketAddr::from(([10, 213, 0, 2], 0)), vec![]).await;
        assert!(err.is_err());
    }
}
