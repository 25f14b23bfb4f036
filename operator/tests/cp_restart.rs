//! Kill the operator (SIGKILL) in the middle of reconciling many Workspaces and
//! start two replicas: one takes the Lease once it expires and converges,
//! with exactly one of each child per Workspace and the tokens already handed
//! out unchanged; the other waits and reconciles nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use dispatch_api::crd::{LABEL_WORKSPACE, Workspace, names};
use dispatch_kube_harness::ControlPlane;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

const NS: &str = "crash";
const N: usize = 80;

async fn per_workspace<K>(api: &Api<K>) -> BTreeMap<String, usize>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=dispatch-operator"))
        .await
        .expect("list");
    let mut counts = BTreeMap::new();
    for o in list.items {
        *counts
            .entry(o.labels().get(LABEL_WORKSPACE).cloned().unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_operator_converges_after_restart_without_duplicates() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client();
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    let docs: Vec<String> = (0..N)
        .map(|i| format!("apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: w{i:03}, namespace: {NS}}}\nspec: {{owner: user{i}}}\n"))
        .collect();
    ok(kubectl_apply(&cp, &docs.join("---\n")));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // One reconcile at a time, so that there is a middle to kill it in.
    let mut first = Operator::start(&cp, &["--concurrency", "1", "--identity", "first"]);
    eventually(
        "the first operator half way",
        Duration::from_secs(60),
        || async {
            let made = per_workspace(&secrets).await.len();
            made >= 3
        },
    )
    .await;
    first.kill();
    let tokens_before: BTreeMap<String, Vec<u8>> = secrets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=dispatch-operator"))
        .await
        .expect("secrets")
        .items
        .into_iter()
        .map(|s| {
            (
                s.name_any(),
                s.data
                    .unwrap_or_default()
                    .get("token")
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let pods_before = per_workspace(&pods).await.len();
    assert!(
        pods_before < N,
        "killed in the middle: {pods_before} of {N} Pods made"
    );

    let second = Operator::start(&cp, &["--identity", "second"]);
    let standby = Operator::start(&cp, &["--identity", "standby"]);

    let wss: Api<Workspace> = Api::namespaced(client.clone(), NS);
    eventually(
        "every Workspace reconciled with status",
        Duration::from_secs(120),
        || async {
            let list = wss.list(&ListParams::default()).await.expect("workspaces");
            list.items.len() == N
                && list.items.iter().all(|w| {
                    w.status.as_ref().is_some_and(|s| {
                        s.phase.is_some() && s.observed_generation == w.metadata.generation
                    })
                })
        },
    )
    .await;

    let want: BTreeSet<String> = (0..N).map(|i| format!("w{i:03}")).collect();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    for (kind, counts) in [
        ("Pod", per_workspace(&pods).await),
        ("Secret", per_workspace(&secrets).await),
        ("PVC", per_workspace(&pvcs).await),
        ("Service", per_workspace(&services).await),
        ("NetworkPolicy", per_workspace(&policies).await),
    ] {
        assert_eq!(
            counts.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{kind} for every workspace"
        );
        assert!(
            counts.values().all(|n| *n == 1),
            "exactly one {kind} each: {counts:?}"
        );
    }
    for (name, token) in &tokens_before {
        let now = secrets
            .get(name)
            .await
            .expect("secret")
            .data
            .unwrap_or_default()["token"]
            .0
            .clone();
        assert!(!token.is_empty());
        assert_eq!(&now, token, "token of {name} kept across the crash");
    }
    let ws0 = wss.get("w000").await.expect("w000");
    assert!(
        pods.get(&names::pod("w000"))
            .await
            .expect("pod")
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == ws0.meta().uid.as_ref())
    );

    // Exactly one of the two replicas took the Lease and reconciled; the other waits.
    let (_, m2) = second.get("/metrics").await;
    let (_, ms) = standby.get("/metrics").await;
    let (r2, rs) = (
        metric(&m2, "dispatch_operator_reconciles_total"),
        metric(&ms, "dispatch_operator_reconciles_total"),
    );
    let (leader, waiting) = if r2 > 0.0 {
        (&second, rs)
    } else {
        (&standby, r2)
    };
    assert!(r2.max(rs) >= (N - pods_before) as f64, "{m2}\n{ms}");
    assert_eq!(waiting, 0.0, "the other replica waits for the Lease");
    assert!(leader.log_text().contains("leading"));
    let leading = [&second, &standby]
        .iter()
        .filter(|o| o.log_text().contains("leading"))
        .count();
    assert_eq!(leading, 1, "one leader at a time");
}
