//! Makes one child what the desired object says, and owns the rules for it:
//! skip a child whose hash annotation is current (unless a full apply is due
//! or someone else edited it), create what is absent (a plain POST costs the
//! apiserver half an apply), fold a created child's field ownership into our
//! apply entry before changing it, and replace a child that apply cannot fix.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::children::{Child, marked_edited, object_key};
use crate::desired::applied_hash;
use crate::ownership;
use crate::recent::Recent;

/// Field manager of every write.
pub const MANAGER: &str = "dispatch-operator";

/// What to do when the apiserver refuses an apply as invalid (422): an
/// immutable field edited by hand, or a list entry whose key was edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Delete it and create it anew (nothing of value lives in it).
    Replace,
    /// Report it; deleting it would lose data (a claim).
    Report,
}

/// Why a child could not be made what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{object}: {source}")]
    Kube {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Folding its field ownership failed: someone wrote it meanwhile (the
    /// patch tests the resourceVersion). Transient, never the spec's fault.
    #[error("{object}: field ownership: {source}")]
    Ownership {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object}: cannot be serialized: {source}")]
    Serialize {
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ChildError {
    fn kube(object: &str, source: kube::Error) -> Self {
        ChildError::Kube {
            object: object.into(),
            source,
        }
    }

    /// The apiserver refused it (a 4xx that waiting alone will not fix).
    pub fn refused(&self) -> bool {
        match self {
            ChildError::Kube {
                source: kube::Error::Api(e),
                ..
            } => (400..500).contains(&e.code) && e.code != 409 && e.code != 429,
            ChildError::Kube { .. } | ChildError::Ownership { .. } => false,
            ChildError::Serialize { .. } => true,
        }
    }

    /// What the status says about it.
    pub fn summary(&self) -> String {
        match self {
            ChildError::Kube {
                object,
                source: kube::Error::Api(e),
            } => format!("{object}: {} ({})", e.message, e.reason),
            other => other.to_string(),
        }
    }
}

/// One reconcile's applies: whether a full apply is due, and whether a skip
/// trusted [`Recent`] rather than the caches.
pub struct Applier<'a> {
    pub recent: &'a Recent,
    pub full: bool,
    pub lagging: bool,
}

impl Applier<'_> {
    /// Makes the child `desired`; `seen` is the cache's copy's metadata.
    /// `Ok(None)` when nothing needed writing.
    pub async fn apply<K>(
        &mut self,
        api: &Api<K>,
        desired: &K,
        seen: Option<&ObjectMeta>,
        on_invalid: OnInvalid,
    ) -> Result<Option<K>, ChildError>
    where
        K: Child + Serialize,
    {
        let object = object_key(desired);
        let want = applied_hash(desired.meta()).map(String::from);
        let edited = seen.is_some_and(|m| {
            (marked_edited(m) && !self.recent.unchanged_since_written(&object, m))
                || lost_labels(m, desired.meta())
                || self.recent.generation_moved(&object, m)
        });
        if !self.full
            && !edited
            && let Some(want) = &want
        {
            if seen.and_then(applied_hash) == Some(want.as_str()) {
                return Ok(None);
            }
            if self.recent.applied(&object, want) {
                self.lagging = true;
                return Ok(None);
            }
        }
        if seen.is_none() {
            match create(api, desired).await {
                Ok(created) => {
                    self.remember(&object, want.as_deref(), &created);
                    return Ok(Some(created));
                }
                // It exists after all (the cache lags): apply it.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(ChildError::kube(&object, e)),
            }
        } else if seen.and_then(applied_hash) != want.as_deref() {
            // A change: the child may have been created, not applied. (An
            // edit by others needs no fold: the forced apply takes back
            // whatever of ours they changed.)
            fold_ownership(api, &desired.name_any())
                .await
                .map_err(|source| ChildError::Ownership {
                    object: object.clone(),
                    source,
                })?;
        }
        match server_side_apply(api, desired).await {
            Ok(applied) => {
                self.remember(&object, want.as_deref(), &applied);
                Ok(Some(applied))
            }
            Err(ApplyError::Kube(kube::Error::Api(e)))
                if e.code == 422 && on_invalid == OnInvalid::Replace =>
            {
                tracing::info!(object, reason = %e.message, "apply cannot fix it: replacing it");
                let created = replace(api, desired)
                    .await
                    .map_err(|e| ChildError::kube(&object, e))?;
                self.remember(&object, want.as_deref(), &created);
                Ok(Some(created))
            }
            Err(ApplyError::Kube(e)) => Err(ChildError::kube(&object, e)),
            Err(ApplyError::Serialize(source)) => Err(ChildError::Serialize { object, source }),
        }
    }

    fn remember<K: Resource>(&self, object: &str, hash: Option<&str>, written: &K) {
        if let Some(h) = hash {
            self.recent.record_applied(object, h);
        }
        self.recent.record_written(object, written.meta());
    }
}

/// Whether a label we set is missing or different (a hand edit that only
/// removed something leaves no trace in managedFields).
fn lost_labels(seen: &ObjectMeta, desired: &ObjectMeta) -> bool {
    let have = seen.labels.as_ref();
    desired
        .labels
        .iter()
        .flatten()
        .any(|(k, v)| have.and_then(|h| h.get(k)) != Some(v))
}

async fn create<K: Child + Serialize>(api: &Api<K>, desired: &K) -> Result<K, kube::Error> {
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.create(&pp, desired).await
}

enum ApplyError {
    Kube(kube::Error),
    Serialize(serde_json::Error),
}

async fn server_side_apply<K: Child + Serialize>(
    api: &Api<K>,
    desired: &K,
) -> Result<K, ApplyError> {
    let mut body = serde_json::to_value(desired).map_err(ApplyError::Serialize)?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    api.patch(
        &desired.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(ApplyError::Kube)
}

/// Deletes the child as it is now (its uid as precondition, so a newer one is
/// never deleted) and creates it anew.
async fn replace<K: Child + Serialize>(api: &Api<K>, desired: &K) -> Result<K, kube::Error> {
    let name = desired.name_any();
    let current = api.get(&name).await?;
    delete_exact(api, &name, current.meta().uid.clone()).await?;
    create(api, desired).await
}

/// Deletes `name` if its uid is still `uid`; gone already is fine.
pub async fn delete_exact<K: Child>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Before a changing apply to a child that was created, not applied: our
/// `Update` field entry becomes part of our `Apply` entry, so the apply can
/// remove fields the desired object no longer has. The patch tests the
/// resourceVersion, so a concurrent write makes it fail and the reconcile retry.
async fn fold_ownership<K: Child>(api: &Api<K>, name: &str) -> Result<(), kube::Error> {
    let current = match api.get_opt(name).await? {
        Some(c) => c,
        None => return Ok(()),
    };
    let meta = current.meta();
    let Some(folded) = meta
        .managed_fields
        .as_deref()
        .and_then(|e| ownership::fold_updates_into_apply(e, MANAGER))
    else {
        return Ok(());
    };
    let patch = json_patch(serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        {"op": "replace", "path": "/metadata/managedFields", "value": folded},
    ]))?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    tracing::debug!(object = name, "folded created fields into the apply entry");
    Ok(())
}

/// A JSON patch (RFC 6902) from a list of operations.
pub fn json_patch<T: serde::de::DeserializeOwned>(
    ops: serde_json::Value,
) -> Result<T, kube::Error> {
    serde_json::from_value(ops).map_err(kube::Error::SerdeError)
}
