//! Deleting the namespace of the README's install (the chart: operator, its
//! Role and its Lease in the workspaces' namespace) finishes, with running
//! workspaces in it, one of them keeping its volume. Nothing in it may wait
//! for the operator, whose Role and process go with the namespace.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use dispatch_api::crd::Workspace;
use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

const NS: &str = "dispatch";
const RELEASE: &str = "dispatch";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/dispatch");
const WAIT: Duration = Duration::from_secs(120);

/// The operator as the chart's Deployment runs it: its container's env and
/// its ServiceAccount's token.
async fn start_chart_operator(cp: &ControlPlane) -> Operator {
    let d = Api::<Deployment>::namespaced(cp.client(), NS)
        .get(&format!("{RELEASE}-operator"))
        .await
        .expect("operator Deployment");
    let spec = d.spec.template.spec.expect("pod spec");
    let c = &spec.containers[0];
    let token = cp
        .service_account_token(NS, &format!("{RELEASE}-operator"), 3600)
        .await
        .expect("token");
    let kubeconfig = cp
        .write_token_kubeconfig("operator", &token)
        .expect("kubeconfig");
    let mut cmd = Command::new(operator_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            cmd.env(&e.name, v);
        }
    }
    cmd.env("DISPATCH_OPERATOR_LISTEN", "127.0.0.1:0")
        .env("DISPATCH_OPERATOR_IDENTITY", "operator-0")
        .env("DISPATCH_OPERATOR_LEASE_SECONDS", "3")
        .env("DISPATCH_OPERATOR_LOG_JSON", "false")
        .env("DISPATCH_AGENT_IMAGE", "dispatch-agent:test")
        .env("RUST_LOG", "info,dispatch_operator=debug")
        .env("KUBECONFIG", kubeconfig);
    Operator::spawn(cp, cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_of_the_chart_install_finishes() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    cp.create_namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await
        .expect("namespace");
    let mut helm = cp.helm();
    helm.args([
        "install",
        RELEASE,
        CHART,
        "-n",
        NS,
        "--set",
        "workspaces.template.storage.size=1Gi",
    ]);
    let out = helm.output().expect("helm");
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let node = LocalNode::start(
        cp.client(),
        LocalNodeOptions {
            label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
            agent_bin: Some(agent_bin()),
            ..Default::default()
        },
    )
    .await
    .expect("local node");
    let operator = start_chart_operator(&cp).await;

    let wss: Api<Workspace> = Api::namespaced(cp.client(), NS);
    for (name, storage) in [
        ("plain", "{size: 1Gi}"),
        ("kept", "{size: 1Gi, retainOnDelete: true}"),
    ] {
        ok(kubectl_apply(
            &cp,
            &format!(
                "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  owner: alice\n  storage: {storage}\n"
            ),
        ));
    }
    for name in ["plain", "kept"] {
        eventually(&format!("{name} Running"), WAIT, || async {
            phase(&wss, name).await.as_deref() == Some("Running")
        })
        .await;
    }

    ok(kubectl(&cp, &["delete", "namespace", NS, "--wait=false"]));
    let namespaces: Api<Namespace> = Api::all(cp.client());
    eventually("the namespace gone", WAIT, || async {
        matches!(namespaces.get_opt(NS).await, Ok(None))
    })
    .await;
    drop(operator);
    node.shutdown().await;
}
