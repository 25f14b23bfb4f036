//! Bad Workspace specs are refused by the real apiserver, from the committed
//! CRD's schema and CEL rules, with a message that says what is wrong.

mod common;

use common::*;
use dispatch_kube_harness::{ControlPlane, ControlPlaneOptions};

fn ws(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

fn refused(cp: &ControlPlane, yaml: &str, expect: &str) {
    let out = kubectl_apply(cp, yaml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted but should not be:\n{yaml}");
    assert!(
        err.contains(expect),
        "expected {expect:?} in: {err}\nfor:\n{yaml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_with_clear_messages() {
    // No controller-manager needed: only the apiserver validates here.
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: false,
        ..Default::default()
    })
    .await
    .expect("control plane starts");
    install_crd(&cp);

    refused(&cp, &ws("a", "  image: x\n"), "spec.owner: Required value");
    refused(&cp, &ws("a", "  owner: 'bad owner!'\n"), "spec.owner");
    refused(
        &cp,
        &ws("a", "  owner: al\n  idleTimeout: soon\n"),
        "spec.idleTimeout",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  idleTimeout: 500ms\n"),
        "idleTimeout must be a duration of at least 1s",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  storage: {size: lots}\n"),
        "storage.size must be a positive quantity",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  storage: {size: '0'}\n"),
        "storage.size must be a positive quantity",
    );
    refused(
        &cp,
        &ws(
            "a",
            "  owner: al\n  env: [{name: DISPATCH_AGENT_TOKEN, value: x}]\n",
        ),
        "reserved for the operator",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  env: [{name: '1X', value: x}]\n"),
        "spec.env[0].name",
    );
    refused(
        &cp,
        &ws(
            "a",
            "  owner: al\n  resources: {requests: {cpu: '2'}, limits: {cpu: 500m}}\n",
        ),
        "resources.limits.cpu must be at least resources.requests.cpu",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  resources: {limits: {memory: many}}\n"),
        "memory must be a positive quantity",
    );
    refused(
        &cp,
        &ws("a", "  owner: al\n  claude: {permissionMode: yolo}\n"),
        "spec.claude.permissionMode",
    );
    refused(
        &cp,
        &ws(&"a".repeat(60), "  owner: al\n"),
        "metadata.name must be a DNS label",
    );

    // Transition rules: the owner and storage class never change, the volume never shrinks.
    ok(kubectl_apply(
        &cp,
        &ws(
            "good",
            "  owner: alice\n  storage: {size: 2Gi, storageClassName: fast}\n",
        ),
    ));
    refused(
        &cp,
        &ws(
            "good",
            "  owner: mallory\n  storage: {size: 2Gi, storageClassName: fast}\n",
        ),
        "owner is immutable",
    );
    refused(
        &cp,
        &ws(
            "good",
            "  owner: alice\n  storage: {size: 1Gi, storageClassName: fast}\n",
        ),
        "may grow but not shrink",
    );
    refused(
        &cp,
        &ws(
            "good",
            "  owner: alice\n  storage: {size: 2Gi, storageClassName: slow}\n",
        ),
        "storageClassName is immutable",
    );
    ok(kubectl_apply(
        &cp,
        &ws(
            "good",
            "  owner: alice\n  storage: {size: 3Gi, storageClassName: fast}\n  idleTimeout: 1h30m\n",
        ),
    ));

    // A class cannot be added later either (the claim's class never changes).
    ok(kubectl_apply(&cp, &ws("plain", "  owner: alice\n")));
    refused(
        &cp,
        &ws(
            "plain",
            "  owner: alice\n  storage: {storageClassName: fast}\n",
        ),
        "storage.storageClassName cannot be set or removed after creation",
    );
    refused(
        &cp,
        &ws("good", "  owner: alice\n  storage: {size: 3Gi}\n"),
        "storage.storageClassName cannot be set or removed after creation",
    );
    // A duration that matches the old pattern but overflows gets a clear message.
    refused(
        &cp,
        &ws("a", "  owner: al\n  idleTimeout: 999999999h\n"),
        "idleTimeout must be a duration such as 30m or 1h30m, with at most 5 digits",
    );
    ok(kubectl_apply(
        &cp,
        &ws(
            "long",
            "  owner: al\n  idleTimeout: 99999h99999h99999h99999h\n",
        ),
    ));

    // A grow the claim never followed (status.volume.size, written by the
    // operator, still says the old size) can be undone; below that, no.
    ok(kubectl_apply(
        &cp,
        &ws("grown", "  owner: alice\n  storage: {size: 1Gi}\n"),
    ));
    ok(kubectl(
        &cp,
        &[
            "patch",
            "ws",
            "grown",
            "-n",
            "default",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"volume":{"size":"1Gi"}}}"#,
        ],
    ));
    ok(kubectl_apply(
        &cp,
        &ws("grown", "  owner: alice\n  storage: {size: 2Gi}\n"),
    ));
    ok(kubectl_apply(
        &cp,
        &ws("grown", "  owner: alice\n  storage: {size: 1Gi}\n"),
    ));
    refused(
        &cp,
        &ws("grown", "  owner: alice\n  storage: {size: 512Mi}\n"),
        "may grow but not shrink",
    );

    // `kubectl explain` has a description for the fields.
    let explain = ok(kubectl(
        &cp,
        &["explain", "workspace.spec.storage.retainOnDelete"],
    ));
    assert!(explain.contains("Keep the volume"), "{explain}");
    let explain = ok(kubectl(&cp, &["explain", "workspace.status.phase"]));
    assert!(explain.contains("Where"), "{explain}");
}
