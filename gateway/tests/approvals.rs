//! The inbox across workspaces, end to end in local mode: the real gateway
//! starts the real agents, which run the real Claude Code CLI against the
//! scripted model server on loopback. A request raised in one workspace
//! reaches its owner's inbox and event stream (and nobody else's), is
//! answered through the gateway, and the gateway watches each agent once
//! however many browsers look.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{ALICE_KEY, BOB_KEY, Gateway, Opts, Ws, next_json, send_json};
use dispatch_model_server::{ModelServer, Turn};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(90);

fn claude_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DISPATCH_CLAUDE_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/claude/node_modules/.bin/claude");
    assert!(
        p.exists(),
        "the Claude Code CLI is not installed at {}: run ./scripts/setup.sh or set DISPATCH_CLAUDE_BIN",
        p.display()
    );
    p.canonicalize().unwrap()
}

async fn gateway_with_claude(server: &ModelServer, extra: &[&str]) -> Gateway {
    let env = [
        ("ANTHROPIC_BASE_URL", server.base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
        (
            "DISPATCH_CLAUDE_BIN",
            claude_bin().to_string_lossy().into_owned(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    Gateway::start_with(Opts {
        users: true,
        env,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Opts::default()
    })
    .await
}

/// A server-sent event stream, read as it arrives.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    async fn open(gw: &Gateway, cookie: &str) -> Sse {
        let stream = tokio::net::TcpStream::connect(&gw.host).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/api/approvals/events")
            .header("host", &gw.host)
            .header("cookie", cookie)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// The next `inbox` event's data.
    async fn next_inbox(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let is_inbox = block.lines().any(|l| l == "event: inbox");
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if is_inbox {
                    return serde_json::from_str(&data).unwrap();
                }
                continue;
            }
            let frame = tokio::time::timeout(DEADLINE, self.body.frame())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            if let Some(d) = frame.data_ref() {
                self.buf.push_str(&String::from_utf8_lossy(d));
            }
        }
    }

    /// Reads inbox events until one satisfies `pred`.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let inbox = self.next_inbox().await;
            if pred(&inbox) {
                return inbox;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {inbox:#}"
            );
        }
    }
}

fn pending(inbox: &Value) -> Vec<Value> {
    inbox["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            let name = w["workspace"].clone();
            w["status"]["pending"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |p| {
                    let mut p = p.clone();
                    p["workspace"] = name.clone();
                    p
                })
        })
        .collect()
}

async fn start_claude(ws: &mut Ws) -> String {
    send_json(ws, json!({"type": "claude.start", "clientRef": "c"})).await;
    loop {
        let v = next_json(ws, "session.created").await;
        if v["clientRef"] == "c" {
            return v["id"].as_str().unwrap().to_owned();
        }
    }
}

async fn wait_result(ws: &mut Ws, id: &str, n: usize) {
    let mut seen = 0;
    let end = Instant::now() + DEADLINE;
    while seen < n {
        assert!(Instant::now() < end, "no result in time");
        let m = next_json(ws, "message.delta").await;
        if m["id"] == id {
            seen += m["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "result")
                .count();
        }
    }
}

async fn metric(gw: &Gateway, name: &str) -> i64 {
    let r = gw.req("GET", "/metrics", &[], "").await;
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {}", r.body))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_request_reaches_its_owners_inbox_and_is_answered_through_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let denied = tmp.path().join("denied.txt");
    let allowed = tmp.path().join("allowed.txt");
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", denied.display())),
        Turn::text("Not created."),
        Turn::bash(format!("touch {}", allowed.display())),
        Turn::text("Created."),
    ])
    .await
    .unwrap();
    let gw = gateway_with_claude(&server, &[]).await;
    let alice = gw.login(ALICE_KEY).await;
    let bob = gw.login(BOB_KEY).await;
    gw.create_workspace(&alice, "demo").await;
    gw.create_workspace(&bob, "other").await;

    // Two browsers of alice's, one of bob's.
    let mut alice_sse = Sse::open(&gw, &alice).await;
    let mut alice_sse2 = Sse::open(&gw, &alice).await;
    let mut bob_sse = Sse::open(&gw, &bob).await;
    let empty = alice_sse.next_inbox().await;
    assert_eq!(empty, json!({"workspaces": []}));
    bob_sse.next_inbox().await;
    alice_sse2.next_inbox().await;

    let mut ws = gw.ws(&alice, "demo").await.unwrap();
    let id = start_claude(&mut ws).await;
    send_json(
        &mut ws,
        json!({"type": "claude.send", "id": id, "input": "Make denied.txt"}),
    )
    .await;
    let inbox = alice_sse
        .until("a pending request", |i| pending(i).len() == 1)
        .await;
    let p = &pending(&inbox)[0];
    assert_eq!(p["workspace"], "demo");
    assert_eq!(p["session"], id.as_str());
    assert_eq!(p["tool"], "Bash");
    assert_eq!(p["input"]["command"], format!("touch {}", denied.display()));
    let demo = &inbox["workspaces"][0]["status"];
    assert_eq!(demo["state"], "AwaitingApproval");
    assert_eq!(demo["sessions"][0]["state"], "AwaitingApproval");
    let rid = p["requestId"].as_str().unwrap().to_owned();
    alice_sse2
        .until("the second browser's copy", |i| pending(i).len() == 1)
        .await;

    // Bob sees nothing of it and cannot answer it.
    let r = gw.api(&bob, "GET", "/api/approvals", "").await;
    assert_eq!(r.status, 200);
    assert!(pending(&r.json()).is_empty(), "{}", r.body);
    assert!(
        r.json()["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["workspace"] != "demo")
    );
    let path = format!("/api/approvals/demo/{id}/{rid}");
    let r = gw.api(&bob, "POST", &path, r#"{"allow":true}"#).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "no_such_request".into()),
        "{}",
        r.body
    );
    // Nor can anyone without a login, or another site with alice's cookie.
    let r = gw
        .req(
            "POST",
            &path,
            &[("content-type", "application/json")],
            r#"{"allow":true}"#,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = gw
        .req(
            "POST",
            &path,
            &[
                ("cookie", &alice),
                ("content-type", "application/json"),
                ("origin", "http://evil.example"),
            ],
            r#"{"allow":true}"#,
        )
        .await;
    assert_eq!(r.status, 403);
    // Bad answers change nothing.
    for body in ["{", r#"{"allow":"yes"}"#] {
        let r = gw.api(&alice, "POST", &path, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let r = gw
        .api(
            &alice,
            "POST",
            &format!("/api/approvals/demo/{id}/nope"),
            r#"{"allow":true}"#,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = gw
        .api(
            &alice,
            "POST",
            &format!("/api/approvals/Bad..Name/{id}/{rid}"),
            r#"{"allow":true}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = gw.api(&alice, "GET", "/api/approvals", "").await;
    assert_eq!(pending(&r.json()).len(), 1);

    // One watch for the one running agent, whoever looks.
    assert_eq!(metric(&gw, "dispatch_gateway_approval_watches").await, 1);
    assert_eq!(metric(&gw, "dispatch_gateway_approvals_pending").await, 1);

    // Denied with a reason, through the gateway: the pane hears it, the model reads it.
    let r = gw
        .api(
            &alice,
            "POST",
            &path,
            r#"{"allow":false,"message":"Not from the inbox, thanks."}"#,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let resolved = next_json(&mut ws, "claude.permission.resolved").await;
    assert_eq!(
        (resolved["allowed"].as_bool(), resolved["reason"].as_str()),
        (Some(false), Some("answered"))
    );
    alice_sse
        .until("the request gone", |i| pending(i).is_empty())
        .await;
    let r = gw.api(&alice, "POST", &path, r#"{"allow":true}"#).await;
    assert_eq!(r.status, 404, "the first answer won");
    wait_result(&mut ws, &id, 1).await;
    assert!(!denied.exists());
    let texts = server.message_requests()[1].message_texts();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Not from the inbox, thanks.")),
        "{texts:?}"
    );

    // Allowed ("Always"): the tool runs.
    send_json(
        &mut ws,
        json!({"type": "claude.send", "id": id, "input": "Make allowed.txt"}),
    )
    .await;
    let inbox = alice_sse
        .until("the second request", |i| pending(i).len() == 1)
        .await;
    let rid2 = pending(&inbox)[0]["requestId"].as_str().unwrap().to_owned();
    let r = gw
        .api(
            &alice,
            "POST",
            &format!("/api/approvals/demo/{id}/{rid2}"),
            r#"{"allow":true,"remember":true}"#,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_result(&mut ws, &id, 1).await;
    assert!(allowed.exists(), "the command allowed from the inbox ran");
    let done = alice_sse
        .until("the turn counted", |i| {
            i["workspaces"][0]["status"]["sessions"][0]["turns"] == 2
                && i["workspaces"][0]["status"]["state"] == "Idle"
        })
        .await;
    assert!(pending(&done).is_empty());
    // Bob's stream never carried alice's workspace.
    let r = gw.api(&bob, "GET", "/api/approvals", "").await;
    assert!(
        r.json()["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["workspace"] != "demo")
    );
    drop(bob_sse);
}
