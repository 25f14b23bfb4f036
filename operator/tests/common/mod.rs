//! Shared by the control-plane tests: the real operator binary, kubectl, waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dispatch_api::crd::Workspace;
use dispatch_kube_harness::ControlPlane;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use kube::Api;

pub const CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/workspace.yaml");

/// The agent binary: DISPATCH_AGENT_BIN, else the one cargo built next to this test.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DISPATCH_AGENT_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("dispatch-agent");
    assert!(
        bin.is_file(),
        "{} missing: `cargo build -p dispatch-agent` first",
        bin.display()
    );
    bin
}

/// The operator binary: DISPATCH_OPERATOR_BIN (to try another build, e.g.
/// to see a test fail without a fix), else the one cargo built.
pub fn operator_bin() -> PathBuf {
    std::env::var_os("DISPATCH_OPERATOR_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dispatch-operator")))
}

/// Polls `f` every 100 ms until it holds; fails the test after `timeout`.
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

/// `kubectl apply -f -` with `yaml` on stdin.
pub fn kubectl_apply(cp: &ControlPlane, yaml: &str) -> Output {
    kubectl_stdin(cp, &["apply", "-f", "-"], yaml)
}

pub fn kubectl_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> Output {
    let mut child = cp
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write yaml");
    child.wait_with_output().expect("kubectl output")
}

pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> Output {
    cp.kubectl().args(args).output().expect("run kubectl")
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs the committed CRD and waits until it is served.
pub fn install_crd(cp: &ControlPlane) {
    ok(kubectl(cp, &["apply", "--server-side", "-f", CRD]));
    ok(kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workspaces.dispatch.dev",
        ],
    ));
}

/// The real `dispatch-operator` binary, pointed at the control plane.
pub struct Operator {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(cp: &ControlPlane, extra: &[&str]) -> Operator {
        let mut cmd = Command::new(operator_bin());
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--lease-seconds",
            "3",
            "--agent-image",
            "dispatch-agent:test",
        ])
        .args(extra)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "info,dispatch_operator=debug");
        Operator::spawn(cp, cmd)
    }

    /// The operator binary as `cmd` has it set up (env, args).
    pub fn spawn(cp: &ControlPlane, mut cmd: Command) -> Operator {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = cp.state_dir().join(format!("operator-{n}.log"));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("operator log"))
            .spawn()
            .expect("start dispatch-operator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("DISPATCH_OPERATOR_LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log {}", log.display()))
            .parse()
            .expect("address");
        Operator { child, addr, log }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("http://{}{path}", self.addr), None).await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- operator log tail ({}) ---", self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A plain HTTP GET on loopback; (status, body).
pub async fn http_get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = hyper::Request::get(url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The Workspace's phase as the apiserver has it.
pub async fn phase(api: &Api<Workspace>, name: &str) -> Option<String> {
    let ws = api.get_opt(name).await.ok()??;
    ws.status?.phase.map(|p| p.as_str().to_string())
}
