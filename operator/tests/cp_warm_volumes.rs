//! Warm volumes on a real control plane (kube-controller-manager binds the
//! claims to volumes made beforehand, as a provisioner would make them): the
//! operator keeps two unused claims bound; a new Workspace with default
//! storage takes one (its Pod mounts it, its status names it, it is owned and
//! labelled like any child) and the pool is filled again; a Workspace with
//! other storage gets a claim of its own; deleting the owner ConfigMap (what
//! uninstalling the chart does) deletes the unused claims.

mod common;

use std::time::Duration;

use common::*;
use dispatch_api::crd::{LABEL_WORKSPACE, Workspace, names};
use dispatch_kube_harness::ControlPlane;
use dispatch_operator::warm_volumes::WARM_LABEL;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

const NS: &str = "warm";
const WAIT: Duration = Duration::from_secs(60);

/// The unused warm claims in the namespace, and how many of them are bound.
async fn unused(pvcs: &Api<PersistentVolumeClaim>) -> (Vec<String>, usize) {
    let list = pvcs
        .list(&ListParams::default().labels(WARM_LABEL))
        .await
        .expect("list claims");
    let live: Vec<_> = list
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect();
    let bound = live
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .count();
    (live.iter().map(|c| c.name_any()).collect(), bound)
}

/// A Workspace `name` in the test's namespace with `spec` (YAML flow style).
fn workspace(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n"
    )
}

/// Whether `api` has an object named `name` now.
async fn exists<K>(api: &Api<K>, name: String) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(&name).await.ok().flatten().is_some()
}

/// The operator keeping two warm volumes of class `instant`, 1Gi, owned by `warm-owner`.
fn start_operator(cp: &ControlPlane) -> Operator {
    Operator::start(
        cp,
        &[
            "--namespace",
            NS,
            "--storage-size",
            "1Gi",
            "--storage-class",
            "instant",
            "--warm-volumes",
            "2",
            "--warm-volumes-owner",
            &format!("{NS}/warm-owner"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_workspace_takes_a_bound_warm_volume_and_the_pool_is_refilled() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client();
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    // A class that binds at once, and volumes for it: two for the pool, one
    // to refill it, one spare.
    let mut objects = String::from(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: instant}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: Immediate\n",
    );
    for i in 0..4 {
        let dir = cp.state_dir().join(format!("pv{i}"));
        objects.push_str(&format!(
            "---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv{i}}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: instant\n  hostPath: {{path: {}}}\n",
            dir.display()
        ));
    }
    objects.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: warm-owner, namespace: {NS}}}\n"
    ));
    ok(kubectl_apply(&cp, &objects));

    let operator = start_operator(&cp);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let wss: Api<Workspace> = Api::namespaced(client.clone(), NS);
    eventually("two bound warm volumes", WAIT, || async {
        let (names, bound) = unused(&pvcs).await;
        names.len() == 2 && bound == 2
    })
    .await;
    let (before, _) = unused(&pvcs).await;

    ok(kubectl_apply(&cp, &workspace("a", "{owner: alice}")));
    eventually("the Pod of a", WAIT, || exists(&pods, names::pod("a"))).await;
    let pod = pods.get(&names::pod("a")).await.expect("pod");
    let mounted = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "workspace"))
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .expect("the Pod mounts a claim");
    assert!(
        before.contains(&mounted),
        "the Pod mounts {mounted}, not one of the warm volumes {before:?}"
    );
    assert!(
        pvcs.get_opt(&names::pvc("a")).await.expect("get").is_none(),
        "no claim of its own was made"
    );
    let ws = wss.get("a").await.expect("workspace");
    let taken = pvcs.get(&mounted).await.expect("the taken claim");
    assert_eq!(
        taken.labels().get(LABEL_WORKSPACE).map(String::as_str),
        Some("a")
    );
    assert!(!taken.labels().contains_key(WARM_LABEL), "no longer unused");
    let owners = taken.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "owned by the Workspace alone: {owners:?}");
    assert_eq!(Some(&owners[0].uid), ws.meta().uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    eventually("the status names the claim", WAIT, || async {
        wss.get("a")
            .await
            .ok()
            .and_then(|w| w.status?.volume?.claim_name)
            .as_deref()
            == Some(mounted.as_str())
    })
    .await;
    eventually("the pool filled again", WAIT, || async {
        let (names, bound) = unused(&pvcs).await;
        names.len() == 2 && bound == 2 && !names.contains(&mounted)
    })
    .await;
    let (_, metrics) = operator.get("/metrics").await;
    assert!(
        metrics.contains("dispatch_operator_warm_volumes_taken_total 1"),
        "{metrics}"
    );

    // Other storage than the pool's: a claim of its own; the pool is untouched.
    let (pool, _) = unused(&pvcs).await;
    ok(kubectl_apply(
        &cp,
        &workspace("b", "{owner: bob, storage: {size: 2Gi}}"),
    ));
    eventually("b's own claim", WAIT, || exists(&pvcs, names::pvc("b"))).await;
    assert_eq!(unused(&pvcs).await.0, pool, "b took no warm volume");

    // A reconcile after a restart finds the taken claim by the status, and
    // keeps it (no second take, no claim named after the Workspace).
    drop(operator);
    let _operator = start_operator(&cp);
    ok(kubectl(
        &cp,
        &[
            "-n",
            NS,
            "patch",
            "workspace",
            "a",
            "--type=merge",
            "-p",
            "{\"spec\":{\"suspended\":true}}",
        ],
    ));
    eventually("a suspended", WAIT, || async {
        wss.get("a")
            .await
            .ok()
            .and_then(|w| w.status)
            .and_then(|s| s.phase)
            .is_some_and(|p| p.as_str() == "Suspended")
    })
    .await;
    assert!(pvcs.get_opt(&names::pvc("a")).await.expect("get").is_none());
    assert_eq!(unused(&pvcs).await.0, pool, "no second take");
    assert!(pvcs.get_opt(&mounted).await.expect("get").is_some());

    // Uninstalling deletes the owner: garbage collection takes the unused claims.
    ok(kubectl(
        &cp,
        &["-n", NS, "delete", "configmap", "warm-owner"],
    ));
    eventually(
        "the unused claims deleted with their owner",
        WAIT,
        || async { unused(&pvcs).await.0.is_empty() },
    )
    .await;
    assert!(
        pvcs.get_opt(&mounted).await.expect("get").is_some(),
        "a taken claim belongs to its Workspace"
    );
}
