//! Claude's state in the Workspace status, on a real kube-apiserver with the
//! local-node harness running the real agent, which runs the real Claude Code
//! CLI against the scripted model server on loopback: `kubectl wait` for
//! AwaitingApproval, the CLAUDE and WAITING columns, the gauges, few status
//! writes for a long streamed answer, an idle timeout that does not suspend
//! while a request waits (and does once the turn is over), and the budget
//! reaching the agent from `spec.claude.budget`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dispatch_api::crd::{ClaudeState, Workspace, names};
use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use dispatch_model_server::{ModelServer, Turn};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NS: &str = "team-c";
const WAIT: Duration = Duration::from_secs(90);

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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn agent_ws(endpoint: &str, token: &str) -> Ws {
    let url = format!("{}/ws", endpoint.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Reads until a JSON message satisfies `pred`.
async fn until_msg(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if pred(&v) {
                return v;
            }
        }
    }
}

fn has_result(v: &Value, id: &str) -> bool {
    v["type"] == "message.delta"
        && v["id"] == id
        && v["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "result"))
}

async fn token(secrets: &Api<Secret>, ws: &str) -> String {
    let s = secrets.get(&names::token_secret(ws)).await.expect("secret");
    String::from_utf8(s.data.expect("data")["token"].0.clone()).expect("utf8")
}

fn kubectl_wait(cp: &ControlPlane, jsonpath: &str, name: &str) {
    ok(kubectl(
        cp,
        &[
            "wait",
            "-n",
            NS,
            &format!("--for=jsonpath={jsonpath}"),
            "--timeout=90s",
            &format!("ws/{name}"),
        ],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_state_reaches_the_workspace_status() {
    let long_answer = "word ".repeat(400);
    let server = ModelServer::start_local(vec![
        Turn::bash("touch from-k8s.txt"),
        Turn::text("Made it."),
        // Many deltas, slowly: status writes must not follow them.
        Turn::text(long_answer.clone()).with_delay_ms(10),
    ])
    .await
    .unwrap();
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client();
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    let _node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
            agent_bin: Some(agent_bin()),
            extra_env: vec![
                (
                    "DISPATCH_CLAUDE_BIN".into(),
                    claude_bin().to_string_lossy().into_owned(),
                ),
                ("RUST_LOG".into(), "info".into()),
            ],
            ..Default::default()
        },
    )
    .await
    .expect("local node");
    let operator = Operator::start(&cp, &[]);
    let wss: Api<Workspace> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    ok(kubectl_apply(
        &cp,
        &format!(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: cl\n  namespace: {NS}\n\
             spec:\n  owner: alice\n  idleTimeout: 3s\n  claude:\n    budget: {{usd: 50, period: 24h}}\n  env:\n\
             \x20 - {{name: ANTHROPIC_BASE_URL, value: \"{}\"}}\n\
             \x20 - {{name: ANTHROPIC_API_KEY, value: sk-ant-test-not-a-real-key}}\n\
             \x20 - {{name: CLAUDE_CODE_MAX_RETRIES, value: \"0\"}}\n",
            server.base_url()
        ),
    ));
    eventually("cl Running", WAIT, || async {
        phase(&wss, "cl").await.as_deref() == Some("Running")
    })
    .await;
    // The budget reaches the agent.
    let pod = pods.get(&names::pod("cl")).await.expect("pod");
    let env = &pod.spec.as_ref().unwrap().containers[0].env;
    let val = |n: &str| {
        env.iter()
            .flatten()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(val("DISPATCH_CLAUDE_BUDGET_USD").as_deref(), Some("50"));
    assert_eq!(
        val("DISPATCH_CLAUDE_BUDGET_PERIOD").as_deref(),
        Some("86400")
    );

    let endpoint = wss
        .get("cl")
        .await
        .unwrap()
        .status
        .unwrap()
        .endpoint
        .unwrap();
    let tok = token(&secrets, "cl").await;
    // A Claude session, and a Bash request nobody answers for a while.
    let mut ws = agent_ws(&endpoint, &tok).await;
    send(&mut ws, json!({"type": "claude.start", "clientRef": "k"})).await;
    let created = until_msg(&mut ws, "session.created", |v| {
        v["type"] == "session.created" && v["clientRef"] == "k"
    })
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    send(
        &mut ws,
        json!({"type": "claude.send", "id": id, "input": "make a file"}),
    )
    .await;
    let req = until_msg(&mut ws, "the permission request", |v| {
        v["type"] == "message.delta"
            && v["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["type"] == "control_request"))
    })
    .await;
    let rid = req["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "control_request")
        .unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = Instant::now();
    // Nobody attached from here: only the waiting request keeps it busy.
    drop(ws);

    // kubectl wait sees it, kubectl get shows it, the gauges count it.
    kubectl_wait(&cp, "{.status.claude.state}=AwaitingApproval", "cl");
    let table = ok(kubectl(&cp, &["get", "ws", "-n", NS, "cl"]));
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |name: &str| {
        row[head
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {table}"))]
    };
    assert_eq!(
        (col("CLAUDE"), col("WAITING")),
        ("AwaitingApproval", "1"),
        "{table}"
    );
    let st = wss.get("cl").await.unwrap().status.unwrap().claude.unwrap();
    assert_eq!((st.pending_approvals, st.sessions_running), (1, 1));
    assert_eq!(st.budget.as_deref(), Some("ok"));
    let (_, metrics) = operator.get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "dispatch_operator_claude_pending_approvals{{workspace=\"{NS}/cl\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("dispatch_operator_claude_workspaces{state=\"AwaitingApproval\"} 1"),
        "{metrics}"
    );

    // Idle for longer than the 3 s timeout, but a request waits: not suspended.
    let quiet_until = asked + Duration::from_secs(8);
    tokio::time::sleep_until(quiet_until.into()).await;
    assert_eq!(
        phase(&wss, "cl").await.as_deref(),
        Some("Running"),
        "suspended while a request waited"
    );

    // Allowed: the status follows, with the turn and its cost. Writes of
    // status.claude are counted from here, while a long answer streams.
    let writes = count_claude_writes(wss.clone());
    let mut ws = agent_ws(&endpoint, &tok).await;
    send(&mut ws, json!({"type": "session.attach", "id": id})).await;
    until_msg(&mut ws, "attached", |v| v["type"] == "session.attached").await;
    let (code, body) = post(
        &endpoint,
        &tok,
        &format!("/claude/sessions/{id}/permissions/{rid}"),
        r#"{"allow":true}"#,
    )
    .await;
    assert_eq!(code, 204, "{body}");
    until_msg(&mut ws, "the first result", |v| has_result(v, &id)).await;
    kubectl_wait(&cp, "{.status.claude.pendingApprovals}=0", "cl");
    send(
        &mut ws,
        json!({"type": "claude.send", "id": id, "input": "talk a lot"}),
    )
    .await;
    let mut deltas = 0;
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "the long answer did not end");
        let m = until_msg(&mut ws, "events", |v| {
            v["type"] == "message.delta" && v["id"] == id.as_str()
        })
        .await;
        let evs = m["events"].as_array().unwrap();
        deltas += evs.iter().filter(|e| e["type"] == "stream_event").count();
        if evs.iter().any(|e| e["type"] == "result") {
            break;
        }
    }
    let st = eventually_claude(&wss, |c| {
        c.state == Some(ClaudeState::Idle) && c.last_turn_time.is_some()
    })
    .await;
    assert!(st.cost_usd > 0.0, "{st:?}");
    let n = writes.stop().await;
    assert!(
        deltas >= 100,
        "the answer streamed in many events ({deltas})"
    );
    assert!(
        (1..=8).contains(&n),
        "status.claude written {n} times for two turns and {deltas} streamed events"
    );
    eprintln!("status.claude writes: {n} for two turns and {deltas} streamed events");

    // Now idle for real: suspended after the timeout, and Claude's state goes.
    drop(ws);
    eventually("cl suspended for idleness", WAIT, || async {
        phase(&wss, "cl").await.as_deref() == Some("Suspended")
    })
    .await;
    eventually("status.claude cleared", WAIT, || async {
        wss.get("cl")
            .await
            .unwrap()
            .status
            .unwrap()
            .claude
            .is_none()
    })
    .await;
    eventually("the workspace's Claude gauges gone", WAIT, || async {
        let (_, metrics) = operator.get("/metrics").await;
        !metrics.contains(&format!("workspace=\"{NS}/cl\""))
            && metrics.contains("dispatch_operator_claude_workspaces{state=\"Idle\"} 0")
    })
    .await;
}

async fn eventually_claude(
    wss: &Api<Workspace>,
    pred: impl Fn(&dispatch_api::crd::ClaudeWorkspaceStatus) -> bool,
) -> dispatch_api::crd::ClaudeWorkspaceStatus {
    let end = Instant::now() + WAIT;
    loop {
        if let Some(c) = wss
            .get("cl")
            .await
            .ok()
            .and_then(|w| w.status)
            .and_then(|s| s.claude)
            && pred(&c)
        {
            return c;
        }
        assert!(Instant::now() < end, "status.claude never matched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts changes of `status.claude` seen by a watch, until stopped.
struct Counter {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<usize>,
}

impl Counter {
    async fn stop(self) -> usize {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

fn count_claude_writes(wss: Api<Workspace>) -> Counter {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let stream =
            watcher(wss, watcher::Config::default().fields("metadata.name=cl")).applied_objects();
        let mut stream = std::pin::pin!(stream);
        let mut last: Option<Option<dispatch_api::crd::ClaudeWorkspaceStatus>> = None;
        let mut n = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return n,
                ev = stream.next() => {
                    let Some(Ok(w)) = ev else { return n };
                    let c = w.status.and_then(|s| s.claude);
                    if let Some(prev) = &last && *prev != c {
                        n += 1;
                    }
                    last = Some(c);
                }
            }
        }
    });
    Counter { stop, task }
}

/// A plain HTTP POST with a bearer token and a JSON body.
async fn post(endpoint: &str, token: &str, path: &str, body: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = hyper::Request::post(format!("{endpoint}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.expect("POST");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
