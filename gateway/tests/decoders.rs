//! Property tests of every gateway decoder that takes outside input, over
//! arbitrary bytes (issue 10, "Also"): tokens, cookies, names, Origin and
//! Sec-Fetch-Site, X-Forwarded-For, and, through the real router (the
//! local backend on a temporary directory), login bodies, login links,
//! bearer keys, cookies and workspace names in paths. None panics, and
//! every refusal is a clear error: `{code, message}` with a known code.
//! (The relay's frame parser has its own property test in `proxy::frames`.)
//! Case counts are bounded so that CI time stays small.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use dispatch_api::rest::ApiError;
use dispatch_gateway::auth::origin::{SiteHeaders, cross_site, origin_matches_host};
use dispatch_gateway::auth::{Auth, AuthSettings, KeyStore, LoginLimiter, TokenSigner, cookie};
use dispatch_gateway::backend::local::LocalBackend;
use dispatch_gateway::{AppState, Approvals, Metrics, Registry, WorkspaceName, client_ip, router};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

const KEY: &str = "decoder-key-0123456789";

fn pure_cases() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

fn http_cases() -> ProptestConfig {
    ProptestConfig::with_cases(96)
}

/// Arbitrary bytes, biased towards the characters the decoders split on.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b".;=,:[]/ \"%\t\r\nv1-0af".to_vec()),
        ],
        0..120,
    )
}

fn text() -> impl Strategy<Value = String> {
    junk().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

proptest! {
    #![proptest_config(pure_cases())]

    #[test]
    fn tokens_verify_only_when_signed(s in text(), cut in any::<prop::sample::Index>(), b in any::<u8>()) {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        if let Err(e) = signer.verify(&s, 0) {
            prop_assert!(!e.to_string().is_empty());
        } else {
            prop_assert!(false, "junk verified: {s:?}");
        }
        // One byte of a real token changed: refused, or (a hex digit of
        // the signature in upper case) the very same claims.
        let (token, claims) = signer.issue("me", i64::MAX / 2);
        prop_assert_eq!(signer.verify(&token, 0), Ok(claims.clone()));
        let mut bytes = token.into_bytes();
        let i = cut.index(bytes.len());
        if bytes[i] != b {
            bytes[i] = b;
            let forged = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(c) = signer.verify(&forged, 0) {
                prop_assert_eq!(c, claims, "{}", forged);
            }
        }
    }

    #[test]
    fn cookies_are_found_or_not_never_invented(raw in junk()) {
        let Ok(v) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, v);
        if let Some(found) = cookie::session_cookie(&h) {
            let text = String::from_utf8_lossy(&raw);
            prop_assert!(text.contains(found));
        }
    }

    #[test]
    fn names_are_labels_or_a_bounded_message(s in text()) {
        match WorkspaceName::new(&s) {
            Ok(n) => prop_assert!(dispatch_api::rest::is_dns1123_label(n.as_str())),
            Err(e) => {
                let m = e.to_string();
                prop_assert!(m.starts_with("workspace name"));
                prop_assert!(m.len() < 600, "{} bytes", m.len());
            }
        }
    }

    #[test]
    fn site_checks_never_panic(site in text(), origin in text(), host in text()) {
        let _ = origin_matches_host(&origin, &host);
        let h = SiteHeaders {
            sec_fetch_site: Some(site.as_str()),
            origin: Some(origin.as_str()),
            host: Some(host.as_str()),
        };
        if cross_site(h).is_none() {
            let s = site.trim().to_ascii_lowercase();
            prop_assert!(s == "none" || s == "same-origin", "{site:?}");
            prop_assert!(origin_matches_host(&origin, &host));
        }
    }

    #[test]
    fn forwarded_for_yields_the_peer_or_a_listed_address(
        peer in any::<[u8; 4]>(),
        lines in prop::collection::vec(text(), 0..4),
        trust_all in any::<bool>(),
    ) {
        let peer = IpAddr::from(peer);
        let trusted = if trust_all { vec!["0.0.0.0/0".parse().unwrap()] } else { vec![] };
        let ip = client_ip(peer, lines.iter().map(String::as_str), &trusted);
        let listed = lines.iter().flat_map(|l| l.split(',')).any(|e| e.contains(&ip.to_string()));
        prop_assert!(ip == peer || listed, "{ip} from {lines:?}");
    }
}

/// The real router over the local backend (its agents never start here:
/// the agent binary does not exist, which the routes report as 503).
fn app() -> &'static (tokio::runtime::Runtime, axum::Router, tempfile::TempDir) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router, tempfile::TempDir)> =
        OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let router = rt.block_on(async {
            let registry = Registry::open(&dir.path().join("gateway.db")).unwrap();
            let mut keys = KeyStore::default();
            keys.add("me", KEY).unwrap();
            let auth = Auth::new(
                AuthSettings {
                    keys,
                    signer: TokenSigner::new(b"0123456789abcdef0123456789abcdef"),
                    limiter: LoginLimiter::new(5, 5),
                    ttl: Duration::from_secs(3600),
                    secure_cookies: false,
                },
                registry.clone(),
            )
            .await
            .unwrap();
            let backend = LocalBackend::new(
                dir.path().join("workspaces"),
                registry,
                dir.path().join("no-such-agent"),
                Metrics::default(),
            )
            .unwrap();
            let backend: Arc<dyn dispatch_gateway::backend::WorkspaceBackend> = Arc::new(backend);
            router(AppState {
                auth: Arc::new(auth),
                backend: backend.clone(),
                metrics: Metrics::default(),
                web_dir: None,
                shutdown: Default::default(),
                proxies: Default::default(),
                trusted_proxies: Arc::new([]),
                push: None,
                approvals: Approvals::new(backend.clone()),
            })
        });
        (rt, router, dir)
    })
}

/// Sends `req`; checks the answer is not a server error and, for an API
/// refusal, that it is `{code, message}` with a known code.
fn answer(req: Request<Body>) -> Result<StatusCode, TestCaseError> {
    let (rt, router, _) = app();
    let api = req.uri().path().starts_with("/api/");
    let (status, body) = rt.block_on(async {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    prop_assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    if api && (status.is_client_error() || status.is_server_error()) {
        let e: ApiError = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{status} {e}: {}", String::from_utf8_lossy(&body)))
        })?;
        prop_assert!(!e.message.is_empty(), "{status} with no message");
    }
    Ok(status)
}

fn percent_encode(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #![proptest_config(http_cases())]

    #[test]
    fn login_bodies(body in junk(), json_key in text()) {
        for body in [body, serde_json::json!({"key": json_key}).to_string().into_bytes()] {
            let req = Request::post("/api/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let status = answer(req)?;
            prop_assert!(status != StatusCode::OK, "a junk key logged in");
        }
    }

    #[test]
    fn login_links(key in junk()) {
        let req = Request::get(format!("/login?key={}", percent_encode(&key)))
            .body(Body::empty())
            .unwrap();
        let status = answer(req)?;
        prop_assert_eq!(status, StatusCode::SEE_OTHER);
    }

    #[test]
    fn bearer_keys_and_cookies(value in junk()) {
        let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        for name in [header::AUTHORIZATION, header::COOKIE] {
            let req = Request::get("/api/workspaces")
                .header(name.clone(), v.clone())
                .body(Body::empty())
                .unwrap();
            let status = answer(req)?;
            prop_assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS, "{status}");
        }
    }

    #[test]
    fn workspace_names_in_paths(name in junk(), method in prop::sample::select(vec!["GET", "DELETE"])) {
        let uri = format!("/api/workspaces/{}", percent_encode(&name));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .body(Body::empty())
            .unwrap();
        answer(req)?;
    }

    #[test]
    fn workspace_create_bodies(body in junk(), name in text()) {
        for body in [body, serde_json::json!({"name": name}).to_string().into_bytes()] {
            let req = Request::post("/api/workspaces")
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            answer(req)?;
        }
    }
}
