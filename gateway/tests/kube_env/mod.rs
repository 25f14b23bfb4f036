//! The product as a cluster user meets it, on a real control plane: the
//! chart installed with the real `helm`, then the operator and the gateway run
//! as local processes *as the chart's Deployments would run them* (the env of
//! their containers, their Secret/ConfigMap/emptyDir volumes materialised to
//! temp dirs, the ServiceAccount token of the chart's ServiceAccounts from
//! TokenRequest), plus the local-node harness running workspace pods' agents
//! on 127.0.0.x.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::Api;

pub const NS: &str = "dispatch";
pub const RELEASE: &str = "dispatch";
pub const ALICE_KEY: &str = "alice-key-0123456789abcdef";
pub const BOB_KEY: &str = "bob-key-0123456789abcdef";
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/dispatch");
pub const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
pub const WEB_DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist");

/// A binary cargo built next to this test (`target/debug/<name>`).
pub fn sibling_bin(name: &str) -> PathBuf {
    let gw = PathBuf::from(env!("CARGO_BIN_EXE_dispatch-gateway"));
    let bin = gw.with_file_name(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        bin.display()
    );
    bin
}

pub fn run(mut cmd: Command, input: Option<&str>) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(stdin);
    child.wait_with_output().expect("output")
}

pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 100 ms until it holds; fails after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed on drop, its stderr in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub first_line: String,
}

impl Proc {
    /// Spawns `cmd` and reads its first stdout line.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first_line = String::new();
        out.read_line(&mut first_line).expect("first line");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Proc {
            child,
            log,
            first_line: first_line.trim().to_owned(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- log tail ({}) ---", self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The container of a Deployment the chart installed.
pub async fn container(cp: &ControlPlane, deployment: &str) -> (Container, Deployment) {
    let d = Api::<Deployment>::namespaced(cp.client(), NS)
        .get(deployment)
        .await
        .expect("deployment");
    let spec = d.spec.clone().template.spec.expect("pod spec");
    (spec.containers[0].clone(), d)
}

/// What a kubelet would do for one container, on this machine: each
/// Secret / ConfigMap / emptyDir volume it mounts becomes a temp dir, and its
/// env (values naming a mount path rewritten) becomes the process env.
pub async fn kubelet_env(
    cp: &ControlPlane,
    d: &Deployment,
    c: &Container,
    root: &Path,
) -> BTreeMap<String, String> {
    let pod = d.spec.template.spec.clone().expect("pod spec");
    let secrets: Api<Secret> = Api::namespaced(cp.client(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(cp.client(), NS);
    let mut mounts: Vec<(String, PathBuf)> = vec![];
    for m in c.volume_mounts.iter().flatten() {
        let v = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("volume of mount");
        let dir = root.join(&v.name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().expect("secretName");
            let obj = secrets.get(name).await.expect("mounted Secret exists");
            for (k, val) in obj.data.unwrap_or_default() {
                std::fs::write(dir.join(k), val.0).unwrap();
            }
        } else if let Some(cm) = &v.config_map {
            let obj = maps.get(&cm.name).await.expect("mounted ConfigMap exists");
            for (k, val) in obj.data.unwrap_or_default() {
                std::fs::write(dir.join(k), val).unwrap();
            }
        } else {
            assert!(v.empty_dir.is_some(), "unexpected volume type {v:?}");
        }
        mounts.push((m.mount_path.clone(), dir));
    }
    let mut env = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let Some(value) = e.value.clone() else {
            continue; // fieldRefs: set by the caller
        };
        // The longest mount path that prefixes the value, rewritten once.
        let hit = mounts
            .iter()
            .filter(|(path, _)| value.starts_with(path.as_str()))
            .max_by_key(|(path, _)| path.len());
        if let Some((path, dir)) = hit {
            env.insert(
                e.name.clone(),
                format!("{}{}", dir.display(), &value[path.len()..]),
            );
        } else {
            env.insert(e.name.clone(), value);
        }
    }
    env
}

/// Where everything runs.
pub struct Cluster {
    pub node: LocalNode,
    pub operator: Proc,
    pub gateways: Vec<Gateway>,
    pub state: tempfile::TempDir,
    pub cp: ControlPlane,
}

pub struct Gateway {
    pub proc: Proc,
    /// host:port
    pub host: String,
}

impl Gateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }
}

/// Creates the namespace (Pod Security restricted) and the users Secret,
/// then `helm install`s the chart; returns helm's output.
pub async fn install_chart(cp: &ControlPlane, extra: &[&str]) -> String {
    cp.create_namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await
        .expect("namespace");
    let users = serde_json::json!([
        {"user": "alice", "key": ALICE_KEY},
        {"user": "bob", "key": BOB_KEY},
    ]);
    let mut kubectl = cp.kubectl();
    kubectl.args([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "dispatch-users",
        &format!("--from-literal=users.json={users}"),
    ]);
    ok("create users secret", run(kubectl, None));
    let mut helm = cp.helm();
    helm.args([
        "install",
        RELEASE,
        CHART,
        "-n",
        NS,
        "--set",
        "gateway.auth.existingUsersSecret=dispatch-users",
        "--set",
        "workspaces.template.storage.size=1Gi",
    ])
    .args(extra);
    let out = run(helm, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm install failed: {text}");
    text
}

/// A kubeconfig of the chart's ServiceAccount `sa` (TokenRequest).
pub async fn sa_kubeconfig(cp: &ControlPlane, sa: &str) -> PathBuf {
    let token = cp
        .service_account_token(NS, sa, 3600)
        .await
        .expect("token request");
    assert!(!token.is_empty());
    cp.write_token_kubeconfig(sa, &token).expect("kubeconfig")
}

pub async fn start_operator(cp: &ControlPlane, state: &Path) -> Proc {
    let (c, d) = container(cp, &format!("{RELEASE}-operator")).await;
    let dir = state.join("operator");
    let env = kubelet_env(cp, &d, &c, &dir).await;
    let mut cmd = Command::new(sibling_bin("dispatch-operator"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .env("DISPATCH_OPERATOR_LISTEN", "127.0.0.1:0")
        .env("DISPATCH_OPERATOR_IDENTITY", "operator-0")
        .env("DISPATCH_OPERATOR_LEASE_SECONDS", "3")
        .env("RUST_LOG", "info,dispatch_operator=debug")
        .env(
            "KUBECONFIG",
            sa_kubeconfig(cp, &format!("{RELEASE}-operator")).await,
        );
    let p = Proc::spawn(cmd, state.join("operator.log"));
    assert!(
        p.first_line.starts_with("DISPATCH_OPERATOR_LISTENING "),
        "operator said {:?}; log {}",
        p.first_line,
        p.log_text()
    );
    p
}

pub async fn start_gateway(cp: &ControlPlane, state: &Path, n: usize) -> Gateway {
    let (c, d) = container(cp, &format!("{RELEASE}-gateway")).await;
    let dir = state.join(format!("gateway-{n}"));
    let env = kubelet_env(cp, &d, &c, &dir).await;
    assert_eq!(
        env.get("DISPATCH_BACKEND").map(String::as_str),
        Some("kubernetes")
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .env("DISPATCH_LISTEN", "127.0.0.1:0")
        .env("DISPATCH_WEB_DIR", WEB_DIST)
        .env("RUST_LOG", "info,dispatch_gateway=debug")
        .env(
            "KUBECONFIG",
            sa_kubeconfig(cp, &format!("{RELEASE}-gateway")).await,
        );
    let proc = Proc::spawn(cmd, state.join(format!("gateway-{n}.log")));
    let host = proc
        .first_line
        .strip_prefix("DISPATCH_GATEWAY_LISTENING http://")
        .unwrap_or_else(|| {
            panic!(
                "gateway said {:?}; log {}",
                proc.first_line,
                proc.log_text()
            )
        })
        .to_owned();
    Gateway { proc, host }
}

impl Cluster {
    /// Control plane, chart, local node, operator and `gateways` gateways.
    pub async fn start(gateways: usize) -> Cluster {
        let cp = ControlPlane::start().await.expect("control plane starts");
        install_chart(&cp, &[]).await;
        let state = tempfile::tempdir().expect("state dir");
        let node = LocalNode::start(
            cp.client(),
            LocalNodeOptions {
                label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
                agent_bin: Some(sibling_bin("dispatch-agent")),
                ..Default::default()
            },
        )
        .await
        .expect("local node");
        let operator = start_operator(&cp, state.path()).await;
        let mut gws = vec![];
        for n in 0..gateways {
            gws.push(start_gateway(&cp, state.path(), n).await);
        }
        Cluster {
            node,
            operator,
            gateways: gws,
            state,
            cp,
        }
    }

    pub fn kubectl(&self, args: &[&str], input: Option<&str>) -> String {
        let mut c = self.cp.kubectl();
        c.args(["-n", NS]).args(args);
        ok(&format!("kubectl {args:?}"), run(c, input))
    }
}

pub fn workspace_yaml(name: &str, owner: &str) -> String {
    format!(
        "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\nspec:\n  owner: {owner}\n  storage: {{size: 1Gi}}\n"
    )
}
