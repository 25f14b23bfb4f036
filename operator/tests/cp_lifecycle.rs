//! The operator against a real kube-apiserver (plus controller-manager) with the
//! local-node harness playing the kubelet: kubectl apply a Workspace, its
//! children appear locked down, it runs and its agent answers with the token
//! from its Secret; suspend, resume, a deleted Pod, idleness, an unfulfillable
//! spec, and deletion with and without keeping the volume.

mod common;

use std::time::Duration;

use common::*;
use dispatch_api::crd::{Workspace, names};
use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use dispatch_operator::idle::{ActivityClient, ActivityError};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

const NS: &str = "team-a";
const WAIT: Duration = Duration::from_secs(60);

fn workspace(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  owner: alice\n{extra}"
    )
}

async fn token(secrets: &Api<Secret>, ws: &str) -> String {
    let s = secrets
        .get(&names::token_secret(ws))
        .await
        .expect("token secret");
    String::from_utf8(s.data.expect("data")["token"].0.clone()).expect("utf8 token")
}

async fn running_endpoint(wss: &Api<Workspace>, name: &str) -> String {
    eventually(&format!("{name} Running"), WAIT, || async {
        phase(wss, name).await.as_deref() == Some("Running")
    })
    .await;
    let ws = wss.get(name).await.expect("workspace");
    let st = ws.status.expect("status");
    assert_eq!(st.observed_generation, ws.metadata.generation);
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    st.endpoint.expect("endpoint")
}

fn owned_by(meta: &kube::core::ObjectMeta, ws: &Workspace) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == ws.meta().uid.clone().unwrap_or_default() && o.controller == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_lifecycle_on_a_real_control_plane() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client();
    install_crd(&cp);
    // Pod Security "restricted" must admit the workspace Pod.
    cp.create_namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await
        .expect("namespace");
    let node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
            agent_bin: Some(agent_bin()),
            ..Default::default()
        },
    )
    .await
    .expect("local node");
    let operator = Operator::start(&cp, &[]);

    let wss: Api<Workspace> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);

    // --- kubectl apply: children with the security settings, then Running.
    ok(kubectl_apply(
        &cp,
        &workspace("demo", "  storage: {size: 1Gi}\n"),
    ));
    let endpoint = running_endpoint(&wss, "demo").await;
    let ws = wss.get("demo").await.expect("demo");
    assert!(
        ws.finalizers().is_empty(),
        "deleting it never waits for the operator"
    );
    let pod = pods.get(&names::pod("demo")).await.expect("pod");
    assert!(owned_by(&pod.metadata, &ws));
    assert!(owned_by(
        &secrets
            .get(&names::token_secret("demo"))
            .await
            .expect("secret")
            .metadata,
        &ws
    ));
    assert!(owned_by(
        &pvcs.get(&names::pvc("demo")).await.expect("pvc").metadata,
        &ws
    ));
    assert!(owned_by(
        &services
            .get(&names::service("demo"))
            .await
            .expect("service")
            .metadata,
        &ws
    ));
    assert!(owned_by(
        &policies
            .get(&names::network_policy("demo"))
            .await
            .expect("netpol")
            .metadata,
        &ws
    ));
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let sc = spec.containers[0]
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    assert!(pod_ip.starts_with("127."), "pod IP {pod_ip} is loopback");
    assert_eq!(endpoint, format!("http://{pod_ip}:8080"));

    // The agent answers at the endpoint with the Secret's token, and only with it.
    let tok = token(&secrets, "demo").await;
    let activity = ActivityClient::default();
    let a = activity
        .fetch(&endpoint, &tok)
        .await
        .expect("activity with the token");
    assert_eq!(a.attached_clients, 0);
    assert!(matches!(
        activity.fetch(&endpoint, "wrong").await,
        Err(ActivityError::Status(401))
    ));

    // Printer columns.
    let table = ok(kubectl(&cp, &["get", "ws", "-n", NS]));
    assert!(
        table.contains("PHASE") && table.contains("OWNER") && table.contains("READY"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("demo "))
        .expect("demo row");
    assert!(
        row.contains("Running") && row.contains("alice") && row.contains("True"),
        "{row}"
    );

    // --- suspend: the Pod goes, the volume stays; resume: Running again, same token.
    ok(kubectl(
        &cp,
        &[
            "patch",
            "ws",
            "demo",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspended":true}}"#,
        ],
    ));
    eventually("demo Suspended without a Pod", WAIT, || async {
        phase(&wss, "demo").await.as_deref() == Some("Suspended")
            && pods
                .get_opt(&names::pod("demo"))
                .await
                .ok()
                .flatten()
                .is_none()
    })
    .await;
    assert!(
        pvcs.get_opt(&names::pvc("demo"))
            .await
            .expect("get pvc")
            .is_some(),
        "volume kept while suspended"
    );
    assert!(
        wss.get("demo")
            .await
            .expect("demo")
            .status
            .expect("status")
            .endpoint
            .is_none()
    );
    ok(kubectl(
        &cp,
        &[
            "patch",
            "ws",
            "demo",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspended":false}}"#,
        ],
    ));
    let endpoint = running_endpoint(&wss, "demo").await;
    assert_eq!(
        token(&secrets, "demo").await,
        tok,
        "the token is kept, not rotated"
    );
    activity
        .fetch(&endpoint, &tok)
        .await
        .expect("agent answers after resume");

    // --- a deleted Pod is recreated.
    let old_uid = pods
        .get(&names::pod("demo"))
        .await
        .expect("pod")
        .metadata
        .uid;
    ok(kubectl(
        &cp,
        &[
            "delete",
            "pod",
            &names::pod("demo"),
            "-n",
            NS,
            "--wait=false",
        ],
    ));
    eventually("a new demo Pod running", WAIT, || async {
        let p = pods.get_opt(&names::pod("demo")).await.ok().flatten();
        p.is_some_and(|p| p.metadata.uid != old_uid && p.metadata.deletion_timestamp.is_none())
            && phase(&wss, "demo").await.as_deref() == Some("Running")
    })
    .await;

    // --- idleness: a short timeout and no use suspends it.
    ok(kubectl_apply(
        &cp,
        &workspace("sleepy", "  idleTimeout: 3s\n"),
    ));
    running_endpoint(&wss, "sleepy").await;
    eventually(
        "sleepy suspended for idleness, its Pod gone",
        Duration::from_secs(30),
        || async {
            let ws = wss.get("sleepy").await.expect("sleepy");
            ws.spec.suspended
                && phase(&wss, "sleepy").await.as_deref() == Some("Suspended")
                && pods
                    .get_opt(&names::pod("sleepy"))
                    .await
                    .ok()
                    .flatten()
                    .is_none()
        },
    )
    .await;
    let st = wss
        .get("sleepy")
        .await
        .expect("sleepy")
        .status
        .expect("status");
    assert!(st.last_activity.is_some(), "lastActivity recorded");
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually("IdleSuspended event", WAIT, || async {
        let evs = events.list(&ListParams::default()).await.expect("events");
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("IdleSuspended"))
    })
    .await;

    // --- a spec the apiserver refuses for the Pod (requests above the default
    // limit): Degraded with the reason, and an Event; no hot loop.
    ok(kubectl_apply(
        &cp,
        &workspace("greedy", "  resources: {requests: {cpu: '4'}}\n"),
    ));
    eventually("greedy Degraded", WAIT, || async {
        let st = wss.get("greedy").await.ok().and_then(|w| w.status);
        st.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "ApplyFailed")
        })
    })
    .await;
    let degraded = wss
        .get("greedy")
        .await
        .expect("greedy")
        .status
        .expect("status");
    let msg = &degraded
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded")
        .message;
    assert!(msg.contains("limit"), "message says why: {msg}");
    eventually("an ApplyFailed event for greedy", WAIT, || async {
        let evs = events.list(&ListParams::default()).await.expect("events");
        evs.items.iter().any(|e| {
            e.reason.as_deref() == Some("ApplyFailed")
                && e.involved_object.name.as_deref() == Some("greedy")
        })
    })
    .await;
    let reconciles = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("dispatch_operator_reconciles_total"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (_, before) = operator.get("/metrics").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // measuring the absence of a loop
    let (_, after) = operator.get("/metrics").await;
    assert!(
        reconciles(&after) - reconciles(&before) < 5.0,
        "no hot loop on a refused spec"
    );
    ok(kubectl(&cp, &["delete", "ws", "greedy", "-n", NS]));

    // --- delete: garbage collection removes the children; the volume goes...
    ok(kubectl(
        &cp,
        &["delete", "ws", "demo", "-n", NS, "--timeout=60s"],
    ));
    eventually("demo's children gone", WAIT, || async {
        pods.get_opt(&names::pod("demo"))
            .await
            .ok()
            .flatten()
            .is_none()
            && secrets
                .get_opt(&names::token_secret("demo"))
                .await
                .ok()
                .flatten()
                .is_none()
            && services
                .get_opt(&names::service("demo"))
                .await
                .ok()
                .flatten()
                .is_none()
            && policies
                .get_opt(&names::network_policy("demo"))
                .await
                .ok()
                .flatten()
                .is_none()
            && pvcs
                .get_opt(&names::pvc("demo"))
                .await
                .ok()
                .flatten()
                .is_none()
    })
    .await;

    // ... or stays, released from the Workspace, when retainOnDelete says so.
    ok(kubectl_apply(
        &cp,
        &workspace("keep", "  storage: {retainOnDelete: true}\n"),
    ));
    running_endpoint(&wss, "keep").await;
    ok(kubectl(
        &cp,
        &["delete", "ws", "keep", "-n", NS, "--timeout=60s"],
    ));
    eventually("keep's Pod gone", WAIT, || async {
        pods.get_opt(&names::pod("keep"))
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;
    let pvc = pvcs
        .get(&names::pvc("keep"))
        .await
        .expect("the kept volume");
    assert!(
        pvc.metadata.owner_references.unwrap_or_default().is_empty(),
        "released from the Workspace"
    );
    assert!(pvc.metadata.deletion_timestamp.is_none());

    // --- /healthz and /metrics.
    assert_eq!(operator.get("/healthz").await.0, 200);
    let (code, metrics) = operator.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(reconciles(&metrics) > 0.0, "{metrics}");
    assert!(
        metrics.contains("dispatch_operator_workspaces{phase=\"Suspended\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("dispatch_operator_reconcile_duration_seconds_bucket"));
    node.shutdown().await;
}
