//! A real permission request becomes a push notification whose Allow
//! answers it: the real gateway starts the real agent, which runs the real
//! Claude Code CLI against the scripted model server; the push goes to the
//! receiver of tests/push (Python's http_ece decrypts it, the VAPID JWT is
//! verified); the action token from the decrypted payload answers.
//!
//! The CLI comes from DISPATCH_CLAUDE_BIN or tools/claude (scripts/setup.d/30-claude.sh);
//! without it these tests fail, they do not skip.

mod common;
#[path = "common/push_receiver.rs"]
mod push_receiver;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Gateway, KEY, Opts, Ws, next_json};
use dispatch_model_server::{ModelServer, Turn};
use futures_util::SinkExt;
use push_receiver::Receiver;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Turns of the real CLI take a while on a busy 2-core machine.
const TURN: Duration = Duration::from_secs(120);

fn claude_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DISPATCH_CLAUDE_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/claude/node_modules/.bin/claude");
    assert!(
        p.exists(),
        "the Claude Code CLI is not installed at {}: run scripts/setup.d/30-claude.sh \
         or set DISPATCH_CLAUDE_BIN",
        p.display()
    );
    p.canonicalize().unwrap()
}

async fn gateway(model: &ModelServer, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
    let mut vars: Vec<(String, String)> = vec![
        ("ANTHROPIC_BASE_URL".into(), model.base_url()),
        (
            "ANTHROPIC_API_KEY".into(),
            "sk-ant-test-not-a-real-key".into(),
        ),
        ("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()),
        (
            "DISPATCH_CLAUDE_BIN".into(),
            claude_bin().display().to_string(),
        ),
    ];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut args = vec!["--push-allow-http-loopback".to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Gateway::start_with(Opts {
        extra: args,
        env: vars,
        ..Opts::default()
    })
    .await
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Opens a Claude session in `name` and sends one prompt; the session id.
async fn prompt(gw: &Gateway, cookie: &str, name: &str, text: &str) -> (Ws, String) {
    let mut ws = gw.ws(cookie, name).await.expect("workspace WebSocket");
    send(&mut ws, json!({"type": "claude.start"})).await;
    let created = next_json(&mut ws, "session.created").await;
    let id = created["id"].as_str().unwrap().to_owned();
    send(
        &mut ws,
        json!({"type": "claude.send", "id": id, "input": text}),
    )
    .await;
    (ws, id)
}

/// The next push whose payload is of `kind`, skipping others.
async fn next_kind(rx: &mut Receiver, kind: &str) -> Value {
    loop {
        let v = rx.next(TURN).await;
        assert_eq!(v["status"], 201, "the receiver refused a push: {v}");
        if v["payload"]["kind"] == kind {
            return v;
        }
        eprintln!("(skipping a {} push)", v["payload"]["kind"]);
    }
}

async fn action(gw: &Gateway, token: &str, what: &str) -> common::Resp {
    // No cookie: the token alone authorises, as from a service worker
    // whose login expired.
    let origin = gw.origin();
    gw.req(
        "POST",
        "/api/push/action",
        &[("content-type", "application/json"), ("origin", &origin)],
        &json!({"token": token, "action": what}).to_string(),
    )
    .await
}

#[tokio::test]
async fn allow_from_the_notification_runs_the_tool() {
    let mut rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let made = tmp.path().join("allowed-from-a-notification.txt");
    let model = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", made.display())),
        Turn::text("Created it."),
    ])
    .await
    .unwrap();
    let gw = gateway(&model, &[], &[]).await;
    let cookie = gw.login(KEY).await;
    gw.create_workspace(&cookie, "demo").await;
    let sub = rx.subscription("phone", json!({"turnFinished": true}));
    assert_eq!(
        gw.api(&cookie, "POST", "/api/push/subscriptions", &sub)
            .await
            .status,
        201
    );

    let (_ws, session) = prompt(&gw, &cookie, "demo", "Create the file").await;
    let push = next_kind(&mut rx, "approval").await;
    let p = &push["payload"];
    assert_eq!(p["title"], "demo: Claude asks to use Bash");
    assert!(
        p["body"]
            .as_str()
            .unwrap()
            .contains(&format!("touch {}", made.display())),
        "{p}"
    );
    assert!(
        p["body"]
            .as_str()
            .unwrap()
            .contains("Denied automatically in 10 min"),
        "{p}"
    );
    assert_eq!(p["session"], session.as_str());
    assert_eq!(p["url"], format!("/#/w/demo/s/{session}"));
    assert_eq!(push["headers"]["urgency"], "high");
    // The JWT was verified by the receiver against the key the browser saw.
    let key = gw
        .api(&cookie, "GET", "/api/push/vapid-public-key", "")
        .await;
    assert_eq!(push["jwt"]["k"], key.json()["publicKey"]);
    assert!(!made.exists(), "nothing runs before the answer");

    // The figure: from the request raised (the agent's clock) to the push
    // decrypted by the receiver (same machine, same clock).
    let inbox = gw.api(&cookie, "GET", "/api/approvals", "").await.json();
    let raised = inbox["workspaces"][0]["status"]["pending"][0]["raised"].as_i64();
    if let Some(raised) = raised {
        eprintln!(
            "PUSH_LATENCY_MS {} (raised -> decrypted on loopback)",
            push["receivedAt"].as_i64().unwrap() - raised
        );
    }

    let token = p["token"].as_str().unwrap().to_owned();
    let r = action(&gw, &token, "allow").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["requestId"], p["requestId"]);

    // The request resolves (the notification is replaced), the tool runs,
    // and the turn finishes (this browser opted in to that).
    let resolved = next_kind(&mut rx, "resolved").await;
    assert_eq!(resolved["payload"]["tag"], p["tag"]);
    assert_eq!(resolved["payload"]["title"], "demo: Bash: allowed");
    let turn = next_kind(&mut rx, "turn").await;
    assert_eq!(turn["payload"]["session"], session.as_str());
    assert!(made.exists(), "the allowed command ran");

    // Single use: the same token again is refused and changes nothing.
    let again = action(&gw, &token, "deny").await;
    assert_eq!(again.status, 410, "{}", again.body);
}

#[tokio::test]
async fn an_unanswered_request_is_reminded_then_denied_and_its_token_dies() {
    let mut rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let never = tmp.path().join("never.txt");
    let model = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", never.display())),
        Turn::text("Understood."),
    ])
    .await
    .unwrap();
    // The agent denies after 8 s; the reminder goes 5 s before that.
    let gw = gateway(
        &model,
        &["--push-reminder-before", "5"],
        &[("DISPATCH_CLAUDE_PERMISSION_TIMEOUT", "8")],
    )
    .await;
    let cookie = gw.login(KEY).await;
    gw.create_workspace(&cookie, "slow").await;
    let sub = rx.subscription("phone", json!({}));
    assert_eq!(
        gw.api(&cookie, "POST", "/api/push/subscriptions", &sub)
            .await
            .status,
        201
    );
    let (_ws, _session) = prompt(&gw, &cookie, "slow", "Create never.txt").await;
    let push = next_kind(&mut rx, "approval").await;
    let token = push["payload"]["token"].as_str().unwrap().to_owned();
    let reminder = next_kind(&mut rx, "reminder").await;
    assert!(
        reminder["payload"]["body"]
            .as_str()
            .unwrap()
            .contains("denied automatically in 1 min"),
        "{reminder}"
    );
    let resolved = next_kind(&mut rx, "resolved").await;
    assert_eq!(
        resolved["payload"]["title"],
        "slow: Bash: denied, no answer in time"
    );
    // Too late: the token's request is gone (or the token expired with it).
    let r = action(&gw, &token, "allow").await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(!never.exists());
}

/// The figure for the closing note: time from a permission request raised
/// (the agent's clock when the CLI's control_request arrived) to its
/// notification decrypted by the receiver on loopback, over N requests in
/// one session, each then allowed from its token; and from the Allow POST
/// to the 'resolved' push received. Same machine, same clock.
///
/// `DISPATCH_PUSH_BENCH_N=20 cargo test -p dispatch-gateway --test push_claude \
///   push_latency_bench -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a benchmark: run it on purpose, alone"]
async fn push_latency_bench() {
    let n: usize = std::env::var("DISPATCH_PUSH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut turns = vec![];
    for i in 0..n {
        turns.push(Turn::bash(format!(
            "touch {}",
            tmp.path().join(format!("f{i}")).display()
        )));
        turns.push(Turn::text("ok"));
    }
    let model = ModelServer::start_local(turns).await.unwrap();
    let gw = gateway(&model, &[], &[]).await;
    let cookie = gw.login(KEY).await;
    gw.create_workspace(&cookie, "bench").await;
    let sub = rx.subscription("bench", json!({"turnFinished": true}));
    assert_eq!(
        gw.api(&cookie, "POST", "/api/push/subscriptions", &sub)
            .await
            .status,
        201
    );
    let mut ws = gw.ws(&cookie, "bench").await.unwrap();
    send(&mut ws, json!({"type": "claude.start"})).await;
    let id = next_json(&mut ws, "session.created").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut raised_to_push, mut allow_to_resolved) = (vec![], vec![]);
    for i in 0..n {
        send(
            &mut ws,
            json!({"type": "claude.send", "id": id, "input": format!("make f{i}")}),
        )
        .await;
        let push = next_kind(&mut rx, "approval").await;
        let rid = push["payload"]["requestId"].as_str().unwrap().to_owned();
        let inbox = gw.api(&cookie, "GET", "/api/approvals", "").await.json();
        let raised = inbox["workspaces"][0]["status"]["pending"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["requestId"] == rid.as_str())
            .and_then(|p| p["raised"].as_i64())
            .expect("the request is pending");
        raised_to_push.push(push["receivedAt"].as_i64().unwrap() - raised);
        let t = dispatch_gateway::auth::now_ms();
        let r = action(&gw, push["payload"]["token"].as_str().unwrap(), "allow").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let resolved = next_kind(&mut rx, "resolved").await;
        allow_to_resolved.push(resolved["receivedAt"].as_i64().unwrap() - t);
        next_kind(&mut rx, "turn").await;
    }
    let stats = |v: &mut Vec<i64>| {
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        format!(
            "min {} median {} p90 {} max {} ms",
            v[0],
            at(0.5),
            at(0.9),
            v[v.len() - 1]
        )
    };
    eprintln!("PUSH_BENCH n={n}");
    eprintln!(
        "PUSH_BENCH raised -> push decrypted: {}",
        stats(&mut raised_to_push)
    );
    eprintln!(
        "PUSH_BENCH allow POST -> resolved push decrypted: {}",
        stats(&mut allow_to_resolved)
    );
}
