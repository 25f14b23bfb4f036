//! Driver of the Chromium test of the Kubernetes path
//! (`tests/browser/kubernetes.e2e.mjs`): starts the control plane, installs
//! the chart, runs the operator and a gateway with the chart's ServiceAccount
//! tokens and the local node, then runs the browser test against them.
//!
//! Ignored by a plain `cargo test` because it needs Chromium, the web UI
//! build and tests/browser's node_modules; `scripts/test.d/60-kube-browser.sh`
//! prepares those and runs it (missing pieces fail there, never skip).

mod kube_env;

use std::process::Command;

use kube_env::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, web/dist and tests/browser/node_modules: run scripts/test.d/60-kube-browser.sh"]
async fn kubectl_apply_to_browser_terminal_in_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: npm ci in tests/browser"
    );
    assert!(
        root.join("web/dist/index.html").is_file(),
        "web/dist is missing: npm run build in web/"
    );
    let c = Cluster::start(1).await;
    let gw = &c.gateways[0];
    let mut node = Command::new("node");
    node.current_dir(&browser_dir)
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-timeout=600000",
            "--test-reporter=spec",
            "kubernetes.e2e.mjs",
        ])
        .env("DISPATCH_E2E_GATEWAY_URL", gw.url())
        .env("DISPATCH_E2E_ALICE_KEY", ALICE_KEY)
        .env("DISPATCH_E2E_BOB_KEY", BOB_KEY)
        .env("DISPATCH_E2E_KUBECTL", c.cp.bin_dir().join("kubectl"))
        .env("DISPATCH_E2E_NAMESPACE", NS)
        .env("KUBECONFIG", c.cp.kubeconfig_path());
    // Run off the async runtime: the gateway and node run meanwhile.
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .expect("join")
        .expect("run node (is Node.js installed?)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    if !out.status.success() {
        eprintln!("--- gateway log ---\n{}", gw.proc.log_text());
    }
    assert!(out.status.success(), "the Chromium test failed:\n{text}");
    assert!(
        text.contains("pass 5"),
        "all five browser steps ran:\n{text}"
    );
}
