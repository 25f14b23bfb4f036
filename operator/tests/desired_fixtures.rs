//! The pure desired-state builder, driven by the YAML fixtures in `tests/fixtures/`.

use std::collections::BTreeMap;

use dispatch_api::crd::Workspace;
use dispatch_operator::config::{Egress, WorkspaceDefaults};
use dispatch_operator::desired::{Children, desired, validate};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

fn fixture(name: &str) -> Workspace {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn build(name: &str, defaults: &WorkspaceDefaults) -> Children {
    let ws = fixture(name);
    validate(&ws).expect("fixture is valid");
    desired(&ws, defaults, "secret-token")
}

fn pod_spec(c: &Children) -> &PodSpec {
    c.pod.as_ref().and_then(|p| p.spec.as_ref()).expect("a pod")
}

fn agent(c: &Children) -> &Container {
    &pod_spec(c).containers[0]
}

fn env_map(c: &Children) -> BTreeMap<String, EnvVar> {
    agent(c)
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.clone()))
        .collect()
}

fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
    env.get(name).and_then(|e| e.value.clone())
}

#[test]
fn pod_is_locked_down() {
    let c = build("minimal.yaml", &WorkspaceDefaults::default());
    let spec = pod_spec(&c);
    assert_eq!(spec.automount_service_account_token, Some(false));
    let psc = spec.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(1000));
    assert_eq!(psc.fs_group, Some(1000));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let sc = agent(&c).security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    // Writable places despite the read-only root: the volume, /tmp, HOME.
    let mounts: BTreeMap<_, _> = agent(&c)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(mounts["/workspace"], Some(false));
    assert_eq!(mounts["/tmp"], Some(false));
    assert_eq!(mounts["/home/dispatch"], Some(false));
    assert_eq!(mounts["/var/run/dispatch/token"], Some(true));
    let readiness = agent(&c).readiness_probe.as_ref().unwrap();
    let probe = readiness.http_get.as_ref().unwrap();
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
    assert_eq!(
        readiness.period_seconds,
        Some(1),
        "cold start waits for this tick"
    );
}

#[test]
fn minimal_spec_takes_the_defaults() {
    let d = WorkspaceDefaults {
        agent_image: "agent:test".into(),
        ..WorkspaceDefaults::default()
    };
    let c = build("minimal.yaml", &d);
    assert_eq!(agent(&c).image.as_deref(), Some("agent:test"));
    let res = agent(&c).resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "250m");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "2Gi");
    let pvc = c.pvc.spec.as_ref().unwrap();
    assert_eq!(
        pvc.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "10Gi"
    );
    assert_eq!(pvc.storage_class_name, None);
    let env = env_map(&c);
    assert_eq!(
        value(&env, "DISPATCH_AGENT_LISTEN").as_deref(),
        Some("0.0.0.0:8080")
    );
    assert_eq!(
        value(&env, "DISPATCH_WORKSPACE").as_deref(),
        Some("/workspace")
    );
    assert_eq!(
        value(&env, "DISPATCH_AGENT_TOKEN_FILE").as_deref(),
        Some("/var/run/dispatch/token/token")
    );
    assert_eq!(
        value(&env, "DISPATCH_WORKSPACE_NAME").as_deref(),
        Some("mini")
    );
    // Ingress only from the gateway, on the agent port; egress unrestricted by default.
    let np = c.network_policy.spec.as_ref().unwrap();
    assert_eq!(
        np.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let from = &np.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0];
    let labels = from
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "dispatch-gateway");
}

#[test]
fn full_spec_reaches_every_child() {
    let d = WorkspaceDefaults {
        egress: Egress::Public,
        gateway_namespace: Some("dispatch".into()),
        ..Default::default()
    };
    let c = build("full.yaml", &d);
    assert_eq!(
        agent(&c).image.as_deref(),
        Some("registry.example/dispatch-agent:1.2.3")
    );
    let res = agent(&c).resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1Gi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "4Gi");
    assert_eq!(
        res.limits.as_ref().unwrap()["cpu"].0,
        "2",
        "unset limit takes the default"
    );
    let pvc = c.pvc.spec.as_ref().unwrap();
    assert_eq!(pvc.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        pvc.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "20Gi"
    );
    let env = env_map(&c);
    assert_eq!(value(&env, "EDITOR").as_deref(), Some("vim"));
    assert_eq!(
        value(&env, "HOME").as_deref(),
        Some("/workspace/home"),
        "user env overrides ours"
    );
    assert_eq!(
        agent(&c)
            .env
            .as_ref()
            .unwrap()
            .iter()
            .filter(|e| e.name == "HOME")
            .count(),
        1
    );
    assert_eq!(
        value(&env, "DISPATCH_CLAUDE_MODEL").as_deref(),
        Some("opus")
    );
    assert_eq!(
        value(&env, "DISPATCH_CLAUDE_PERMISSION_MODE").as_deref(),
        Some("acceptEdits")
    );
    let key = env["ANTHROPIC_API_KEY"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("alice-anthropic", "api-key")
    );
    let gh = env["GITHUB_TOKEN"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (gh.name.as_str(), gh.key.as_str()),
        ("alice-github", "token")
    );
    let np = c.network_policy.spec.as_ref().unwrap();
    assert!(
        np.policy_types
            .as_ref()
            .unwrap()
            .contains(&"Egress".to_string())
    );
    let from = &np.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0];
    assert_eq!(
        from.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "dispatch"
    );
    let labels = c.pod.as_ref().unwrap().metadata.labels.as_ref().unwrap();
    assert_eq!(labels["dispatch.dev/owner"], "alice");
}

#[test]
fn invalid_fixtures_are_refused_with_a_reason() {
    assert_eq!(
        validate(&fixture("invalid-reserved-env.yaml"))
            .unwrap_err()
            .reason,
        "ReservedEnv"
    );
    assert_eq!(
        validate(&fixture("invalid-idle.yaml")).unwrap_err().reason,
        "InvalidIdleTimeout"
    );
}

#[test]
fn service_is_headless_and_selects_the_workspace_pod() {
    let c = build("minimal.yaml", &WorkspaceDefaults::default());
    let spec = c.service.spec.as_ref().expect("a service spec");
    // No virtual IP per workspace: the gateway dials the Pod IP.
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    let pod_labels = c
        .pod
        .as_ref()
        .and_then(|p| p.metadata.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(pod_labels.get(k), Some(v), "the Pod carries {k}={v}");
    }
}
