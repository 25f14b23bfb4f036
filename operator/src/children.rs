//! One watch-and-cache of a kind of child, the same for all five kinds: the
//! narrow label-selected watch, a slim cache, the memory of recent writes
//! cleared when a child is deleted, and a mark on children someone else edited.

use std::sync::Arc;

use dispatch_api::crd::TOKEN_KEY;
use futures_util::{Stream, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::desired::managed_selector;
use crate::recent::Recent;

/// What kubectl apply keeps on every object: a full copy of it, useless here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Set on the cached copy only (never written): someone other than the
/// operator wrote the child's main resource after the operator's last write.
const EDITED_BY_OTHERS: &str = "dispatch.dev/cached-edited-by-others";

/// `Kind/namespace/name`, the key of a child in [`Recent`].
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Whether a writer other than `me` changed the object's main resource (not
/// a subresource such as status or binding) no earlier than `me` last did.
/// Times have a resolution of a second, so a write in the same second
/// counts: the repair is an apply, which changes nothing when nothing differs.
pub fn edited_by_others(entries: &[ManagedFieldsEntry], me: &str) -> bool {
    let main = || {
        entries
            .iter()
            .filter(|e| e.subresource.as_deref().unwrap_or("").is_empty())
    };
    let ours = main()
        .filter(|e| e.manager.as_deref() == Some(me))
        .filter_map(|e| e.time.as_ref().map(|t| t.0))
        .max();
    main()
        .filter(|e| e.manager.as_deref() != Some(me))
        .any(|e| match (ours, e.time.as_ref()) {
            (Some(ours), Some(t)) => t.0 >= ours,
            // Nothing of ours is left on it: someone took every field.
            (None, _) => true,
            (Some(_), None) => false,
        })
}

/// Whether the cached child carries the mark of [`edited_by_others`].
pub fn marked_edited(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(EDITED_BY_OTHERS))
}

/// Marks a foreign edit, then drops what the cache need not keep.
fn slim_meta(meta: &mut ObjectMeta, me: &str) {
    let edited = meta
        .managed_fields
        .as_deref()
        .is_some_and(|e| edited_by_others(e, me));
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    if edited {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(EDITED_BY_OTHERS.into(), String::new());
    }
}

/// A kind of child the operator makes.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Drops what the reconcile never reads, so 1,000 workspaces stay small.
    fn slim(&mut self) {}
}

/// The cache keeps of a Pod only what the reconcile reads (annotations, uid,
/// deletion, node, status).
impl Child for Pod {
    fn slim(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            *spec = k8s_openapi::api::core::v1::PodSpec {
                node_name: spec.node_name.take(),
                ..Default::default()
            };
        }
    }
}

/// Of a token Secret only its token matters.
impl Child for Secret {
    fn slim(&mut self) {
        if let Some(data) = self.data.as_mut() {
            data.retain(|k, _| k == TOKEN_KEY);
        }
    }
}

impl Child for PersistentVolumeClaim {}
impl Child for Service {}
impl Child for NetworkPolicy {}
impl Child for PartialObjectMeta<Service> {}
impl Child for PartialObjectMeta<NetworkPolicy> {}
impl Child for PartialObjectMeta<PersistentVolumeClaim> {}

/// The token in a token Secret ("" when it has none).
pub fn token_of(secret: &Secret) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// Slims an applied Pod as the cache would keep it.
pub fn slim_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    pod.annotations_mut().remove(LAST_APPLIED);
    Child::slim(pod);
}

/// The cache of one kind of child and the stream of its changes.
pub fn watch<K: Child>(
    client: &Client,
    namespace: Option<&str>,
    recent: Arc<Recent>,
    me: &'static str,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(&managed_selector()))
        .default_backoff()
        // A child deleted behind our back must be made again at once, not
        // once the memory of having written it fades.
        .inspect_ok(move |ev| {
            if let watcher::Event::Delete(obj) = ev {
                recent.forget_applied(&object_key(obj));
            }
        })
        .modify(move |obj: &mut K| {
            slim_meta(obj.meta_mut(), me);
            obj.slim();
        })
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// The cached child `name` in `ns`, if any.
pub fn cached<K: Child>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>> {
    store.get(&ObjectRef::new(name).within(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn entry(manager: &str, secs: i64, subresource: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            subresource: subresource.map(String::from),
            time: Some(Time(Timestamp::from_second(secs).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn a_later_main_resource_write_by_another_is_an_edit() {
        let me = "op";
        assert!(!edited_by_others(&[entry(me, 10, None)], me));
        assert!(edited_by_others(
            &[entry(me, 10, None), entry("kubectl-edit", 12, None)],
            me
        ));
        assert!(
            edited_by_others(&[entry(me, 10, None), entry("kubectl", 10, None)], me),
            "the same second counts"
        );
        assert!(
            !edited_by_others(&[entry(me, 12, None), entry("kubectl", 10, None)], me),
            "repaired since"
        );
        assert!(
            !edited_by_others(
                &[entry(me, 10, None), entry("kubelet", 20, Some("status"))],
                me
            ),
            "status is not ours"
        );
        assert!(edited_by_others(&[entry("kubectl", 10, None)], me));
    }

    #[test]
    fn the_mark_survives_slimming() {
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![entry("op", 1, None), entry("x", 2, None)]),
            ..Default::default()
        };
        slim_meta(&mut meta, "op");
        assert!(meta.managed_fields.is_none());
        assert!(marked_edited(&meta));
        let mut clean = ObjectMeta {
            managed_fields: Some(vec![entry("op", 1, None)]),
            ..Default::default()
        };
        slim_meta(&mut clean, "op");
        assert!(!marked_edited(&clean));
    }
}
