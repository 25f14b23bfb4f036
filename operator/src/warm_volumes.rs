//! Warm volumes: claims made ahead of the Workspaces that will take them.
//!
//! Provisioning a volume and binding it is most of a Workspace's cold start
//! (seconds with a provisioner that runs a helper Pod, and the scheduler checks
//! a pending binding only once a second). With `--warm-volumes N` the operator
//! keeps N unused claims, bound, in one namespace; a new Workspace whose claim
//! would be exactly like them takes one (its labels and owner change; a claim
//! cannot be renamed, so the Workspace's status names it) and its Pod is
//! scheduled at once. The unused claims are owned by a ConfigMap the chart
//! makes, so uninstalling it deletes them without the operator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_api::crd::{LABEL_MANAGED_BY, MANAGED_BY, Workspace};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::applier::MANAGER;
use crate::metrics::Metrics;

/// On an unused warm claim: the shape ([`crate::desired::claim_shape`]) of
/// the claims it can stand in for. Taking the claim removes it.
pub const WARM_LABEL: &str = "dispatch.dev/warm-volume";
/// Names of warm claims begin with this.
const NAME_PREFIX: &str = "dispatch-warm-";
/// A claim created but not yet in the cache counts as there for this long.
const CREATE_GRACE: Duration = Duration::from_secs(30);
/// The pool is looked at this often even without a change to a warm claim
/// (its owner may have come or gone).
const TICK: Duration = Duration::from_secs(10);
/// A warm claim not bound this long after it was made is replaced (its
/// provisioning failed, or its class binds only for a Pod).
const STUCK_AFTER: Duration = Duration::from_secs(300);

/// Where the warm claims are and what they are like.
#[derive(Debug, Clone)]
pub struct Settings {
    pub count: u16,
    /// The ConfigMap that owns them; they live in its namespace.
    pub owner_namespace: String,
    pub owner_name: String,
    /// The spec every warm claim has: a Workspace's claim with default storage.
    pub spec: PersistentVolumeClaimSpec,
}

impl Settings {
    /// From `--warm-volumes` and `--warm-volumes-owner` (`namespace/name`).
    pub fn parse(
        count: u16,
        owner: Option<&str>,
        spec: PersistentVolumeClaimSpec,
    ) -> anyhow::Result<Option<Self>> {
        if count == 0 {
            return Ok(None);
        }
        let Some((ns, name)) = owner.and_then(|o| o.split_once('/')) else {
            anyhow::bail!(
                "--warm-volumes needs --warm-volumes-owner namespace/name (a ConfigMap that owns the unused claims)"
            );
        };
        if ns.is_empty() || name.is_empty() {
            anyhow::bail!("--warm-volumes-owner must be namespace/name, got {owner:?}");
        }
        Ok(Some(Self {
            count,
            owner_namespace: ns.into(),
            owner_name: name.into(),
            spec,
        }))
    }

    pub fn shape(&self) -> String {
        crate::desired::claim_shape(&self.spec)
    }
}

/// What reconciles share of the warm claims.
pub struct Warm {
    pub namespace: String,
    /// The unused warm claims, whole (their phase says whether they are bound).
    pub store: Store<PersistentVolumeClaim>,
    /// Claims taken by this process, per Workspace (`ns/name`), until its
    /// status names them: a cache that lags the take must not make a
    /// Workspace take a second one.
    taken: Mutex<HashMap<String, String>>,
}

impl Warm {
    pub fn new(namespace: String, store: Store<PersistentVolumeClaim>) -> Self {
        Self {
            namespace,
            store,
            taken: Mutex::default(),
        }
    }

    /// The claim this process took for workspace `key`, if any.
    pub fn taken_by(&self, key: &str) -> Option<String> {
        self.taken.lock().ok()?.get(key).cloned()
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut t) = self.taken.lock() {
            t.remove(key);
        }
    }

    /// Takes an unused, bound claim shaped like `want` for `ws`: its labels and
    /// owners become `want`'s. `None` when there is none to take (or every
    /// try lost a race: another replica's take, a deletion).
    pub async fn take(
        &self,
        client: &Client,
        metrics: &Metrics,
        ws: &Workspace,
        want: &PersistentVolumeClaim,
    ) -> Option<String> {
        let ns = ws.namespace().unwrap_or_default();
        if ns != self.namespace {
            return None;
        }
        let spec = want.spec.as_ref()?;
        let shape = crate::desired::claim_shape(spec);
        let state = self.store.state();
        let candidates = takeable(state.iter().map(Arc::as_ref), &ns, &shape);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        for claim in candidates.into_iter().take(3) {
            let name = claim.name_any();
            let mut labels = serde_json::Map::new();
            labels.insert(WARM_LABEL.into(), serde_json::Value::Null);
            for (k, v) in want.labels() {
                labels.insert(k.clone(), v.clone().into());
            }
            // The resourceVersion makes the patch fail if the claim changed
            // since it was seen: only one Workspace takes it.
            let patch = serde_json::json!({"metadata": {
                "resourceVersion": claim.resource_version(),
                "labels": labels,
                "ownerReferences": want.metadata.owner_references,
            }});
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            match api.patch(&name, &pp, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    if let Ok(mut t) = self.taken.lock() {
                        t.insert(ws.key(), name.clone());
                    }
                    metrics.warm_taken();
                    tracing::info!(workspace = %ws.key(), claim = %name, "took a warm volume");
                    return Some(name);
                }
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => continue,
                Err(e) => {
                    tracing::warn!(error = %e, claim = %name, "could not take a warm volume");
                    return None;
                }
            }
        }
        None
    }
}

/// Whether a warm claim is bound and not going away.
fn ready(c: &PersistentVolumeClaim) -> bool {
    c.metadata.deletion_timestamp.is_none()
        && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

fn shape_of(c: &PersistentVolumeClaim) -> Option<&str> {
    c.metadata
        .labels
        .as_ref()?
        .get(WARM_LABEL)
        .map(String::as_str)
}

/// The claims a Workspace in `ns` whose claim has `shape` may take: unused,
/// bound, the oldest first.
pub fn takeable<'a>(
    claims: impl Iterator<Item = &'a PersistentVolumeClaim>,
    ns: &str,
    shape: &str,
) -> Vec<&'a PersistentVolumeClaim> {
    let mut out: Vec<_> = claims
        .filter(|c| c.namespace().as_deref() == Some(ns))
        .filter(|c| shape_of(c) == Some(shape) && ready(c))
        .collect();
    out.sort_by(|a, b| {
        let t = |c: &PersistentVolumeClaim| c.metadata.creation_timestamp.clone();
        t(a).cmp(&t(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    out
}

/// What to do to the pool: claims to make, claims to delete.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub create: usize,
    pub delete: Vec<String>,
    /// Of those deleted, how many were never bound (see [`STUCK_AFTER`]).
    pub stuck: usize,
}

/// Keeps `want` unused claims of `shape`: claims of another shape (the
/// defaults changed) go, claims still unbound [`STUCK_AFTER`] after they were
/// made go, and of those beyond `want` the newest go (the older are likelier
/// bound). `pending` claims were created and are not cached yet.
pub fn plan<'a>(
    claims: impl Iterator<Item = &'a PersistentVolumeClaim>,
    shape: &str,
    want: usize,
    pending: usize,
    now: Timestamp,
) -> Plan {
    let mut delete = Vec::new();
    let mut current = Vec::new();
    let mut stuck = 0;
    let stuck_before = now - STUCK_AFTER;
    for c in claims.filter(|c| c.metadata.deletion_timestamp.is_none()) {
        let old = c
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 < stuck_before);
        if shape_of(c) != Some(shape) {
            delete.push(c.name_any());
        } else if old && !ready(c) {
            stuck += 1;
            delete.push(c.name_any());
        } else {
            current.push(c);
        }
    }
    current.sort_by_key(|c| std::cmp::Reverse(c.metadata.creation_timestamp.clone()));
    let have = current.len() + pending;
    let extra = current.len().saturating_sub(want);
    delete.extend(current.iter().take(extra).map(|c| c.name_any()));
    Plan {
        create: want.saturating_sub(have),
        delete,
        stuck,
    }
}

/// The watch of unused warm claims in `namespace`, and its cache.
pub fn watch(
    client: &Client,
    namespace: &str,
) -> (
    Store<PersistentVolumeClaim>,
    impl Stream<Item = Result<PersistentVolumeClaim, watcher::Error>> + Send + 'static + use<>,
) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(WARM_LABEL))
        .default_backoff()
        .modify(|c: &mut PersistentVolumeClaim| c.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Keeps the pool full for as long as this replica leads: drives the watch
/// of the warm claims and, on each change and every [`TICK`], makes or
/// deletes what [`plan`] says.
pub async fn run(
    client: Client,
    settings: Settings,
    store: Store<PersistentVolumeClaim>,
    stream: impl Stream<Item = Result<PersistentVolumeClaim, watcher::Error>> + Send + 'static,
    metrics: Arc<Metrics>,
) {
    let shape = settings.shape();
    let ns = settings.owner_namespace.clone();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut stream = std::pin::pin!(stream);
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut warned_owner = false;
    // The cache must be complete before counting: an unsynced one looks empty.
    {
        let ready = store.wait_until_ready();
        let mut ready = std::pin::pin!(ready);
        loop {
            tokio::select! {
                _ = &mut ready => break,
                ev = stream.next() => if ev.is_none() { return },
            }
        }
    }
    tracing::info!(namespace = %ns, count = settings.count, %shape, "keeping warm volumes");
    loop {
        let state = store.state();
        pending.retain(|name, at| {
            at.elapsed() < CREATE_GRACE && !state.iter().any(|c| &c.name_any() == name)
        });
        metrics.set_warm_ready(state.iter().filter(|c| ready(c)).count());
        let p = plan(
            state.iter().map(Arc::as_ref),
            &shape,
            usize::from(settings.count),
            pending.len(),
            Timestamp::now(),
        );
        if p.stuck > 0 {
            tracing::warn!(
                stuck = p.stuck,
                after = ?STUCK_AFTER,
                "warm volumes were never bound and are made anew: does their StorageClass bind a claim when it is made (volumeBindingMode: Immediate)?"
            );
        }
        for name in &p.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(claim = %name, "deleted a warm volume no longer wanted"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(error = %e, claim = %name, "could not delete a warm volume")
                }
            }
        }
        if p.create > 0 {
            match owners.get_opt(&settings.owner_name).await {
                Ok(Some(owner)) => {
                    warned_owner = false;
                    let claim = warm_claim(&settings, &shape, &owner);
                    for _ in 0..p.create {
                        match api.create(&PostParams::default(), &claim).await {
                            Ok(made) => {
                                tracing::debug!(claim = %made.name_any(), "made a warm volume");
                                pending.insert(made.name_any(), Instant::now());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "could not make a warm volume");
                                break;
                            }
                        }
                    }
                }
                Ok(None) if !warned_owner => {
                    warned_owner = true;
                    tracing::warn!(
                        owner = %format!("{ns}/{}", settings.owner_name),
                        "the ConfigMap that owns warm volumes is missing: none are made"
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not read the owner of warm volumes"),
            }
        }
        tokio::select! {
            ev = stream.next() => {
                if let Some(Err(e)) = &ev {
                    tracing::debug!(error = %e, "warm volume watch");
                }
                if ev.is_none() {
                    return;
                }
            }
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// An unused claim as the pool makes it.
fn warm_claim(settings: &Settings, shape: &str, owner: &ConfigMap) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            generate_name: Some(NAME_PREFIX.into()),
            namespace: Some(settings.owner_namespace.clone()),
            labels: Some(
                [
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    (WARM_LABEL.to_string(), shape.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: ConfigMap::api_version(&()).into_owned(),
                kind: ConfigMap::kind(&()).into_owned(),
                name: owner.name_any(),
                uid: owner.metadata.uid.clone().unwrap_or_default(),
                controller: Some(false),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(settings.spec.clone()),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn claim(
        name: &str,
        ns: &str,
        shape: &str,
        bound: bool,
        created: i64,
    ) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some([(WARM_LABEL.to_string(), shape.to_string())].into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(if bound { "Bound" } else { "Pending" }.into()),
                ..PersistentVolumeClaimStatus::default()
            }),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn names(cs: &[&PersistentVolumeClaim]) -> Vec<String> {
        cs.iter().map(|c| c.name_any()).collect()
    }

    #[test]
    fn only_bound_claims_of_the_same_shape_and_namespace_are_taken_oldest_first() {
        let cs = [
            claim("new", "a", "s1", true, 30),
            claim("old", "a", "s1", true, 10),
            claim("pending", "a", "s1", false, 5),
            claim("other-shape", "a", "s2", true, 1),
            claim("other-ns", "b", "s1", true, 1),
        ];
        assert_eq!(names(&takeable(cs.iter(), "a", "s1")), ["old", "new"]);
        let mut going = claim("going", "a", "s1", true, 0);
        going.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(40).unwrap()));
        assert!(takeable([going].iter(), "a", "s1").is_empty());
    }

    #[test]
    fn the_pool_is_filled_to_its_size_and_never_beyond() {
        let none: [PersistentVolumeClaim; 0] = [];
        assert_eq!(
            plan(none.iter(), "s", 3, 0, at(100)),
            Plan {
                create: 3,
                delete: vec![],
                stuck: 0
            }
        );
        assert_eq!(
            plan(none.iter(), "s", 3, 2, at(100)).create,
            1,
            "made, not yet seen"
        );
        let cs = [
            claim("x", "a", "s", true, 1),
            claim("y", "a", "s", false, 2),
        ];
        assert_eq!(
            plan(cs.iter(), "s", 2, 0, at(100)),
            Plan {
                create: 0,
                delete: vec![],
                stuck: 0
            }
        );
        assert_eq!(
            plan(cs.iter(), "s", 1, 0, at(100)),
            Plan {
                create: 0,
                delete: vec!["y".into()],
                stuck: 0
            },
            "the newest goes first"
        );
        assert_eq!(plan(cs.iter(), "s", 0, 0, at(100)).delete.len(), 2);
    }

    #[test]
    fn a_claim_never_bound_is_replaced_after_a_while() {
        let stuck_after = STUCK_AFTER.as_secs() as i64;
        let cs = [claim("waiting", "a", "s", false, 1000)];
        let young = plan(cs.iter(), "s", 1, 0, at(1000 + stuck_after - 1));
        assert_eq!((young.create, young.stuck), (0, 0), "still provisioning");
        let old = plan(cs.iter(), "s", 1, 0, at(1000 + stuck_after + 1));
        assert_eq!(
            old,
            Plan {
                create: 1,
                delete: vec!["waiting".into()],
                stuck: 1
            }
        );
        let bound = [claim("bound", "a", "s", true, 1000)];
        assert!(
            plan(bound.iter(), "s", 1, 0, at(1_000_000))
                .delete
                .is_empty()
        );
    }

    #[test]
    fn claims_of_an_old_shape_are_replaced() {
        let cs = [claim("old", "a", "s0", true, 1)];
        assert_eq!(
            plan(cs.iter(), "s1", 1, 0, at(100)),
            Plan {
                create: 1,
                delete: vec!["old".into()],
                stuck: 0
            }
        );
    }

    #[test]
    fn the_owner_must_be_named_when_the_pool_is_on() {
        let spec = PersistentVolumeClaimSpec::default();
        assert!(Settings::parse(0, None, spec.clone()).unwrap().is_none());
        assert!(Settings::parse(2, None, spec.clone()).is_err());
        assert!(Settings::parse(2, Some("just-a-name"), spec.clone()).is_err());
        assert!(Settings::parse(2, Some("/x"), spec.clone()).is_err());
        let s = Settings::parse(2, Some("ns/owner"), spec).unwrap().unwrap();
        assert_eq!(
            (s.owner_namespace.as_str(), s.owner_name.as_str()),
            ("ns", "owner")
        );
    }
}
