//! The web UI's build served at `/` (SPA: unknown paths get index.html) and
//! the security headers every response carries.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

/// Scripts, styles, fonts and images only from this origin; WebSockets to it
/// ('self' covers ws: and wss: of the same host); never framed. Inline
/// styles are allowed because xterm.js sets element styles for its renderer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Layers that add the security headers (unless a handler set its own).
pub fn security_headers() -> [SetResponseHeaderLayer<HeaderValue>; 5] {
    let h = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    [
        h(header::CONTENT_SECURITY_POLICY, CSP),
        h(header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        h(header::X_FRAME_OPTIONS, "DENY"),
        // The login URL carries the key: never leak it in a Referer.
        h(header::REFERRER_POLICY, "no-referrer"),
        h(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ]
}

fn no_web_dir() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the web UI is not configured: start the gateway with --web-dir web/dist\n",
    )
        .into_response()
}

/// Files at fixed names that must never be stale: the service worker (a
/// stale one keeps answering notifications the old way) and the manifest.
const ALWAYS_REVALIDATED: [&str; 2] = ["/sw.js", "/manifest.webmanifest"];

/// Serves a file of the web UI, or index.html for paths that are none.
pub async fn serve(st: &AppState, req: Request) -> Response {
    let Some(dir) = st.web_dir.as_deref() else {
        return no_web_dir();
    };
    let always_fresh = ALWAYS_REVALIDATED.contains(&req.uri().path());
    let svc = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
    match svc.oneshot(req).await {
        Ok(resp) => {
            let mut resp = with_cache_policy(resp.map(Body::new));
            if always_fresh && resp.status().is_success() {
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            }
            resp
        }
        Err(e) => match e {},
    }
}

/// index.html itself (for routes the gateway also answers, like `/login`).
pub async fn index(st: &AppState, req: Request) -> Response {
    let Some(dir) = st.web_dir.as_deref() else {
        return no_web_dir();
    };
    match ServeFile::new(Path::new(dir).join("index.html"))
        .oneshot(req)
        .await
    {
        Ok(resp) => with_cache_policy(resp.map(Body::new)),
        Err(e) => match e {},
    }
}

/// HTML is revalidated on every load (so a rebuilt UI shows at once); the
/// hashed assets Vite emits may be cached.
fn with_cache_policy(mut resp: Response) -> Response {
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}
