//! Login, cookies, bearer keys, logout, the rate limit, and WebSocket
//! refusals, against the real gateway binary over real sockets.

mod common;

use common::*;
use dispatch_gateway::auth::TokenSigner;

/// A gateway whose limiter gives a failure back only once a minute (the
/// default is every 12 s), so that the counts a test asserts do not depend
/// on how fast a loaded machine sends its requests.
async fn slow_refill(extra: &[&str]) -> Gateway {
    let mut args = vec!["--login-per-minute".to_owned(), "1".to_owned()];
    args.extend(extra.iter().map(|a| a.to_string()));
    Gateway::start_with(Opts {
        extra: args,
        ..Opts::default()
    })
    .await
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_revokes_it() {
    let gw = Gateway::start().await;
    let r = gw
        .req(
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            r#"{"key":"wrong-key-000000000"}"#,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");
    assert!(r.header("set-cookie").is_none());

    let r = gw
        .req(
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            &format!(r#"{{"key":"{KEY}"}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"], "me");
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let cookie = cookie_of(&r);

    let me = gw.api(&cookie, "GET", "/api/me", "").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "me");

    // Behind a TLS proxy the cookie is Secure.
    let r = gw
        .req(
            "POST",
            "/api/login",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-proto", "https"),
            ],
            &format!(r#"{{"key":"{KEY}"}}"#),
        )
        .await;
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));

    let out = gw.api(&cookie, "POST", "/api/logout", "").await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let me = gw.api(&cookie, "GET", "/api/me", "").await;
    assert_eq!(me.status, 401);
    assert_eq!(me.code(), "unauthorized");
    // And the revocation survives a restart of the gateway? It lives in
    // gateway.db; checked by the registry's unit test.
    assert_eq!(gw.stop().await.code(), Some(0));
}

#[tokio::test]
async fn bearer_keys_tampered_and_expired_tokens() {
    let gw = Gateway::start().await;
    let bearer = format!("Bearer {KEY}");
    let r = gw
        .req("GET", "/api/me", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .req(
            "GET",
            "/api/workspaces",
            &[("authorization", "Bearer nope-nope-nope-nope")],
            "",
        )
        .await;
    assert_eq!(r.status, 401);
    let r = gw.req("GET", "/api/workspaces", &[], "").await;
    assert_eq!(r.status, 401);

    let cookie = gw.login(KEY).await;
    let tampered = cookie.replacen(".me.", ".admin.", 1);
    let r = gw.api(&tampered, "GET", "/api/me", "").await;
    assert_eq!(r.status, 401);

    // A correctly signed token (the gateway's own key) that has expired.
    let key = std::fs::read_to_string(gw.data.path().join("session-key")).unwrap();
    let signer = TokenSigner::new(key.trim().as_bytes());
    let (expired, _) = signer.issue("me", 1_000);
    let expired_cookie = format!("dispatch_session={expired}");
    let r = gw.api(&expired_cookie, "GET", "/api/me", "").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    // The same signer with a future expiry works: the expiry is what failed.
    let (fresh, _) = signer.issue("me", i64::MAX / 2);
    let r = gw
        .api(&format!("dispatch_session={fresh}"), "GET", "/api/me", "")
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn the_login_link_sets_the_cookie_and_redirects_home() {
    let gw = Gateway::start().await;
    let url = gw.login_url.clone().unwrap();
    assert_eq!(url, format!("{}/login?key={KEY}", gw.base));
    let r = gw.req("GET", &format!("/login?key={KEY}"), &[], "").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = cookie_of(&r);
    assert_eq!(gw.api(&cookie, "GET", "/api/me", "").await.status, 200);
    let r = gw
        .req("GET", "/login?key=wrong-wrong-wrong-wrong", &[], "")
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?error=unauthorized"));
    assert!(r.header("set-cookie").is_none());
}

#[tokio::test]
async fn a_generated_key_is_stored_privately_and_printed() {
    use std::os::unix::fs::PermissionsExt;
    let gw = Gateway::start_with(Opts {
        env_key: None,
        ..Opts::default()
    })
    .await;
    let path = gw.data.path().join("access-key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert!(key.len() >= 32);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        gw.login_url.clone().unwrap(),
        format!("{}/login?key={key}", gw.base)
    );
    gw.login(&key).await;
}

#[tokio::test]
async fn repeated_bad_logins_are_rate_limited() {
    let gw = slow_refill(&[]).await;
    let bad = r#"{"key":"wrong-key-000000000"}"#;
    let json = [("content-type", "application/json")];
    // The default burst is 5 failures.
    for i in 0..5 {
        let r = gw.req("POST", "/api/login", &json, bad).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = gw.req("POST", "/api/login", &json, bad).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "rate_limited");
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(after >= 1);
    let r = gw
        .req(
            "GET",
            "/api/me",
            &[("authorization", "Bearer wrong-key-000000000")],
            "",
        )
        .await;
    assert_eq!(r.status, 429, "wrong bearer keys count too");
    let metrics = gw.req("GET", "/metrics", &[], "").await.body;
    assert!(
        metrics.contains(r#"dispatch_gateway_logins_total{result="rate_limited"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dispatch_gateway_logins_total{result="wrong_key"} 5"#),
        "{metrics}"
    );
}

/// Issue 10, defect 1: wrong keys from the owner's address (in local mode
/// every client is 127.0.0.1; an `<img src=/login?key=wrong>` on any page
/// is enough) never make the right key fail, on any of the three ways in.
#[tokio::test]
async fn wrong_keys_from_the_same_address_never_lock_the_owner_out() {
    let gw = slow_refill(&[]).await;
    for i in 0..8 {
        let r = gw
            .req("GET", "/login?key=wrong-wrong-wrong-wrong", &[], "")
            .await;
        assert_eq!(r.status, 303, "attempt {i}");
        let want = if i < 5 {
            "unauthorized"
        } else {
            "rate_limited"
        };
        assert_eq!(
            r.header("location"),
            Some(format!("/login?error={want}").as_str()),
            "attempt {i}"
        );
    }
    let r = gw
        .req(
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            &format!(r#"{{"key":"{KEY}"}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "POST /api/login: {}", r.body);
    let r = gw.req("GET", &format!("/login?key={KEY}"), &[], "").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = cookie_of(&r);
    assert_eq!(gw.api(&cookie, "GET", "/api/me", "").await.status, 200);
    let bearer = format!("Bearer {KEY}");
    for path in ["/api/me", "/api/workspaces"] {
        let r = gw.req("GET", path, &[("authorization", &bearer)], "").await;
        assert_eq!(r.status, 200, "bearer {path}: {}", r.body);
    }
    // The address is still limited for wrong keys.
    let r = gw
        .req("GET", "/login?key=wrong-wrong-wrong-wrong", &[], "")
        .await;
    assert_eq!(r.header("location"), Some("/login?error=rate_limited"));
}

/// Issue 10, defect 2 (login CSRF): a key is never tried, nor a login
/// ended, for a request another site made; the address bar and our own
/// pages keep working.
#[tokio::test]
async fn login_and_logout_refuse_cross_site_requests() {
    let gw = Gateway::start().await;
    let ours = gw.origin();
    let link = format!("/login?key={KEY}");
    let foreign: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "http://evil.example")],
        &[("sec-fetch-site", "none"), ("origin", "null")],
    ];
    for headers in foreign {
        let r = gw.req("GET", &link, headers, "").await;
        assert_eq!(r.status, 403, "link with {headers:?}");
        assert!(r.header("set-cookie").is_none(), "{headers:?}");
        assert!(r.body.contains("Login refused"), "{}", r.body);
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{headers:?}"
        );

        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        let r = gw
            .req("POST", "/api/login", &h, &format!(r#"{{"key":"{KEY}"}}"#))
            .await;
        assert_eq!(r.status, 403, "POST with {headers:?}");
        assert_eq!(r.code(), "forbidden");
        assert!(r.body.contains("login refused"), "{}", r.body);
        assert!(r.header("set-cookie").is_none(), "{headers:?}");
    }
    // Refusals try no key, so they count as no failure: wrong keys from
    // another site do not use up this address's burst.
    for _ in 0..8 {
        let r = gw
            .req(
                "GET",
                "/login?key=wrong-wrong-wrong-wrong",
                &[("sec-fetch-site", "cross-site")],
                "",
            )
            .await;
        assert_eq!(r.status, 403);
    }
    let r = gw
        .req("GET", "/login?key=wrong-wrong-wrong-wrong", &[], "")
        .await;
    assert_eq!(r.header("location"), Some("/login?error=unauthorized"));

    // Typed or pasted into the address bar, and from our own pages: fine.
    let r = gw
        .req("GET", &link, &[("sec-fetch-site", "none")], "")
        .await;
    assert_eq!(r.status, 303);
    let pasted = cookie_of(&r);
    let own = [
        ("sec-fetch-site", "same-origin"),
        ("origin", ours.as_str()),
        ("content-type", "application/json"),
    ];
    let r = gw
        .req("POST", "/api/login", &own, &format!(r#"{{"key":"{KEY}"}}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = cookie_of(&r);

    // Logout from another site: refused, the login lives on.
    for headers in [
        [
            ("sec-fetch-site", "cross-site"),
            ("cookie", cookie.as_str()),
        ],
        [
            ("origin", "http://evil.example"),
            ("cookie", cookie.as_str()),
        ],
    ] {
        let r = gw.req("POST", "/api/logout", &headers, "").await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(r.code(), "forbidden");
        assert!(r.header("set-cookie").is_none());
    }
    assert_eq!(gw.api(&cookie, "GET", "/api/me", "").await.status, 200);
    let r = gw
        .req(
            "POST",
            "/api/logout",
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", ours.as_str()),
                ("cookie", cookie.as_str()),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(gw.api(&cookie, "GET", "/api/me", "").await.status, 401);
    assert_eq!(gw.api(&pasted, "GET", "/api/me", "").await.status, 200);
}

/// Behind a trusted proxy each client has its own limit, taken from the
/// address the proxy puts in X-Forwarded-For; from anyone else that header
/// changes nothing.
#[tokio::test]
async fn the_rate_limit_is_per_client_behind_a_trusted_proxy_only() {
    let bad = r#"{"key":"wrong-key-000000000"}"#;
    let good = format!(r#"{{"key":"{KEY}"}}"#);
    let from = |client: &'static str| {
        [
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ]
    };
    // The tests' requests come from 127.0.0.1: the "ingress".
    let gw = slow_refill(&["--trusted-proxies", "127.0.0.0/8"]).await;
    // The default burst is 5 failures; the sixth trips the limit.
    for i in 0..6 {
        let r = gw
            .req("POST", "/api/login", &from("203.0.113.7"), bad)
            .await;
        assert_eq!(r.status, if i < 5 { 401 } else { 429 }, "attempt {i}");
    }
    let r = gw
        .req("POST", "/api/login", &from("203.0.113.7"), bad)
        .await;
    assert_eq!(r.status, 429, "this client is limited");
    // A client spoofing the limited one's address left of its own is judged
    // by its own.
    let r = gw
        .req("POST", "/api/login", &from("203.0.113.7, 203.0.113.8"), bad)
        .await;
    assert_eq!(r.status, 401, "another client is not: {}", r.body);
    let r = gw
        .req("POST", "/api/login", &from("203.0.113.7"), &good)
        .await;
    assert_eq!(r.status, 200, "a right key always works: {}", r.body);

    // Not trusted (the default): the header is ignored, so changing it does
    // not get round the limit.
    let gw = slow_refill(&[]).await;
    let spoofed = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
    ];
    for (i, client) in spoofed.into_iter().enumerate() {
        let r = gw.req("POST", "/api/login", &from(client), bad).await;
        assert_eq!(r.status, if i < 5 { 401 } else { 429 }, "attempt {i}");
    }
    let r = gw
        .req("POST", "/api/login", &from("198.51.100.7"), bad)
        .await;
    assert_eq!(r.status, 429);

    // A malformed range is refused at start, naming the value.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch-gateway"))
        .args(["--trusted-proxies", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10.0.0.0/33") && err.contains("CIDR"), "{err}");
}

#[tokio::test]
async fn websocket_upgrades_need_a_valid_cookie_and_our_origin() {
    let gw = Gateway::start().await;
    let cookie = gw.login(KEY).await;
    gw.create_workspace(&cookie, "w1").await;
    let url = format!("ws://{}/api/workspaces/w1/ws", gw.host);
    let origin = gw.origin();

    let e = ws_connect(&url, &[("origin", &origin)]).await.unwrap_err();
    assert_eq!(refused_status(&e), 401, "no cookie");
    let e = ws_connect(
        &url,
        &[
            ("origin", &origin),
            ("cookie", "dispatch_session=v1.me.00.99999999999999.00"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused_status(&e), 401, "bad cookie");
    let key = std::fs::read_to_string(gw.data.path().join("session-key")).unwrap();
    let (expired, _) = TokenSigner::new(key.trim().as_bytes()).issue("me", 1_000);
    let e = ws_connect(
        &url,
        &[
            ("origin", &origin),
            ("cookie", &format!("dispatch_session={expired}")),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused_status(&e), 401, "expired cookie");
    let e = ws_connect(
        &url,
        &[("origin", "http://evil.example"), ("cookie", &cookie)],
    )
    .await
    .unwrap_err();
    assert_eq!(refused_status(&e), 403, "foreign origin");
    let e = ws_connect(&url, &[("cookie", &cookie)]).await.unwrap_err();
    assert_eq!(refused_status(&e), 403, "cookie without origin");
    // None of these started the workspace's agent.
    assert!(gw.agents_started().is_empty());

    let mut ws = ws_connect(&url, &[("origin", &origin), ("cookie", &cookie)])
        .await
        .unwrap();
    let hello = next_json(&mut ws, "hello").await;
    assert_eq!(hello["workspace"], "w1");
    // A script with the bearer key needs no Origin.
    let bearer = format!("Bearer {KEY}");
    let mut ws2 = ws_connect(&url, &[("authorization", &bearer)])
        .await
        .unwrap();
    next_json(&mut ws2, "hello").await;
}
