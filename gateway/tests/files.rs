//! The files and git routes through the gateway (local mode) to a real
//! agent: a script with a bearer key uploads and downloads, streamed; the
//! terminal's authorisation applies (no credentials, another user, a
//! cross-site cookie write are all refused and change nothing).

mod common;

use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

type Body = http_body_util::combinators::BoxBody<axum::body::Bytes, std::io::Error>;

/// `len` bytes made on the fly (byte i is `i % 251`): the sender never holds them.
fn generated(len: u64) -> Body {
    const CHUNK: u64 = 1 << 20;
    let s = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= len {
            return None;
        }
        let n = CHUNK.min(len - at);
        let chunk: Vec<u8> = (at..at + n).map(|i| (i % 251) as u8).collect();
        Some((Ok(Frame::data(axum::body::Bytes::from(chunk))), at + n))
    });
    StreamBody::new(s).boxed()
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_script_with_a_bearer_key_uploads_and_downloads_through_the_gateway() {
    const SIZE: u64 = 256 << 20;
    let gw = Gateway::start().await;
    let bearer = format!("Bearer {KEY}");
    let auth = [("authorization", bearer.as_str())];
    let r = gw
        .req(
            "POST",
            "/api/workspaces",
            &[auth[0], ("content-type", "application/json")],
            r#"{"name":"data"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let dir = gw.data.path().join("workspaces/me/data");

    // A small file first (starts the agent), and the gateway's baseline.
    let r = gw
        .req(
            "PUT",
            "/api/workspaces/data/files/content?path=hello.txt",
            &auth,
            "hi\n",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let etag = r.json()["etag"].as_str().unwrap().to_owned();
    let gw_pid = gw.child.id().unwrap();
    let before = peak_rss_kb(gw_pid);

    // Upload, streamed, with a bearer key.
    let len = SIZE.to_string();
    let resp = send(
        &gw.host,
        "PUT",
        "/api/workspaces/data/files/content?path=big.bin",
        &[auth[0], ("content-length", &len)],
        generated(SIZE),
    )
    .await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(std::fs::metadata(dir.join("big.bin")).unwrap().len(), SIZE);

    // Download, streamed, checking every byte.
    let resp = send(
        &gw.host,
        "GET",
        "/api/workspaces/data/files/content?path=big.bin&download=1",
        &auth,
        http_body_util::Empty::<axum::body::Bytes>::new()
            .map_err(|e| match e {})
            .boxed(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], len.as_str());
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"big.bin\"")
    );
    let mut body = resp.into_body();
    let mut at = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            for (i, b) in d.iter().enumerate() {
                assert_eq!(*b, ((at + i as u64) % 251) as u8, "byte {}", at + i as u64);
            }
            at += d.len() as u64;
        }
    }
    assert_eq!(at, SIZE);
    let grew_mb = peak_rss_kb(gw_pid).saturating_sub(before) / 1024;
    println!(
        "gateway peak RSS grew by {grew_mb} MiB for {} MiB up and down",
        SIZE >> 20
    );
    assert!(
        grew_mb < 64,
        "the gateway's peak memory grew by {grew_mb} MiB"
    );

    // The agent's answers come back as they are: version, conflict, errors.
    let r = gw
        .req(
            "GET",
            "/api/workspaces/data/files/content?path=hello.txt",
            &auth,
            "",
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "hi\n"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = gw
        .req(
            "PUT",
            "/api/workspaces/data/files/content?path=hello.txt",
            &[auth[0], ("if-match", "\"stale\"")],
            "x",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (412, "conflict"),
        "{}",
        r.body
    );
    let r = gw
        .req(
            "GET",
            "/api/workspaces/data/files/content?path=../../x",
            &auth,
            "",
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_path"));
    let r = gw
        .req("GET", "/api/workspaces/data/files/list?path=", &auth, "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"big.bin\""), "{}", r.body);
    let r = gw
        .req(
            "DELETE",
            "/api/workspaces/data/files?path=big.bin",
            &auth,
            "",
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!dir.join("big.bin").exists());
    let r = gw
        .req("GET", "/api/workspaces/data/git/status", &auth, "")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            r#"{"repository":false,"ahead":0,"behind":0,"files":[],"truncated":false}"#
        )
    );
    let r = gw
        .req("POST", "/api/workspaces/data/git/init", &auth, "")
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(dir.join(".git").is_dir());

    // A Claude session's turns (none recorded for this id).
    let r = gw
        .req("GET", "/api/workspaces/data/claude/s1/turns", &auth, "")
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"turns":[]}"#));

    // Only files, git and turns routes of the agent are reachable this way.
    for path in [
        "/api/workspaces/data/files/../sessions",
        "/api/workspaces/data/git/../../activity",
        "/api/workspaces/data/claude/s1/../../sessions",
    ] {
        let r = gw.req("GET", path, &auth, "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn the_terminals_authorisation_applies() {
    let gw = Gateway::start_with(Opts {
        env_key: None,
        users: true,
        ..Opts::default()
    })
    .await;
    let alice = format!("Bearer {ALICE_KEY}");
    let bob = format!("Bearer {BOB_KEY}");
    let r = gw
        .req(
            "POST",
            "/api/workspaces",
            &[
                ("authorization", &alice),
                ("content-type", "application/json"),
            ],
            r#"{"name":"mine"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let dir = gw.data.path().join("workspaces/alice/mine");
    let put = "/api/workspaces/mine/files/content?path=x.txt";

    // No credentials: 401. Another user: 404, as for a missing workspace.
    let r = gw.req("PUT", put, &[], "nope").await;
    assert_eq!(r.status, 401, "{}", r.body);
    for (method, path) in [
        ("PUT", put),
        ("GET", "/api/workspaces/mine/files/list?path="),
        ("GET", "/api/workspaces/mine/git/status"),
        ("DELETE", "/api/workspaces/mine/files?path=x.txt"),
    ] {
        let r = gw
            .req(method, path, &[("authorization", &bob)], "bob")
            .await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert_eq!(r.code(), "no_such_workspace");
    }
    assert!(!dir.join("x.txt").exists());

    // A cookie write from another site: 403; from this site: done.
    let cookie = gw.login(ALICE_KEY).await;
    let r = gw
        .req(
            "PUT",
            put,
            &[
                ("cookie", &cookie),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            "evil",
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!dir.join("x.txt").exists());
    let r = gw.api(&cookie, "PUT", put, "mine").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(std::fs::read_to_string(dir.join("x.txt")).unwrap(), "mine");
}
