//! The Helm chart against a real control plane with the real `helm` and
//! `kubectl`: lint, a server-side dry run of its rendered output, an install
//! into a namespace that enforces Pod Security "restricted" (every object
//! admitted, the Deployments' Pods included), secrets kept across upgrades,
//! and RBAC no wider than the gateway and operator need.

mod kube_env;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, ListParams};
use kube_env::*;

/// The chart ships the CRDs that `crdgen` generates, byte for byte.
#[test]
fn chart_crds_are_the_generated_crds() {
    let chart_crds = format!("{CHART}/crds");
    let names = |dir: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(CRDS),
        names(&chart_crds),
        "charts/dispatch/crds must hold the same files as crds/"
    );
    for f in names(CRDS) {
        let a = std::fs::read(format!("{CRDS}/{f}")).unwrap();
        let b = std::fs::read(format!("{chart_crds}/{f}")).unwrap();
        assert!(
            a == b,
            "charts/dispatch/crds/{f} differs from crds/{f}: cp crds/*.yaml charts/dispatch/crds/"
        );
    }
}

fn can_i(c: &dispatch_kube_harness::ControlPlane, sa: &str, args: &[&str]) -> bool {
    let mut k = c.kubectl();
    k.args(["auth", "can-i", "--as"])
        .arg(format!("system:serviceaccount:{NS}:{sa}"))
        .args(args);
    let out = run(k, None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_dry_runs_and_installs_under_restricted_pod_security() {
    let cp = dispatch_kube_harness::ControlPlane::start()
        .await
        .expect("control plane starts");

    let mut lint = cp.helm();
    lint.args(["lint", "--strict", CHART]);
    ok("helm lint", run(lint, None));
    // Every optional part on, too.
    let mut lint = cp.helm();
    lint.args([
        "lint",
        "--strict",
        CHART,
        "--set",
        "gateway.ingress.enabled=true,gateway.ingress.tlsSecret=tls,serviceMonitor.enabled=true,gateway.auth.existingSecret=k",
    ]);
    ok("helm lint (all options)", run(lint, None));

    cp.create_namespace(
        "dry",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await
    .expect("namespace");
    let mut template = cp.helm();
    template.args([
        "template",
        RELEASE,
        CHART,
        "-n",
        "dry",
        "--include-crds",
        "--set",
        "gateway.ingress.enabled=true,gateway.ingress.tlsSecret=tls,gateway.ingress.className=nginx",
        "--set",
        "gateway.trustedProxies={10.0.0.0/8,192.168.0.0/16}",
        "--set",
        "operator.warmVolumes=2,workspaces.defaults.storageClass=fast",
    ]);
    let rendered = ok("helm template", run(template, None));
    // Warm volumes: the ConfigMap that owns them, the operator told of it and
    // allowed to read it (that one only), the default class passed on.
    let owner = format!("{RELEASE}-warm-volumes");
    assert!(
        rendered.contains(&format!(
            "kind: ConfigMap\nmetadata:\n  name: {owner}\n  namespace: dry"
        )),
        "the warm volumes' owner is rendered"
    );
    for env in [
        "- name: DISPATCH_OPERATOR_WARM_VOLUMES\n              value: \"2\"".to_string(),
        format!(
            "- name: DISPATCH_OPERATOR_WARM_VOLUMES_OWNER\n              value: \"dry/{owner}\""
        ),
        "- name: DISPATCH_DEFAULT_STORAGE_CLASS\n              value: \"fast\"".to_string(),
    ] {
        assert!(rendered.contains(&env), "operator env lacks {env}");
    }
    assert!(
        rendered.contains(&format!("resourceNames: [\"{owner}\"]")),
        "the operator may read the owner"
    );
    assert!(
        rendered.contains(
            "- name: DISPATCH_TRUSTED_PROXIES\n              value: \"10.0.0.0/8,192.168.0.0/16\""
        ),
        "trusted proxies reach the gateway's environment"
    );
    for kind in [
        "kind: CustomResourceDefinition",
        "kind: Deployment",
        "kind: Ingress",
        "kind: PodDisruptionBudget",
        "kind: NetworkPolicy",
        "kind: Role",
        "kind: RoleBinding",
        "kind: ServiceAccount",
        "kind: Secret",
        "kind: ConfigMap",
        "kind: Service",
    ] {
        assert!(rendered.contains(kind), "rendered chart lacks {kind}");
    }
    let mut dry = cp.kubectl();
    dry.args(["apply", "--dry-run=server", "-f", "-"]);
    let out = run(dry, Some(&rendered));
    let text = ok("server-side dry run", out);
    assert!(text.contains("(server dry run)"), "{text}");

    // Install into a restricted namespace: nothing warns, every Pod is admitted.
    let installed = install_chart(&cp, &[]).await;
    assert!(
        !installed.contains("PodSecurity") && !installed.contains("violate"),
        "{installed}"
    );
    assert!(
        installed.contains("log in"),
        "NOTES say how to log in: {installed}"
    );
    let pods: Api<Pod> = Api::namespaced(cp.client(), NS);
    for (name, want) in [("dispatch-gateway", 2), ("dispatch-operator", 1)] {
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={name}"));
        eventually(
            &format!("{want} {name} pods admitted"),
            Duration::from_secs(60),
            || {
                let pods = pods.clone();
                let lp = lp.clone();
                async move { pods.list(&lp).await.map(|l| l.items.len()).unwrap_or(0) == want }
            },
        )
        .await;
        let pod = pods.list(&lp).await.unwrap().items.remove(0);
        let spec = pod.spec.expect("pod spec");
        let sc = spec.containers[0]
            .security_context
            .clone()
            .expect("securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert!(
            spec.containers[0]
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some()
        );
    }
    let events: Api<Event> = Api::namespaced(cp.client(), NS);
    let refused: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .map(|e| e.message.unwrap_or_default())
        .collect();
    assert!(refused.is_empty(), "pods refused: {refused:?}");

    // Generated keys are kept across upgrades (every replica and every
    // upgrade agrees on them).
    let secrets: Api<Secret> = Api::namespaced(cp.client(), NS);
    let signing = secrets.get("dispatch-signing").await.expect("signing key");
    let vapid = secrets.get("dispatch-vapid").await.expect("VAPID key");
    let mut upgrade = cp.helm();
    upgrade.args([
        "upgrade",
        RELEASE,
        CHART,
        "-n",
        NS,
        "--reuse-values",
        "--set",
        "gateway.replicas=3",
    ]);
    ok("helm upgrade", run(upgrade, None));
    assert_eq!(
        secrets.get("dispatch-signing").await.unwrap().data,
        signing.data,
        "the signing key survives an upgrade"
    );
    assert_eq!(
        secrets.get("dispatch-vapid").await.unwrap().data,
        vapid.data,
        "the VAPID key (browsers subscribed to its public key) survives an upgrade"
    );

    // RBAC: what each ServiceAccount may do, and what it may not.
    let gw = "dispatch-gateway";
    for allowed in [
        ["list", "workspaces.dispatch.dev"],
        ["watch", "workspaces.dispatch.dev"],
        ["create", "workspaces.dispatch.dev"],
        ["patch", "workspaces.dispatch.dev"],
        ["delete", "workspaces.dispatch.dev"],
        ["get", "secrets"],
    ] {
        assert!(
            can_i(&cp, gw, &[allowed[0], allowed[1], "-n", NS]),
            "gateway {allowed:?}"
        );
    }
    for denied in [
        ["list", "secrets"],
        ["watch", "secrets"],
        ["create", "secrets"],
        ["get", "pods"],
        ["create", "pods"],
    ] {
        assert!(
            !can_i(&cp, gw, &[denied[0], denied[1], "-n", NS]),
            "gateway {denied:?}"
        );
    }
    // Only its own ConfigMap (shared logouts), by name.
    assert!(can_i(
        &cp,
        gw,
        &["patch", "configmap/dispatch-revocations", "-n", NS]
    ));
    assert!(can_i(
        &cp,
        gw,
        &["watch", "configmap/dispatch-revocations", "-n", NS]
    ));
    assert!(!can_i(
        &cp,
        gw,
        &["patch", "configmap/dispatch-workspace-template", "-n", NS]
    ));
    assert!(!can_i(&cp, gw, &["list", "configmaps", "-n", NS]));
    assert!(!can_i(&cp, gw, &["create", "configmaps", "-n", NS]));
    let status = [
        "patch",
        "workspaces.dispatch.dev",
        "--subresource=status",
        "-n",
        NS,
    ];
    assert!(!can_i(&cp, gw, &status), "the gateway never writes status");
    assert!(can_i(&cp, "dispatch-operator", &status));
    assert!(!can_i(
        &cp,
        gw,
        &["list", "workspaces.dispatch.dev", "-n", "default"]
    ));
    assert!(!can_i(&cp, gw, &["list", "workspaces.dispatch.dev", "-A"]));
    let op = "dispatch-operator";
    for allowed in [
        ["create", "pods"],
        ["delete", "persistentvolumeclaims"],
        ["create", "networkpolicies.networking.k8s.io"],
        ["update", "leases.coordination.k8s.io"],
    ] {
        assert!(
            can_i(&cp, op, &[allowed[0], allowed[1], "-n", NS]),
            "operator {allowed:?}"
        );
    }
    for denied in [
        ["create", "workspaces.dispatch.dev"],
        ["delete", "workspaces.dispatch.dev"],
        ["create", "deployments.apps"],
        ["create", "roles.rbac.authorization.k8s.io"],
    ] {
        assert!(
            !can_i(&cp, op, &[denied[0], denied[1], "-n", NS]),
            "operator {denied:?}"
        );
    }
    assert!(!can_i(&cp, op, &["list", "nodes"]));
    assert!(!can_i(&cp, op, &["create", "pods", "-n", "default"]));
}
