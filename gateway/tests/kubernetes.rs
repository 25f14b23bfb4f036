//! The kubernetes backend end to end on a real control plane: the chart
//! installed by helm; the operator and two gateway replicas run as the chart's
//! Deployments would run them, with the chart's ServiceAccount tokens (so the
//! chart's RBAC is proven enough); the local node runs workspace agents on
//! 127.0.0.x. `kubectl apply` a Workspace, reach its terminal through the
//! gateway, suspend it with kubectl, resume it through the gateway, and check
//! that another user can neither see nor reach it.

mod common;
mod kube_env;

use std::time::Duration;

use common::{Output, http, input_frame, read_until, refused_status, start_shell, ws_connect};
use kube_env::*;

const WAIT: Duration = Duration::from_secs(90);

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn get_json(gw: &Gateway, key: &str, path: &str) -> (u16, serde_json::Value) {
    let auth = bearer(key);
    let r = http(&gw.host, "GET", path, &[("authorization", &auth)], "").await;
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// `POST /api/workspaces/{name}/open`, which must succeed; returns the workspace.
async fn open_workspace(gw: &Gateway, key: &str, name: &str) -> serde_json::Value {
    let auth = bearer(key);
    let path = format!("/api/workspaces/{name}/open");
    let r = http(&gw.host, "POST", &path, &[("authorization", &auth)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("the workspace as JSON")
}

async fn phase_of(gw: &Gateway, key: &str, name: &str) -> Option<String> {
    let (status, v) = get_json(gw, key, "/api/workspaces").await;
    assert_eq!(status, 200, "{v}");
    v.as_array()?
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["phase"].as_str())
        .map(str::to_owned)
}

async fn wait_phase(gw: &Gateway, key: &str, name: &str, want: &str) {
    eventually(&format!("{name} {want} via {}", gw.host), WAIT, || async {
        phase_of(gw, key, name).await.as_deref() == Some(want)
    })
    .await;
}

/// A shell in the workspace through the gateway; runs `cmd` and waits for `expect`.
async fn shell_run(gw: &Gateway, key: &str, name: &str, cmd: &str, expect: &str) {
    let url = format!("ws://{}/api/workspaces/{name}/ws", gw.host);
    let auth = bearer(key);
    let mut ws = ws_connect(&url, &[("authorization", &auth)])
        .await
        .expect("websocket through the gateway");
    let id = start_shell(&mut ws).await;
    use futures_util::SinkExt;
    ws.send(input_frame(&id, format!("{cmd}\n").as_bytes()))
        .await
        .expect("send input");
    let mut out = Output::default();
    read_until(&mut ws, &id, &mut out, expect.as_bytes()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_to_terminal_suspend_and_resume_through_two_gateways() {
    let c = Cluster::start(2).await;
    let (gw0, gw1) = (&c.gateways[0], &c.gateways[1]);

    // Liveness and metrics, as the chart's probes and ServiceMonitor use them.
    assert_eq!(
        http(&gw0.host, "GET", "/healthz", &[], "").await.status,
        200
    );
    assert_eq!(
        http(&gw0.host, "GET", "/metrics", &[], "").await.status,
        200
    );

    // kubectl apply: alice's workspace reaches Running, seen by both replicas.
    c.kubectl(
        &["apply", "-f", "-"],
        Some(&workspace_yaml("demo", "alice")),
    );
    wait_phase(gw0, ALICE_KEY, "demo", "Running").await;
    wait_phase(gw1, ALICE_KEY, "demo", "Running").await;
    let (_, bobs) = get_json(gw0, BOB_KEY, "/api/workspaces").await;
    assert_eq!(bobs, serde_json::json!([]), "bob sees none of alice's");

    // A terminal through the gateway to the agent at its 127.0.0.x pod IP.
    let tag = format!("{:08x}", rand_u32());
    shell_run(
        gw0,
        ALICE_KEY,
        "demo",
        &format!("echo kept-{tag} > kept.txt; echo hello-$((6*7))-{tag}"),
        &format!("hello-42-{tag}"),
    )
    .await;

    // Its files through the gateway (the same agent client as the terminal):
    // uploaded on one replica with a bearer key, read on the other, and the
    // terminal's file is there too.
    let auth = bearer(ALICE_KEY);
    let put = http(
        &gw1.host,
        "PUT",
        "/api/workspaces/demo/files/content?path=uploaded.txt",
        &[("authorization", &auth)],
        &format!("uploaded-{tag}"),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let got = http(
        &gw0.host,
        "GET",
        "/api/workspaces/demo/files/content?path=uploaded.txt",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, format!("uploaded-{tag}").as_str())
    );
    let (status, list) = get_json(gw0, ALICE_KEY, "/api/workspaces/demo/files/list?path=").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.to_string().contains("\"kept.txt\""), "{list}");
    let (status, git) = get_json(gw1, ALICE_KEY, "/api/workspaces/demo/git/status").await;
    assert_eq!(
        (status, &git["repository"]),
        (200, &serde_json::json!(false)),
        "{git}"
    );

    // Bob can neither read, open, reach nor delete it: it does not exist for him.
    for (method, path) in [
        ("GET", "/api/workspaces/demo"),
        ("POST", "/api/workspaces/demo/open"),
        ("GET", "/api/workspaces/demo/sessions"),
        (
            "GET",
            "/api/workspaces/demo/files/content?path=uploaded.txt",
        ),
        ("PUT", "/api/workspaces/demo/files/content?path=bob.txt"),
        ("GET", "/api/workspaces/demo/git/status"),
        ("DELETE", "/api/workspaces/demo"),
    ] {
        let auth = bearer(BOB_KEY);
        let r = http(&gw1.host, method, path, &[("authorization", &auth)], "").await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(r.body.contains("no_such_workspace"), "{}", r.body);
    }
    let url = format!("ws://{}/api/workspaces/demo/ws", gw1.host);
    let auth = bearer(BOB_KEY);
    let refused = ws_connect(&url, &[("authorization", &auth)])
        .await
        .expect_err("bob's WebSocket to alice's workspace is refused");
    assert_eq!(refused_status(&refused), 404);

    // A login on one replica is good on the other (shared signing key).
    let r = http(
        &gw0.host,
        "POST",
        "/api/login",
        &[("content-type", "application/json")],
        &serde_json::json!({"key": ALICE_KEY}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = common::cookie_of(&r);
    let me = http(&gw1.host, "GET", "/api/me", &[("cookie", &cookie)], "").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(me.body.contains("\"alice\""));
    // A second login; logging it out on one replica ends it on the other too
    // (through the chart's revocations ConfigMap), and the first login lives on.
    let r = http(
        &gw1.host,
        "POST",
        "/api/login",
        &[("content-type", "application/json")],
        &serde_json::json!({"key": ALICE_KEY}).to_string(),
    )
    .await;
    let second = common::cookie_of(&r);
    let out = http(&gw1.host, "POST", "/api/logout", &[("cookie", &second)], "").await;
    assert_eq!(out.status, 204, "{}", out.body);
    for gw in [gw1, gw0] {
        eventually("the logout to reach every replica", WAIT, || async {
            http(&gw.host, "GET", "/api/me", &[("cookie", &second)], "")
                .await
                .status
                == 401
        })
        .await;
        let me = http(&gw.host, "GET", "/api/me", &[("cookie", &cookie)], "").await;
        assert_eq!(me.status, 200, "the other login is untouched: {}", me.body);
    }
    let shared = c.kubectl(
        &[
            "get",
            "configmap",
            "dispatch-revocations",
            "-o",
            "jsonpath={.data}",
        ],
        None,
    );
    assert!(shared.contains(':'), "one revocation recorded: {shared}");

    // Suspend with kubectl: the gateway shows it Suspended, the pod goes.
    c.kubectl(
        &[
            "patch",
            "ws",
            "demo",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspended":true}}"#,
        ],
        None,
    );
    wait_phase(gw0, ALICE_KEY, "demo", "Suspended").await;
    wait_phase(gw1, ALICE_KEY, "demo", "Suspended").await;
    eventually("the workspace pod to go", WAIT, || async {
        c.node
            .pod(NS, &dispatch_api::crd::names::pod("demo"))
            .is_none()
    })
    .await;

    // Opening it (through the other replica) resumes it; progress shows, then Running.
    let opened = open_workspace(gw1, ALICE_KEY, "demo").await;
    assert_ne!(opened["phase"], "Suspended", "{opened}");
    assert_ne!(opened["phase"], "Running", "not running at once: {opened}");
    let spec = c.kubectl(
        &["get", "ws", "demo", "-o", "jsonpath={.spec.suspended}"],
        None,
    );
    assert_eq!(spec, "false");
    wait_phase(gw1, ALICE_KEY, "demo", "Running").await;
    // Its volume was kept.
    shell_run(
        gw1,
        ALICE_KEY,
        "demo",
        "cat kept.txt",
        &format!("kept-{tag}"),
    )
    .await;

    // Suspended again, a WebSocket alone (a tab reconnecting) does not resume
    // it: it is refused with 503 and the workspace stays suspended.
    suspend(&c, "demo");
    wait_phase(gw0, ALICE_KEY, "demo", "Suspended").await;
    let url = format!("ws://{}/api/workspaces/demo/ws", gw0.host);
    let auth = bearer(ALICE_KEY);
    let refused = ws_connect(&url, &[("authorization", &auth)])
        .await
        .expect_err("a suspended workspace's WebSocket is refused");
    assert_eq!(refused_status(&refused), 503);
    let spec = c.kubectl(
        &["get", "ws", "demo", "-o", "jsonpath={.spec.suspended}"],
        None,
    );
    assert_eq!(spec, "true");
    // Opened on one replica, connected at once on the other (whose cache may
    // not have seen the open yet): the socket waits for the agent.
    open_workspace(gw1, ALICE_KEY, "demo").await;
    shell_run(gw0, ALICE_KEY, "demo", "echo again-$((3+4))", "again-7").await;

    // Trouble reaches the user: the operator's Degraded condition is the
    // workspace's message in the list.
    c.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "{}  resources: {{requests: {{cpu: '4'}}}}\n",
            workspace_yaml("greedy", "alice")
        )),
    );
    eventually("greedy's trouble in the list", WAIT, || async {
        let (_, list) = get_json(gw0, ALICE_KEY, "/api/workspaces").await;
        list.as_array().into_iter().flatten().any(|w| {
            w["name"] == "greedy" && w["message"].as_str().is_some_and(|m| m.contains("limit"))
        })
    })
    .await;

    // Made from the UI's API: a resource from the chart's template, owner filled in.
    let auth = bearer(BOB_KEY);
    let r = http(
        &gw0.host,
        "POST",
        "/api/workspaces",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"name":"bobs"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let owner = c.kubectl(&["get", "ws", "bobs", "-o", "jsonpath={.spec.owner}"], None);
    assert_eq!(owner, "bob");
    let size = c.kubectl(
        &["get", "ws", "bobs", "-o", "jsonpath={.spec.storage.size}"],
        None,
    );
    assert_eq!(size, "1Gi", "the chart's template (values) applies");
    // The name is taken for alice too; alice still sees only hers.
    let auth = bearer(ALICE_KEY);
    let r = http(
        &gw1.host,
        "POST",
        "/api/workspaces",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"name":"bobs"}"#,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let (_, list) = get_json(gw1, ALICE_KEY, "/api/workspaces").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["demo", "greedy"]);
    wait_phase(gw1, BOB_KEY, "bobs", "Running").await;
    shell_run(gw1, BOB_KEY, "bobs", "echo bob-$((2*3))", "bob-6").await;

    // Delete through the gateway: the resource goes (its children by garbage collection).
    let auth = bearer(BOB_KEY);
    let r = http(
        &gw0.host,
        "DELETE",
        "/api/workspaces/bobs",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    eventually("bobs to be gone", WAIT, || async {
        phase_of(gw0, BOB_KEY, "bobs").await.is_none()
            && c.kubectl(&["get", "ws", "--ignore-not-found", "-o", "name"], None)
                .lines()
                .all(|l| l != "workspace.dispatch.dev/bobs")
    })
    .await;
}

fn suspend(c: &Cluster, name: &str) {
    c.kubectl(
        &[
            "patch",
            "ws",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspended":true}}"#,
        ],
        None,
    );
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    rand::fill(&mut b);
    u32::from_le_bytes(b)
}
