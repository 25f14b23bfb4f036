//! The gateway's REST API and the per-workspace WebSocket route (see the
//! contracts). Errors are `ApiError {code, message}` with a fitting status.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_api::rest::{CreateWorkspace, LoginRequest, Me, WorkspaceInfo};
use dispatch_api::{ErrorCode, SessionInfo};
use serde::Deserialize;

use crate::auth::origin::cross_site;
use crate::auth::{AuthFailure, Principal, Via, cookie, now_ms};
use crate::extract::{
    Caller, CallerWorkspace, ClientIp, authenticate, origin_ok, refuse_cross_site, site_headers,
    workspace_name,
};
use crate::fail::{Fail, bad_json};
use crate::proxy::{self, ConnectError, RelayContext, Upgrade};
use crate::server::ConnectionSlot;
use crate::state::AppState;

/// How long a WebSocket upgrade or a sessions call waits for an agent to start.
pub const AGENT_WAIT: Duration = Duration::from_secs(20);

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

/// `GET /api/workspaces/{name}/ws`: authenticates, checks Origin, connects
/// to the agent, and only then answers 101 and proxies (see
/// `proxy::upgrade`).
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
    let upgrade = Upgrade::take(&mut req).map_err(|e| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadMessage,
            e.to_string(),
        )
    })?;
    let name = workspace_name(&name)?;
    // Right after an agent dies the backend may still hand out its old
    // address for a moment: retry until the restarted one answers.
    let deadline = tokio::time::Instant::now() + AGENT_WAIT;
    let agent = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ep = st.backend.endpoint(&p.user, &name, left).await?;
        match proxy::connect_agent(&ep).await {
            Ok(ws) => break ws,
            // A live agent said it cannot take this connection (too many):
            // its reason, at once, rather than retrying until the deadline.
            // Other refusals (a 401 from a stale address whose port a
            // restarted agent took) are retried like an unreachable agent.
            Err(ConnectError::Refused {
                status,
                code,
                message,
            }) if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::debug!(workspace = %name, %status, "agent refused: {message}");
                return Err(Fail::new(
                    status,
                    code.unwrap_or(ErrorCode::Unavailable),
                    format!("the workspace's agent refused the connection: {message}"),
                ));
            }
            Err(e) if tokio::time::Instant::now() + Duration::from_millis(200) < deadline => {
                tracing::debug!(workspace = %name, "agent not reachable yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(Fail::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    e.to_string(),
                ));
            }
        }
    };
    // The socket stays counted against its address while the proxy runs.
    let slot = req
        .extensions_mut()
        .remove::<std::sync::Arc<ConnectionSlot>>();
    let ctx = RelayContext {
        metrics: st.metrics.clone(),
        shutdown: st.shutdown.clone(),
        tasks: st.proxies.clone(),
    };
    Ok(upgrade.accept(agent, ctx, slot, format!("{}/{name}", p.user)))
}

/// Unknown `/api/...` routes: a JSON 404, never the web UI's index.
pub async fn api_not_found() -> Fail {
    Fail::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BadMessage,
        "no such API route",
    )
}
