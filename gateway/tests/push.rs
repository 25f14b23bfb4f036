//! Web Push from the real gateway to a receiver of our own on loopback that
//! checks the VAPID JWT and decrypts with Python's http_ece (independent of
//! the gateway's RFC 8291 code).

mod common;
#[path = "common/push_receiver.rs"]
mod push_receiver;

use std::time::Duration;

use common::{Gateway, KEY, Opts};
use push_receiver::Receiver;

const WAIT: Duration = Duration::from_secs(30);

async fn gateway() -> Gateway {
    Gateway::start_with(Opts {
        extra: vec!["--push-allow-http-loopback".into()],
        ..Opts::default()
    })
    .await
}

#[tokio::test]
async fn a_test_notification_arrives_signed_and_decryptable() {
    let mut rx = Receiver::start().await;
    let gw = gateway().await;
    let cookie = gw.login(KEY).await;
    let key = gw
        .api(&cookie, "GET", "/api/push/vapid-public-key", "")
        .await;
    assert_eq!(key.status, 200, "{}", key.body);
    let public = key.json()["publicKey"].as_str().unwrap().to_owned();

    let r = gw
        .api(
            &cookie,
            "POST",
            "/api/push/subscriptions",
            &rx.subscription("laptop", serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = gw.api(&cookie, "POST", "/api/push/test", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["deliveries"][0]["result"],
        "delivered",
        "{}",
        r.body
    );

    let got = rx.next(WAIT).await;
    assert_eq!(got["status"], 201, "the receiver refused it: {got}");
    assert_eq!(got["path"], "/push/laptop");
    assert_eq!(got["payload"]["kind"], "test");
    assert_eq!(got["payload"]["title"], "Dispatch notifications work");
    // Signed with the key the browser subscribed to, for this push service.
    assert_eq!(got["jwt"]["k"], public.as_str());
    assert_eq!(got["jwt"]["aud"], rx.endpoint.trim_end_matches("/push/"));
    assert_eq!(got["headers"]["content-encoding"], "aes128gcm");
    assert_eq!(got["headers"]["urgency"], "normal");

    // The key survives a restart (browsers subscribed to it).
    let dir = gw.data.path().to_owned();
    let again = std::fs::read_to_string(dir.join("vapid-key")).unwrap();
    assert!(!again.trim().is_empty());
}

#[tokio::test]
async fn gone_subscriptions_are_forgotten_and_failing_ones_retried() {
    let mut rx = Receiver::start().await;
    let gw = gateway().await;
    let cookie = gw.login(KEY).await;
    for name in ["gone/phone", "flaky-2/tablet"] {
        let r = gw
            .api(
                &cookie,
                "POST",
                "/api/push/subscriptions",
                &rx.subscription(name, serde_json::json!({})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = gw.api(&cookie, "POST", "/api/push/test", "").await;
    let mut results: Vec<(String, String)> = r.json()["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["endpoint"]
                    .as_str()
                    .unwrap()
                    .rsplit_once("/push/")
                    .unwrap()
                    .1
                    .to_owned(),
                d["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            ("flaky-2/tablet".to_owned(), "delivered".to_owned()),
            ("gone/phone".to_owned(), "gone".to_owned())
        ]
    );
    // The receiver saw: 410 once; 503, 503, then 201 for the flaky one.
    let mut seen = vec![];
    for _ in 0..4 {
        let v = rx.next(WAIT).await;
        seen.push((
            v["path"].as_str().unwrap().to_owned(),
            v["status"].as_u64().unwrap(),
        ));
    }
    let flaky: Vec<u64> = seen
        .iter()
        .filter(|s| s.0.contains("flaky"))
        .map(|s| s.1)
        .collect();
    assert_eq!(flaky, [503, 503, 201]);
    assert_eq!(seen.iter().filter(|s| s.0.contains("gone")).count(), 1);

    // The gone one was forgotten: the next test notification reaches only the other.
    let r = gw.api(&cookie, "POST", "/api/push/test", "").await;
    let d = r.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(d.len(), 1, "{}", r.body);
    assert!(d[0]["endpoint"].as_str().unwrap().contains("flaky-2"));
    assert_eq!(rx.next(WAIT).await["status"], 201);
}

#[tokio::test]
async fn bad_subscriptions_and_tokens_change_nothing() {
    let mut rx = Receiver::start().await;
    // Without the test flag a plain http endpoint is refused.
    let strict = Gateway::start().await;
    let cookie = strict.login(KEY).await;
    let r = strict
        .api(
            &cookie,
            "POST",
            "/api/push/subscriptions",
            &rx.subscription("x", serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("https"), "{}", r.body);
    let r = strict.api(&cookie, "POST", "/api/push/test", "").await;
    assert_eq!(r.json()["deliveries"], serde_json::json!([]));

    let gw = gateway().await;
    let cookie = gw.login(KEY).await;
    // Bad keys, unknown prefs, not logged in, someone else's delete.
    let bad_keys = serde_json::json!({"endpoint": format!("{}y", rx.endpoint),
        "keys": {"p256dh": "AAAA", "auth": rx.auth}})
    .to_string();
    let r = gw
        .api(&cookie, "POST", "/api/push/subscriptions", &bad_keys)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_field".to_owned()),
        "{}",
        r.body
    );
    let r = gw
        .api(
            &cookie,
            "POST",
            "/api/push/subscriptions",
            &rx.subscription("z", serde_json::json!({"bogus": true})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = gw
        .req(
            "POST",
            "/api/push/subscriptions",
            &[("content-type", "application/json")],
            &rx.subscription("z", serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = gw
        .api(
            &cookie,
            "DELETE",
            "/api/push/subscriptions",
            &format!(r#"{{"endpoint":"{}nobody"}}"#, rx.endpoint),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    // A forged or garbage action token answers nothing.
    for token in ["", "pa1.e30.AAAA", "v1.me.abc.999999999999999.00"] {
        let body = serde_json::json!({"token": token, "action": "allow"}).to_string();
        let r = gw.api(&cookie, "POST", "/api/push/action", &body).await;
        assert_eq!(r.status, 403, "{token}: {}", r.body);
    }
    let r = gw
        .api(
            &cookie,
            "POST",
            "/api/push/action",
            r#"{"token":"x","action":"maybe"}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Nothing was stored: a test notification goes nowhere.
    let r = gw.api(&cookie, "POST", "/api/push/test", "").await;
    assert_eq!(r.json()["deliveries"], serde_json::json!([]), "{}", r.body);
    rx.expect_nothing(Duration::from_millis(200)).await;

    // Subscribe, then unsubscribe: nothing is sent after.
    let sub = rx.subscription("w", serde_json::json!({}));
    assert_eq!(
        gw.api(&cookie, "POST", "/api/push/subscriptions", &sub)
            .await
            .status,
        201
    );
    let r = gw
        .api(
            &cookie,
            "DELETE",
            "/api/push/subscriptions",
            &format!(r#"{{"endpoint":"{}w"}}"#, rx.endpoint),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = gw.api(&cookie, "POST", "/api/push/test", "").await;
    assert_eq!(r.json()["deliveries"], serde_json::json!([]), "{}", r.body);
}

#[tokio::test]
async fn the_service_worker_and_manifest_are_served_at_the_root_and_never_stale() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>d</title>",
    )
    .unwrap();
    std::fs::write(web.path().join("sw.js"), "self.x = 1;").unwrap();
    std::fs::write(web.path().join("manifest.webmanifest"), "{}").unwrap();
    std::fs::write(web.path().join("icon.svg"), "<svg/>").unwrap();
    let gw = Gateway::start_with(Opts {
        extra: vec!["--web-dir".into(), web.path().display().to_string()],
        ..Opts::default()
    })
    .await;
    let r = gw.req("GET", "/sw.js", &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "self.x = 1;"));
    assert!(r.header("content-type").unwrap().contains("javascript"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = gw.req("GET", "/manifest.webmanifest", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    // The CSP lets the page register a same-origin worker and read the manifest.
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("worker-src 'self'"), "{csp}");
    // Other static files keep the default policy.
    let r = gw.req("GET", "/icon.svg", &[], "").await;
    assert_eq!(r.header("cache-control"), None);
}
