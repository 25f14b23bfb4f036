//! The local node runs a Pod's `agent` container as a real local process on the pod's own
//! loopback IP, reports status as a kubelet would, keeps PVC data across pod recreation,
//! restarts a crashed container, and ends the process when the Pod is deleted.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::PostParams;

const NS: &str = "apps";

fn pod_json(name: &str, app: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "echo-data"}},
                {"name": "token", "secret": {"secretName": "echo-token", "defaultMode": 256}},
                {"name": "tmp", "emptyDir": {}}
            ],
            "containers": [{
                "name": "agent",
                "image": "dispatch-agent:test",
                "args": ["--workspace", "/workspace/root"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [
                    {"name": "DISPATCH_AGENT_LISTEN", "value": "0.0.0.0:8080"},
                    {"name": "DISPATCH_WORKSPACE", "value": "/workspace"},
                    {"name": "DISPATCH_AGENT_TOKEN_FILE", "value": "/var/run/dispatch/token"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "echo-token", "key": "token"}}},
                    {"name": "ECHO_READY_FILE", "value": "/workspace/ready"},
                    {"name": "TMPDIR", "value": "/tmp"}
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/workspace"},
                    {"name": "token", "mountPath": "/var/run/dispatch", "readOnly": true},
                    {"name": "tmp", "mountPath": "/tmp"}
                ],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    })
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pvc_named(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc")
}

async fn claim_phase(claims: &Api<PersistentVolumeClaim>, name: &str) -> Option<String> {
    claims.get(name).await.ok()?.status?.phase
}

fn waiting_reason(pod: &Pod) -> Option<(String, String)> {
    let w = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.phase.clone()
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

/// A blocking HTTP/1.1 GET against the pod IP (loopback only).
fn http_get(ip: Ipv4Addr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {ip}\r\nconnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((code, body))
}

fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_node_runs_pods_as_local_processes() {
    let cp = ControlPlane::start().await.expect("control plane");
    let client = cp.client();
    cp.create_namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await
        .expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "echo-token"},
        "stringData": {"token": "s3cret-token"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");

    let node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            namespace: Some(NS.into()),
            label_selector: Some("app=echo".into()),
            agent_bin: Some(env!("CARGO_BIN_EXE_kube-harness-echo").into()),
            ..Default::default()
        },
    )
    .await
    .expect("local node");

    // The Node is registered and Ready.
    let n = Api::<Node>::all(client.clone())
        .get(node.name())
        .await
        .expect("node");
    let ready = n
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let p: Pod = serde_json::from_value(pod_json("echo-1", "echo")).expect("pod");
    // Admitted under PodSecurity `restricted`: the spec above is what the operator must write too.
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
    let mut no_agent = pod_json("no-agent", "echo");
    no_agent["spec"]["containers"][0]["name"] = "web".into();
    let no_agent: Pod = serde_json::from_value(no_agent).expect("pod");
    pods.create(&PostParams::default(), &no_agent)
        .await
        .expect("create pod");
    let other: Pod = serde_json::from_value(pod_json("not-mine", "other")).expect("pod");
    pods.create(&PostParams::default(), &other)
        .await
        .expect("create pod");

    // As a kubelet, the node does not start a pod whose claim does not exist yet.
    let (reason, message) =
        wait_for(
            "echo-1 waiting for its claim",
            Duration::from_secs(30),
            || {
                let pods = pods.clone();
                // The first report says ContainerCreating with no message yet: wait for the why.
                async move {
                    waiting_reason(&pods.get("echo-1").await.ok()?).filter(|(_, m)| !m.is_empty())
                }
            },
        )
        .await;
    assert_eq!(reason, "ContainerCreating");
    assert!(message.contains("echo-data"), "{message}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    claims
        .create(&PostParams::default(), &pvc_named("echo-data"))
        .await
        .expect("pvc");

    // Running with a 127.0.0.x pod IP, not Ready while the readiness file is absent.
    let running = wait_for(
        "echo-1 Running with a pod IP",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get("echo-1").await.ok()?;
                (phase(&p).as_deref() == Some("Running") && pod_ip(&p).is_some()).then_some(p)
            }
        },
    )
    .await;
    let ip = pod_ip(&running).expect("ip");
    assert_eq!(ip.octets()[0..3], [127, 0, 0], "pod IP {ip}");
    assert_ne!(ip, Ipv4Addr::LOCALHOST);
    let status = running.status.clone().expect("status");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        running.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name())
    );
    assert_eq!(condition(&running, "PodScheduled").as_deref(), Some("True"));
    assert_eq!(condition(&running, "Ready").as_deref(), Some("False"));

    // The node provisioned a volume for the claim and the controller-manager bound it.
    wait_for("echo-data Bound", Duration::from_secs(30), || {
        let claims = claims.clone();
        async move {
            (claim_phase(&claims, "echo-data").await.as_deref() == Some("Bound")).then_some(())
        }
    })
    .await;

    // The process answers on the pod IP with the env and mounts mapped to host dirs.
    let (code, body) = http_get(ip, "/info").expect("agent answers on the pod IP");
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let env = &info["env"];
    assert_eq!(env["DISPATCH_AGENT_LISTEN"], format!("{ip}:8080"));
    assert_eq!(env["TOKEN"], "s3cret-token");
    let claim = node.claim_dir(NS, "echo-data");
    assert_eq!(env["DISPATCH_WORKSPACE"], claim.display().to_string());
    assert_eq!(
        info["args"],
        serde_json::json!(["--workspace", format!("{}/root", claim.display())])
    );
    let token_file = env["DISPATCH_AGENT_TOKEN_FILE"]
        .as_str()
        .expect("token file")
        .to_string();
    let (code, token) = http_get(ip, &format!("/file{token_file}")).expect("file");
    assert_eq!((code, token.as_slice()), (200, b"s3cret-token".as_slice()));
    assert!(
        env.get("DISPATCH_KUBE_BIN_DIR").is_none(),
        "env is the pod's, not the test's"
    );
    assert_eq!(node.pod(NS, "echo-1").map(|p| p.ip), Some(ip));

    // Readiness follows the probe.
    std::fs::write(claim.join("ready"), b"").expect("ready file");
    wait_for("echo-1 Ready", Duration::from_secs(10), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("echo-1").await.ok()?;
            (condition(&p, "Ready").as_deref() == Some("True")
                && condition(&p, "ContainersReady").as_deref() == Some("True"))
            .then_some(())
        }
    })
    .await;

    // A pod outside the selector is left alone: unscheduled, Pending.
    // So is one without an agent container, even though it matches the selector.
    for name in ["not-mine", "no-agent"] {
        let o = pods.get(name).await.expect("pod");
        assert!(
            o.spec.and_then(|s| s.node_name).is_none(),
            "{name} was bound"
        );
    }

    // A crash is restarted (restartPolicy Always) and counted.
    let pid_before = node.pod(NS, "echo-1").and_then(|p| p.pid).expect("pid");
    let _ = http_get(ip, "/exit/3");
    wait_for("echo-1 restarted", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("echo-1").await.ok()?;
            (restarts(&p) == 1 && condition(&p, "Ready").as_deref() == Some("True")).then_some(())
        }
    })
    .await;
    let pid_after = node.pod(NS, "echo-1").and_then(|p| p.pid).expect("pid");
    assert_ne!(pid_before, pid_after);
    assert_eq!(http_get(ip, "/healthz").expect("answers again").0, 200);

    // Data in the claim outlives the pod; deleting the pod (real kubectl, graceful) ends the
    // process and the node finishes the deletion, so `kubectl delete --wait` returns.
    std::fs::write(claim.join("kept.txt"), b"still here").expect("write");
    let out = cp
        .kubectl()
        .args([
            "-n",
            NS,
            "delete",
            "pod",
            "echo-1",
            "--wait=true",
            "--timeout=30s",
        ])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pods.get_opt("echo-1").await.expect("get").is_none());
    wait_for(
        "the process to be gone",
        Duration::from_secs(10),
        || async move { (!process_alive(pid_after)).then_some(()) },
    )
    .await;
    assert!(
        http_get(ip, "/healthz").is_err(),
        "nothing listens on the old pod IP"
    );
    assert!(node.pod(NS, "echo-1").is_none());

    // A pod that keeps the default ServiceAccount token (the admission plugin adds the
    // projected `kube-api-access-*` volume) gets a real token bound to it.
    let mut with_token = pod_json("echo-sa", "echo");
    with_token["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("automountServiceAccountToken");
    let with_token: Pod = serde_json::from_value(with_token).expect("pod");
    pods.create(&PostParams::default(), &with_token)
        .await
        .expect("create");
    let sa_pod = wait_for("echo-sa running", Duration::from_secs(30), || {
        let node = &node;
        async move { node.pod(NS, "echo-sa").filter(|p| p.pid.is_some()) }
    })
    .await;
    let volumes = node
        .state_dir()
        .join("pods")
        .join(&sa_pod.uid)
        .join("volumes");
    let token_file = std::fs::read_dir(&volumes)
        .expect("volumes")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kube-api-access-"))
        })
        .expect("projected volume")
        .join("token");
    let token = std::fs::read_to_string(&token_file).expect("token");
    let review: TokenReview = serde_json::from_value(serde_json::json!({
        "spec": {"token": token}
    }))
    .expect("review");
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("token review");
    let status = reviewed.status.expect("status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:apps:default")
    );
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["echo-sa".to_string()]),
        "bound to the pod"
    );
    pods.delete("echo-sa", &Default::default())
        .await
        .expect("delete");

    // Recreated, the pod sees the claim's data again.
    pods.create(&PostParams::default(), &p)
        .await
        .expect("recreate");
    let again = wait_for("echo-1 Running again", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("echo-1").await.ok()?;
            (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
        }
    })
    .await;
    let ip2 = pod_ip(&again).expect("ip");
    let (code, kept) = http_get(ip2, &format!("/file{}/kept.txt", claim.display())).expect("file");
    assert_eq!((code, kept.as_slice()), (200, b"still here".as_slice()));

    // Deleting a claim deletes its volume and data, as a dynamic provisioner's "Delete" does.
    let scratch = claims
        .create(&PostParams::default(), &pvc_named("scratch"))
        .await
        .expect("pvc");
    wait_for("scratch Bound", Duration::from_secs(30), || {
        let claims = claims.clone();
        async move { (claim_phase(&claims, "scratch").await.as_deref() == Some("Bound")).then_some(()) }
    })
    .await;
    let scratch_dir = node.claim_dir(NS, "scratch");
    std::fs::create_dir_all(&scratch_dir).expect("dir");
    std::fs::write(scratch_dir.join("f"), b"x").expect("write");
    claims
        .delete("scratch", &Default::default())
        .await
        .expect("delete pvc");
    let pv_name = format!("pvc-{}", scratch.metadata.uid.expect("uid"));
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_for(
        "scratch's PV and data gone",
        Duration::from_secs(30),
        || {
            let pvs = pvs.clone();
            let pv_name = pv_name.clone();
            let dir = scratch_dir.clone();
            async move {
                (matches!(pvs.get_opt(&pv_name).await, Ok(None)) && !dir.exists()).then_some(())
            }
        },
    )
    .await;
    assert!(claim.exists(), "other claims keep their data");

    // Shutting the node down ends its processes.
    let pid = node.pod(NS, "echo-1").and_then(|p| p.pid).expect("pid");
    node.shutdown().await;
    assert!(!process_alive(pid), "process ended with the node");
}
