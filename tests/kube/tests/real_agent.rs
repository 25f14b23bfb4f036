//! The real `dispatch-agent` runs as a workspace Pod on the local node: restricted Pod
//! Security admits the pod, the agent binds the pod IP, reads its token from the mounted
//! Secret, keeps its state in the PVC's dir, and the readiness probe makes the Pod Ready.
//!
//! The agent binary is the one `cargo build --workspace --bins` puts beside this test's
//! target dir (scripts/test.d/30-rust.sh builds bins first), or `DISPATCH_AGENT_BIN`.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

const NS: &str = "workspaces";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn agent_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DISPATCH_AGENT_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    // target/debug/deps/<this test> -> target/debug/dispatch-agent
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("dispatch-agent");
    candidate.is_file().then_some(candidate)
}

fn get(ip: Ipv4Addr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(2))
        .expect("connect to the pod IP");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {ip}:8080\r\n{auth}connection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_runs_as_a_workspace_pod() {
    let agent_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../agent/Cargo.toml");
    let Some(agent) = agent_bin() else {
        assert!(
            !agent_dir.exists(),
            "dispatch-agent is part of the workspace but not built: run `cargo build --workspace --bins` \
             or set DISPATCH_AGENT_BIN"
        );
        eprintln!("skipped: no agent crate in this checkout");
        return;
    };
    let cp = ControlPlane::start().await.expect("control plane");
    let client = cp.client();
    cp.create_namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await
        .expect("namespace");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ws-token"}, "stringData": {"token": TOKEN}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ws-alpha-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &claim)
        .await
        .expect("pvc");
    let node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            namespace: Some(NS.into()),
            agent_bin: Some(agent),
            ..Default::default()
        },
    )
    .await
    .expect("node");

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ws-alpha"},
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "ws-alpha-data"}},
                {"name": "token", "secret": {"secretName": "ws-token", "defaultMode": 256}}
            ],
            "containers": [{
                "name": "agent", "image": "dispatch-agent:dev",
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [
                    {"name": "DISPATCH_AGENT_LISTEN", "value": "0.0.0.0:8080"},
                    {"name": "DISPATCH_WORKSPACE", "value": "/workspace"},
                    {"name": "DISPATCH_WORKSPACE_NAME", "value": "alpha"},
                    {"name": "DISPATCH_AGENT_TOKEN_FILE", "value": "/var/run/dispatch/token"}
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/workspace"},
                    {"name": "token", "mountPath": "/var/run/dispatch", "readOnly": true}
                ],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let created = Instant::now();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let ip: Ipv4Addr = loop {
        let p = pods.get("ws-alpha").await.expect("get");
        let st = p.status.clone().unwrap_or_default();
        let ready = st
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            break st.pod_ip.expect("pod IP").parse().expect("ipv4");
        }
        if created.elapsed() > Duration::from_secs(30) {
            let log = node
                .pod(NS, "ws-alpha")
                .and_then(|r| std::fs::read_to_string(r.log).ok())
                .unwrap_or_default();
            panic!(
                "pod never became Ready: {:?}\nagent log:\n{log}",
                p.status.and_then(|s| s.container_statuses)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("create -> Ready in {:?}", created.elapsed());

    let (code, body) = get(ip, "/readyz", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (get(ip, "/sessions", None).0),
        401,
        "the agent wants its token"
    );
    assert_eq!(get(ip, "/sessions", Some("wrong-token-wrong-token")).0, 401);
    let (code, body) = get(ip, "/activity", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let activity: serde_json::Value = serde_json::from_str(&body).expect("activity json");
    assert!(activity.is_object(), "{body}");
    let claim = node.claim_dir(NS, "ws-alpha-data");
    assert!(
        claim.join(".dispatch").is_dir(),
        "agent state lives in the claim's dir"
    );

    let pid = node.pod(NS, "ws-alpha").and_then(|p| p.pid).expect("pid");
    pods.delete("ws-alpha", &DeleteParams::default())
        .await
        .expect("delete");
    let deleted = Instant::now();
    while pods.get_opt("ws-alpha").await.expect("get").is_some() {
        assert!(
            deleted.elapsed() < Duration::from_secs(20),
            "pod deletion never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "agent process ended"
    );
}
