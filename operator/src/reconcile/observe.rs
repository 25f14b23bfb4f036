//! The observe step: what the reconcile saw of the Pod and the claim, and
//! what is wrong with them.

use std::sync::Arc;

use dispatch_api::crd::{VolumeStatus, Workspace, names};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType};

use crate::children::cached;
use crate::context::Context;
use crate::desired::applied_hash;
use crate::reconcile::apply::Applied;
use crate::status::{APPLY_FAILED, Problem, VOLUME_DELETING, VOLUME_REPLACED};

/// What one reconcile saw.
pub struct Seen {
    pub pod: Option<Arc<Pod>>,
    pub problems: Vec<Problem>,
    pub volume: Option<VolumeStatus>,
    /// A problem that may pass by itself: look again soon.
    pub retry: bool,
    /// When the agent was last in use, if it was asked.
    pub last_activity: Option<Time>,
}

/// `want_claim` is the claim as it should be.
pub async fn observe(
    ws: &Workspace,
    ctx: &Context,
    applied: &Applied,
    want_claim: &PersistentVolumeClaim,
) -> Seen {
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let k = ws.key();
    let pod = applied
        .pod
        .clone()
        .map(Arc::new)
        .or_else(|| cached(&ctx.pods, &ns, &names::pod(&name)))
        .or_else(|| applied.lagging.then(|| ctx.recent.pod(&k)).flatten());
    let mut problems: Vec<Problem> = applied
        .failures
        .iter()
        .filter(|f| f.refused())
        .map(|f| Problem::new(APPLY_FAILED, f.summary()))
        .collect();

    let cached_claim = cached(&ctx.pvcs, &ns, &want_claim.name_any());
    let claim: Option<ObjectMeta> = applied
        .claim
        .as_ref()
        .map(|c| c.metadata.clone())
        .or_else(|| cached_claim.as_ref().map(|c| c.metadata.clone()));
    // What we wrote last is fresher than a cache that may lag it.
    let ours = ctx.recent.last_status(&k).and_then(|s| s.volume);
    let previous = ours
        .clone()
        .or_else(|| ws.status.as_ref().and_then(|s| s.volume.clone()));
    // The size the claim asks for (the cache keeps no spec): as written now,
    // or as desired when the cached claim carries the desired hash; a
    // refused grow leaves it as it was.
    let current = cached_claim
        .as_ref()
        .is_some_and(|c| applied_hash(&c.metadata) == applied_hash(&want_claim.metadata));
    let size = applied
        .claim
        .as_ref()
        .and_then(claim_size)
        .or_else(|| current.then(|| claim_size(want_claim)).flatten());
    let volume = claim
        .as_ref()
        .map(|c| volume_status(ws, c, size, previous.as_ref()))
        .or(ours);
    if let Some(c) = &claim
        && c.deletion_timestamp.is_some()
    {
        problems.push(Problem::new(
            VOLUME_DELETING,
            format!(
                "the volume claim {} is being deleted: the workspace's files go with it once its Pod stops",
                c.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    let replaced = volume
        .as_ref()
        .or(previous.as_ref())
        .and_then(|v| v.replaced_in_generation);
    // Shown through the next spec change too (typically the resume that
    // starts the workspace on the new claim), so that it is seen there.
    if let (Some(r), Some(g)) = (replaced, ws.metadata.generation)
        && g <= r.saturating_add(1)
    {
        problems.push(Problem::new(
            VOLUME_REPLACED,
            "the volume claim that held the workspace's files was deleted; the workspace runs on a new, empty one",
        ));
    }
    let newly_replaced = matches!(
        (
            previous.as_ref().and_then(|p| p.claim_uid.as_deref()),
            volume.as_ref().and_then(|v| v.claim_uid.as_deref()),
        ),
        (Some(before), Some(now)) if before != now
    );
    if newly_replaced {
        warn(
            ws,
            ctx,
            VOLUME_REPLACED,
            "the volume claim holding the workspace's files was deleted; a new, empty one was made",
        )
        .await;
    }
    Seen {
        pod,
        problems,
        volume,
        retry: false,
        last_activity: None,
    }
}

/// The claim as the status records it: which one it is, its size, and the
/// generation in which it replaced a deleted one.
fn volume_status(
    ws: &Workspace,
    claim: &ObjectMeta,
    size: Option<String>,
    previous: Option<&VolumeStatus>,
) -> VolumeStatus {
    let uid = claim.uid.clone();
    let before = previous.and_then(|p| p.claim_uid.clone());
    let replaced_in_generation = match (&before, &uid) {
        (Some(b), Some(u)) if b != u => ws.metadata.generation,
        _ => previous.and_then(|p| p.replaced_in_generation),
    };
    VolumeStatus {
        claim_name: claim.name.clone(),
        claim_uid: uid,
        size: size.or_else(|| previous.and_then(|p| p.size.clone())),
        replaced_in_generation,
    }
}

/// The storage a claim asks for.
fn claim_size(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// A Warning Event on the Workspace.
pub async fn warn(ws: &Workspace, ctx: &Context, reason: &str, message: &str) {
    tracing::warn!(workspace = %ws.key(), reason, message, "workspace degraded");
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&ev, &kube::Resource::object_ref(ws, &()))
        .await
    {
        tracing::warn!(error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(generation: i64) -> Workspace {
        let mut w: Workspace = serde_yaml::from_str(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {name: a, namespace: n}\nspec: {owner: al}\n",
        )
        .unwrap();
        w.metadata.generation = Some(generation);
        w
    }

    fn uid(u: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("ws-a-data".into()),
            uid: Some(u.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_claim_with_another_uid_replaced_the_one_with_the_files() {
        let first = volume_status(&ws(1), &uid("u1"), Some("2Gi".into()), None);
        assert_eq!(first.claim_uid.as_deref(), Some("u1"));
        assert_eq!(first.claim_name.as_deref(), Some("ws-a-data"));
        assert_eq!(first.size.as_deref(), Some("2Gi"));
        assert_eq!(first.replaced_in_generation, None);
        let same = volume_status(&ws(2), &uid("u1"), None, Some(&first));
        assert_eq!(same, first, "the size is kept until the claim is written");
        let new = volume_status(&ws(3), &uid("u2"), Some("2Gi".into()), Some(&first));
        assert_eq!(new.replaced_in_generation, Some(3));
        let later = volume_status(&ws(4), &uid("u2"), None, Some(&new));
        assert_eq!(later.replaced_in_generation, Some(3), "remembered");
    }

    #[test]
    fn the_size_is_what_the_written_claim_asks_for() {
        let c: PersistentVolumeClaim = serde_yaml::from_str(
            "metadata: {name: ws-a-data}\nspec: {resources: {requests: {storage: 5Gi}}}\n",
        )
        .unwrap();
        assert_eq!(claim_size(&c).as_deref(), Some("5Gi"));
    }
}
