//! The router driven in-process (`router().oneshot(..)`, as in axum's
//! examples/testing) over a fake backend: routing, authentication, the
//! cross-site rule, ownership and error shapes, without a socket or an agent
//! process. The real backends and the proxy are tested over real sockets in
//! the other files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dispatch_api::rest::{ApiError, WorkspaceInfo, WorkspacePhase};
use dispatch_gateway::auth::{Auth, AuthSettings, KeyStore, LoginLimiter, TokenSigner};
use dispatch_gateway::backend::{AgentEndpoint, BackendError, WorkspaceBackend};
use dispatch_gateway::{AppState, Approvals, Metrics, Registry, WorkspaceName, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789ab";
const HOST: &str = "gateway.test:8787";
const ORIGIN: &str = "http://gateway.test:8787";

/// Workspaces in a map; no agent runs, unless a test names a server to
/// stand for one.
#[derive(Default)]
struct FakeBackend {
    workspaces: Mutex<BTreeMap<(String, String), WorkspaceInfo>>,
    agent: Mutex<Option<AgentEndpoint>>,
}

impl FakeBackend {
    fn get(&self, owner: &str, name: &WorkspaceName) -> Result<WorkspaceInfo, BackendError> {
        self.workspaces
            .lock()
            .unwrap()
            .get(&(owner.to_owned(), name.to_string()))
            .cloned()
            .ok_or_else(|| BackendError::NoSuchWorkspace(name.to_string()))
    }
}

#[async_trait]
impl WorkspaceBackend for FakeBackend {
    async fn list(&self, owner: &str) -> Result<Vec<WorkspaceInfo>, BackendError> {
        let all = self.workspaces.lock().unwrap();
        Ok(all.values().filter(|w| w.owner == owner).cloned().collect())
    }

    async fn create(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        let mut all = self.workspaces.lock().unwrap();
        let key = (owner.to_owned(), name.to_string());
        if all.contains_key(&key) {
            return Err(BackendError::AlreadyExists(name.to_string()));
        }
        let info = WorkspaceInfo {
            name: name.to_string(),
            owner: owner.to_owned(),
            phase: WorkspacePhase::Stopped,
            created: 1,
            last_accessed: None,
            message: None,
        };
        all.insert(key, info.clone());
        Ok(info)
    }

    async fn status(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        self.get(owner, name)
    }

    async fn open(&self, owner: &str, name: &WorkspaceName) -> Result<WorkspaceInfo, BackendError> {
        self.get(owner, name)?;
        Err(BackendError::Unavailable(
            "the fake backend runs no agents".into(),
        ))
    }

    async fn delete(&self, owner: &str, name: &WorkspaceName) -> Result<(), BackendError> {
        self.get(owner, name)?;
        let key = (owner.to_owned(), name.to_string());
        self.workspaces.lock().unwrap().remove(&key);
        Ok(())
    }

    async fn endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
        _wait: Duration,
    ) -> Result<AgentEndpoint, BackendError> {
        self.get(owner, name)?;
        self.agent
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| BackendError::Unavailable("the fake backend runs no agents".into()))
    }

    async fn shutdown(&self) {}
}

async fn app() -> (Router, tempfile::TempDir) {
    let (app, dir, _) = app_with_backend().await;
    (app, dir)
}

async fn app_with_backend() -> (Router, tempfile::TempDir, Arc<FakeBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("gateway.db")).unwrap();
    let mut keys = KeyStore::default();
    keys.add("alice", ALICE).unwrap();
    keys.add("bob", BOB).unwrap();
    let auth = Auth::new(
        AuthSettings {
            keys,
            signer: TokenSigner::new(b"0123456789abcdef0123456789abcdef"),
            limiter: LoginLimiter::new(5, 1),
            ttl: Duration::from_secs(3600),
            secure_cookies: false,
        },
        registry,
    )
    .await
    .unwrap();
    let backend = Arc::new(FakeBackend::default());
    let app = router(AppState {
        auth: Arc::new(auth),
        backend: backend.clone(),
        metrics: Metrics::default(),
        web_dir: None,
        shutdown: Default::default(),
        proxies: Default::default(),
        trusted_proxies: Arc::new([]),
        push: None,
        approvals: Approvals::new(backend.clone()),
    });
    (app, dir, backend)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> ApiError {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn code(&self) -> String {
        serde_json::to_value(self.error().code)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn bearer(key: &str, method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// A request from a browser with the cookie; `site` is its Sec-Fetch-Site.
fn browser(cookie: &str, site: &str, method: &str, uri: &str, body: &str) -> Request<Body> {
    let origin = if site == "same-origin" {
        ORIGIN
    } else {
        "http://evil.example"
    };
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .header("sec-fetch-site", site)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn workspaces_lifecycle_through_the_router() {
    let (app, _dir) = app().await;
    let r = send(
        &app,
        Request::get("/api/workspaces").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthorized");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");

    let r = send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"w1"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["name"], "w1");
    let r = send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"w1"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "already_exists".into())
    );
    let r = send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"W_1"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_field".into())
    );
    let r = send(&app, bearer(ALICE, "POST", "/api/workspaces", "{")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_message".into())
    );

    let r = send(&app, bearer(ALICE, "GET", "/api/workspaces", "")).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = send(&app, bearer(ALICE, "GET", "/api/workspaces/w1", "")).await;
    assert_eq!(r.json()["phase"], "Stopped");
    let r = send(&app, bearer(ALICE, "POST", "/api/workspaces/w1/open", "")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    assert!(r.error().message.contains("runs no agents"));
    let r = send(
        &app,
        bearer(ALICE, "GET", "/api/workspaces/w1/sessions", ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    let r = send(&app, bearer(ALICE, "DELETE", "/api/workspaces/w1", "")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, bearer(ALICE, "GET", "/api/workspaces/w1", "")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "no_such_workspace".into())
    );
    let r = send(&app, bearer(ALICE, "GET", "/api/nope", "")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn a_user_sees_only_their_own_workspaces() {
    let (app, _dir) = app().await;
    send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"secret"}"#),
    )
    .await;
    let r = send(&app, bearer(BOB, "GET", "/api/workspaces", "")).await;
    assert_eq!(r.json(), serde_json::json!([]));
    for (method, uri) in [
        ("GET", "/api/workspaces/secret"),
        ("DELETE", "/api/workspaces/secret"),
        ("POST", "/api/workspaces/secret/open"),
        ("GET", "/api/workspaces/secret/sessions"),
    ] {
        let r = send(&app, bearer(BOB, method, uri, "")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
    let r = send(&app, bearer(ALICE, "GET", "/api/workspaces/secret", "")).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn cookie_writes_from_another_site_are_refused() {
    let (app, _dir) = app().await;
    let login = Request::post("/api/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"key":"{ALICE}"}}"#)))
        .unwrap();
    let r = send(&app, login).await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();

    for site in ["cross-site", "same-site"] {
        let r = send(
            &app,
            browser(&cookie, site, "POST", "/api/workspaces", r#"{"name":"w"}"#),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden".into()),
            "{site}"
        );
    }
    // Reading is not a cross-site write: SameSite=Strict keeps the cookie
    // off those anyway.
    let r = send(&app, browser(&cookie, "same-origin", "GET", "/api/me", "")).await;
    assert_eq!(r.json()["user"], "alice");
    let r = send(
        &app,
        browser(
            &cookie,
            "same-origin",
            "POST",
            "/api/workspaces",
            r#"{"name":"w"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = send(
        &app,
        browser(&cookie, "cross-site", "DELETE", "/api/workspaces/w", ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        browser(&cookie, "cross-site", "POST", "/api/logout", ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let r = send(
        &app,
        browser(&cookie, "same-origin", "POST", "/api/logout", ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, browser(&cookie, "same-origin", "GET", "/api/me", "")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_websocket_route_refuses_before_any_upgrade() {
    let (app, _dir) = app().await;
    send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"w"}"#),
    )
    .await;
    let r = send(&app, bearer(ALICE, "GET", "/api/workspaces/w/ws", "")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "bad_message".into())
    );
    assert!(
        r.error().message.contains("WebSocket upgrade"),
        "{}",
        r.error().message
    );
    let mut foreign = bearer(ALICE, "GET", "/api/workspaces/w/ws", "");
    foreign
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let r = send(&app, foreign).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Request::get("/api/workspaces/w/ws")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// An agent that refuses the upgrade as too busy is reported at once, in
/// its own words, instead of being retried as if it were restarting.
#[tokio::test]
async fn an_agent_refusing_the_websocket_is_reported_at_once() {
    let (app, _dir, backend) = app_with_backend().await;
    send(
        &app,
        bearer(ALICE, "POST", "/api/workspaces", r#"{"name":"w"}"#),
    )
    .await;
    let busy = Router::new().route(
        "/ws",
        axum::routing::get(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"code": "unavailable", "message": "too many connections (64)"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, busy).await });
    *backend.agent.lock().unwrap() = Some(AgentEndpoint {
        base_url: format!("http://{addr}"),
        token: "t".into(),
    });
    let mut req = Request::get("/api/workspaces/w/ws")
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    // What hyper would attach; never completes here, and is never needed.
    let on_upgrade = hyper::upgrade::on(&mut req);
    req.extensions_mut().insert(on_upgrade);
    let t = std::time::Instant::now();
    let r = send(&app, req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    assert!(
        r.error().message.contains("too many connections (64)"),
        "{}",
        r.error().message
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn health_and_security_headers() {
    let (app, _dir) = app().await;
    let r = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    for h in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(r.headers.contains_key(h), "{h}");
    }
    let r = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no web dir configured");
}
