//! The gateway's REST API and the per-workspace WebSocket route (see the
//! contracts). Errors are `ApiError {code, message}` with a fitting status.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, LOCATION, ORIGIN, RETRY_AFTER,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, SET_COOKIE, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_api::rest::{ApiError, CreateWorkspace, LoginRequest, Me, WorkspaceInfo};
use dispatch_api::{ErrorCode, SessionInfo};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::origin::{SiteHeaders, cross_site, origin_matches_host};
use crate::auth::{AuthFailure, Principal, Via, cookie, now_ms};
use crate::backend::BackendError;
use crate::client_addr::ClientIp;
use crate::names::WorkspaceName;
use crate::proxy;

/// How long a WebSocket upgrade or a sessions call waits for an agent to start.
const AGENT_WAIT: Duration = Duration::from_secs(20);

/// An error response: status, stable code, message.
#[derive(Debug)]
pub struct Fail {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Fail {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Fail {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code,
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl From<AuthFailure> for Fail {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Unauthorized(why) => {
                Fail::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, why)
            }
            AuthFailure::RateLimited(after) => Fail {
                retry_after: Some(after),
                ..Fail::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    "too many failed attempts from this address; try again later",
                )
            },
        }
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        let status = match e {
            BackendError::NoSuchWorkspace(_) => StatusCode::NOT_FOUND,
            BackendError::AlreadyExists(_) => StatusCode::CONFLICT,
            BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BackendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("backend: {e}");
        }
        Fail::new(status, e.code(), e.to_string())
    }
}

fn bad_json(e: JsonRejection) -> Fail {
    Fail::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::BadMessage,
        e.body_text(),
    )
}

fn workspace_name(name: &str) -> Result<WorkspaceName, Fail> {
    WorkspaceName::new(name).map_err(|e| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            e.to_string(),
        )
    })
}

fn site_headers(headers: &HeaderMap) -> SiteHeaders<'_> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    SiteHeaders {
        sec_fetch_site: get("sec-fetch-site"),
        origin: get(ORIGIN.as_str()),
        host: get(HOST.as_str()),
    }
}

/// 403 for a request another site made (see `auth::origin::cross_site`).
fn refuse_cross_site(headers: &HeaderMap, what: &str) -> Result<(), Fail> {
    match cross_site(site_headers(headers)) {
        None => Ok(()),
        Some(why) => Err(Fail::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("{what} refused: {why}"),
        )),
    }
}

/// Authenticates the request; for cookie-authenticated requests that change
/// something, also refuses cross-site ones (SameSite=Strict is the first
/// line against them; this is the second).
fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    method: &Method,
    client: IpAddr,
) -> Result<Principal, Fail> {
    let p = st.auth.authenticate(headers, client)?;
    if matches!(p.via, Via::Cookie(_)) && !matches!(*method, Method::GET | Method::HEAD) {
        refuse_cross_site(headers, "cross-site request")?;
    }
    Ok(p)
}

/// Extractor: the authenticated caller (see `authenticate`).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Fail;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Fail> {
        let Ok(ClientIp(client)) = ClientIp::from_request_parts(parts, st).await;
        authenticate(st, &parts.headers, &parts.method, client).map(Caller)
    }
}

/// Extractor: the authenticated caller and the workspace named in the path,
/// checked only for being a valid name (whether it is the caller's is the
/// backend's to answer, with the same 404 as a missing one).
pub struct CallerWorkspace {
    pub user: String,
    pub name: WorkspaceName,
}

impl FromRequestParts<AppState> for CallerWorkspace {
    type Rejection = Fail;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Fail> {
        let Caller(p) = Caller::from_request_parts(parts, st).await?;
        let Path(name) = Path::<String>::from_request_parts(parts, st)
            .await
            .map_err(|e| {
                Fail::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadMessage,
                    e.body_text(),
                )
            })?;
        Ok(CallerWorkspace {
            user: p.user,
            name: workspace_name(&name)?,
        })
    }
}

/// Whether Origin is present and names the Host this request was sent to.
fn origin_ok(headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    match (get(ORIGIN), get(HOST)) {
        (Some(o), Some(h)) => origin_matches_host(o, h),
        _ => false,
    }
}

fn login_response(
    st: &AppState,
    headers: &HeaderMap,
    token: &str,
    user: &str,
    expires: i64,
) -> Response {
    let set = cookie::set_session(
        token,
        st.auth.ttl().as_secs(),
        st.auth.cookie_secure(headers),
    );
    let mut resp = Json(Me {
        user: user.to_owned(),
        expires,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

fn login_failed(st: &AppState, f: &AuthFailure) {
    st.metrics.login(match f {
        AuthFailure::RateLimited(_) => "rate_limited",
        AuthFailure::Unauthorized(_) => "wrong_key",
    });
}

/// `POST /api/login {key}`. Refused from another site before the key is
/// looked at.
pub async fn login(
    State(st): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, Fail> {
    if let Err(f) = refuse_cross_site(&headers, "login") {
        st.metrics.login("cross_site");
        return Err(f);
    }
    let Json(req) = body.map_err(bad_json)?;
    match st.auth.login(client, &req.key) {
        Ok((token, claims)) => {
            st.metrics.login("ok");
            Ok(login_response(
                &st,
                &headers,
                &token,
                &claims.user,
                claims.expires,
            ))
        }
        Err(f) => {
            login_failed(&st, &f);
            Err(f.into())
        }
    }
}

#[derive(Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

/// The page a login link followed from another site gets: the key was not
/// tried and no cookie is set.
fn cross_site_login_page(why: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Login refused · Dispatch</title>\n\
         <h1>Login refused</h1>\n\
         <p>This login link was opened from another site ({why}), so it was not used: \
         a link from elsewhere could log you in to someone else's account.</p>\n\
         <p>Paste the link into the address bar yourself, or \
         <a href=\"/login\">log in here</a>.</p>\n"
    );
    (
        StatusCode::FORBIDDEN,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /login?key=K`: the printed login URL. Sets the cookie and redirects
/// to `/` (so the key leaves the address bar); without `key` it is the web
/// UI's login page; with a wrong key, back there with `?error=<code>`;
/// followed from another site, a page saying it was refused.
pub async fn login_link(
    State(st): State<AppState>,
    ClientIp(client): ClientIp,
    Query(q): Query<KeyQuery>,
    req: Request,
) -> Response {
    let Some(key) = q.key else {
        return crate::web::index(&st, req).await;
    };
    if let Some(why) = cross_site(site_headers(req.headers())) {
        st.metrics.login("cross_site");
        return cross_site_login_page(why);
    }
    let redirect = |to: &str| {
        (
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
            )],
        )
            .into_response()
    };
    match st.auth.login(client, &key) {
        Ok((token, _claims)) => {
            st.metrics.login("ok");
            let set = cookie::set_session(
                &token,
                st.auth.ttl().as_secs(),
                st.auth.cookie_secure(req.headers()),
            );
            let mut resp = redirect("/");
            if let Ok(v) = HeaderValue::from_str(&set) {
                resp.headers_mut().insert(SET_COOKIE, v);
            }
            resp
        }
        Err(f) => {
            login_failed(&st, &f);
            let code = match f {
                AuthFailure::RateLimited(_) => ErrorCode::RateLimited,
                AuthFailure::Unauthorized(_) => ErrorCode::Unauthorized,
            };
            redirect(&format!("/login?error={code}"))
        }
    }
}

/// `POST /api/logout`: revokes the cookie's token and clears the cookie;
/// from another site, 403 and nothing changes.
pub async fn logout(
    State(st): State<AppState>,
    ClientIp(client): ClientIp,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    refuse_cross_site(&headers, "logout")?;
    if let Ok(Principal {
        via: Via::Cookie(claims),
        ..
    }) = authenticate(&st, &headers, &method, client)
    {
        st.auth.logout(&claims).await.map_err(|e| {
            Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                e.to_string(),
            )
        })?;
    }
    let clear = cookie::clear_session(st.auth.cookie_secure(&headers));
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /api/me`.
pub async fn me(State(st): State<AppState>, Caller(p): Caller) -> Result<Json<Me>, Fail> {
    let expires = match &p.via {
        Via::Cookie(c) => c.expires,
        // An access key does not expire; report what a login would give.
        Via::Bearer => now_ms() + st.auth.ttl().as_millis() as i64,
    };
    Ok(Json(Me {
        user: p.user,
        expires,
    }))
}

/// `GET /api/workspaces`: the caller's workspaces.
pub async fn list_workspaces(
    State(st): State<AppState>,
    Caller(p): Caller,
) -> Result<Json<Vec<WorkspaceInfo>>, Fail> {
    Ok(Json(st.backend.list(&p.user).await?))
}

/// `POST /api/workspaces {name}` -> 201.
pub async fn create_workspace(
    State(st): State<AppState>,
    Caller(p): Caller,
    body: Result<Json<CreateWorkspace>, JsonRejection>,
) -> Result<(StatusCode, Json<WorkspaceInfo>), Fail> {
    let Json(req) = body.map_err(bad_json)?;
    let name = workspace_name(&req.name)?;
    let info = st.backend.create(&p.user, &name).await?;
    tracing::info!(user = %p.user, workspace = %name, "workspace created");
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /api/workspaces/{name}`: one workspace's status.
pub async fn get_workspace(
    State(st): State<AppState>,
    w: CallerWorkspace,
) -> Result<Json<WorkspaceInfo>, Fail> {
    Ok(Json(st.backend.status(&w.user, &w.name).await?))
}

/// `POST /api/workspaces/{name}/open`: starts its agent.
pub async fn open_workspace(
    State(st): State<AppState>,
    w: CallerWorkspace,
) -> Result<Json<WorkspaceInfo>, Fail> {
    Ok(Json(st.backend.open(&w.user, &w.name).await?))
}

/// `DELETE /api/workspaces/{name}` -> 204.
pub async fn delete_workspace(
    State(st): State<AppState>,
    w: CallerWorkspace,
) -> Result<StatusCode, Fail> {
    st.backend.delete(&w.user, &w.name).await?;
    tracing::info!(user = %w.user, workspace = %w.name, "workspace deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/workspaces/{name}/sessions`: the agent's session list.
pub async fn list_sessions(
    State(st): State<AppState>,
    w: CallerWorkspace,
) -> Result<Json<Vec<SessionInfo>>, Fail> {
    let ep = st.backend.endpoint(&w.user, &w.name, AGENT_WAIT).await?;
    let sessions = crate::agent_client::get_json(&ep, "/sessions")
        .await
        .map_err(|e| Fail::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, e))?;
    Ok(Json(sessions))
}

fn header_has_token(headers: &HeaderMap, name: axum::http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `GET /api/workspaces/{name}/ws`: authenticates, checks Origin, connects
/// to the agent, and only then answers 101 and proxies. Any refusal is a
/// plain HTTP error, so no upgrade happens.
pub async fn workspace_ws(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    mut req: Request,
) -> Result<Response, Fail> {
    let headers = req.headers();
    // Browsers always send Origin on WebSockets, so a cookie without one is
    // refused; a script with a bearer key may omit it.
    let origin_required = matches!(p.via, Via::Cookie(_)) || headers.contains_key(ORIGIN);
    if origin_required && !origin_ok(headers) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "the Origin of this WebSocket is not this site",
        ));
    }
    let key = match headers.get(SEC_WEBSOCKET_KEY) {
        Some(k)
            if req.method() == Method::GET
                && header_has_token(headers, CONNECTION, "upgrade")
                && header_has_token(headers, UPGRADE, "websocket")
                && headers
                    .get(SEC_WEBSOCKET_VERSION)
                    .is_some_and(|v| v == "13") =>
        {
            k.clone()
        }
        _ => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadMessage,
                "expected a WebSocket upgrade (version 13)",
            ));
        }
    };
    let name = workspace_name(&name)?;
    // Right after an agent dies the backend may still hand out its old
    // address for a moment: retry until the restarted one answers.
    let deadline = tokio::time::Instant::now() + AGENT_WAIT;
    let agent = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ep = st.backend.endpoint(&p.user, &name, left).await?;
        match proxy::connect_agent(&ep).await {
            Ok(ws) => break ws,
            Err(e) if tokio::time::Instant::now() + Duration::from_millis(200) < deadline => {
                tracing::debug!(workspace = %name, "agent not reachable yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(Fail::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    e,
                ));
            }
        }
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadMessage,
            "this connection cannot be upgraded",
        ));
    };
    // The socket stays counted against its address while the proxy runs.
    let slot = req
        .extensions_mut()
        .remove::<std::sync::Arc<crate::server::ConnectionSlot>>();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let metrics = st.metrics.clone();
    let shutdown = st.shutdown.clone();
    let user = p.user.clone();
    st.proxies.spawn(async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(browser) => {
                tracing::debug!(%user, workspace = %name, "websocket proxied");
                proxy::run(browser, agent, metrics, shutdown).await;
            }
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(resp)
}

/// Unknown `/api/...` routes: a JSON 404, never the web UI's index.
pub async fn api_not_found() -> Fail {
    Fail::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BadMessage,
        "no such API route",
    )
}
