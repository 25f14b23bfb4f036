//! What handlers take from a request before they run: the client's address,
//! the authenticated caller (refusing cross-site writes), the workspace
//! named in the path.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use dispatch_api::ErrorCode;

use crate::auth::origin::{SiteHeaders, cross_site, origin_matches_host};
use crate::auth::{Principal, Via};
use crate::client_addr::client_ip;
use crate::fail::Fail;
use crate::names::WorkspaceName;
use crate::state::AppState;

/// Extractor: the client's address (see `client_addr`).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, forwarded, &st.trusted_proxies)))
    }
}

/// A workspace name from the outside, or 400 `invalid_field` saying why.
pub fn workspace_name(name: &str) -> Result<WorkspaceName, Fail> {
    WorkspaceName::new(name).map_err(|e| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            e.to_string(),
        )
    })
}

/// The headers the cross-site check reads.
pub fn site_headers(headers: &HeaderMap) -> SiteHeaders<'_> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    SiteHeaders {
        sec_fetch_site: get("sec-fetch-site"),
        origin: get(ORIGIN.as_str()),
        host: get(HOST.as_str()),
    }
}

/// 403 for a request another site made (see `auth::origin::cross_site`).
pub fn refuse_cross_site(headers: &HeaderMap, what: &str) -> Result<(), Fail> {
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
pub fn authenticate(
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
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    match (get(ORIGIN), get(HOST)) {
        (Some(o), Some(h)) => origin_matches_host(o, h),
        _ => false,
    }
}
