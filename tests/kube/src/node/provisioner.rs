//! A volume provisioner for the local node, as a real cluster's default one: each pending
//! PVC gets a PersistentVolume pre-bound to it whose data is the claim's host dir, so
//! kube-controller-manager binds the claim (phase Bound). When the claim is deleted its PV
//! and data go too (reclaim "Delete", done here because no plugin can delete a hostPath).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::plan;

/// Label on the PVs this node made.
pub const PV_LABEL: &str = "dispatch.dev/local-node";

/// Pure: the PV that backs `pvc` with host dir `dir`, or `None` if the claim needs none.
pub fn volume_for(pvc: &PersistentVolumeClaim, dir: &Path, node: &str) -> Option<PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let uid = pvc.metadata.uid.clone()?;
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            labels: Some(BTreeMap::from([(PV_LABEL.to_string(), node.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            access_modes: Some(access_modes),
            storage_class_name: Some(spec.storage_class_name.clone().unwrap_or_default()),
            volume_mode: spec.volume_mode.clone(),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: Some(uid),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub async fn run(
    client: Client,
    namespace: Option<String>,
    node: String,
    state: Arc<Path>,
    cancel: CancellationToken,
) {
    let claims: Api<PersistentVolumeClaim> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(claims, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(watcher::Event::Apply(pvc)) | Ok(watcher::Event::InitApply(pvc)) => {
                let ns = pvc.metadata.namespace.clone().unwrap_or_default();
                let name = pvc.metadata.name.clone().unwrap_or_default();
                let dir = plan::claim_dir(&state, &ns, &name);
                if let Some(pv) = volume_for(&pvc, &dir, &node) {
                    match pvs.create(&PostParams::default(), &pv).await {
                        Ok(_) => tracing::info!(claim = %format!("{ns}/{name}"), "provisioned"),
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => tracing::warn!(claim = %name, error = %e, "provisioning failed"),
                    }
                }
            }
            Ok(watcher::Event::Delete(pvc)) => {
                let ns = pvc.metadata.namespace.clone().unwrap_or_default();
                let name = pvc.metadata.name.clone().unwrap_or_default();
                if let Some(uid) = &pvc.metadata.uid {
                    let _ = pvs
                        .delete(&format!("pvc-{uid}"), &DeleteParams::default())
                        .await;
                }
                // The data goes with the claim, unless a new claim of that name exists already.
                let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                if matches!(api.get_opt(&name).await, Ok(None)) {
                    let _ = std::fs::remove_dir_all(plan::claim_dir(&state, &ns, &name));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "claim watch error (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(json: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json).expect("pvc")
    }

    #[test]
    fn pending_claim_gets_a_prebound_volume_of_its_size_and_class() {
        let c = pvc(serde_json::json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u-1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "5Gi"}}}
        }));
        let pv = volume_for(&c, Path::new("/h/claims/ns/data"), "n").expect("pv");
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        let spec = pv.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.capacity.and_then(|c| c.get("storage").cloned()),
            Some(Quantity("5Gi".into()))
        );
        let claim = spec.claim_ref.expect("claimRef");
        assert_eq!(claim.uid.as_deref(), Some("u-1"));
        assert_eq!(claim.namespace.as_deref(), Some("ns"));
        assert_eq!(
            spec.host_path.map(|h| h.path).as_deref(),
            Some("/h/claims/ns/data")
        );
    }

    #[test]
    fn bound_or_deleting_claims_need_no_volume() {
        let bound = pvc(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "u"},
            "spec": {"volumeName": "pv-x"}
        }));
        assert!(volume_for(&bound, Path::new("/x"), "n").is_none());
        let going = pvc(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "u",
                         "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {}
        }));
        assert!(volume_for(&going, Path::new("/x"), "n").is_none());
        let class_less = pvc(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "u"}, "spec": {}
        }));
        let spec = volume_for(&class_less, Path::new("/x"), "n")
            .and_then(|p| p.spec)
            .expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    }
}
