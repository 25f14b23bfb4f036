//! The apply step: every child on its own, the Pod last and always.

use std::sync::Arc;
use std::time::Instant;

use dispatch_api::crd::{Workspace, names};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::applier::{Applier, ChildError, MANAGER, OnInvalid, delete_exact};
use crate::children::cached;
use crate::children::{slim_pod, token_of};
use crate::context::Context;
use crate::desired::{self, Children, applied_hash, pod_token_digest};
use crate::reconcile::FULL_APPLY_EVERY;
use crate::status;

/// The agent's token and where it stands.
pub struct Token {
    pub value: String,
    /// It is in the Secret (the cache shows it, or this process just wrote
    /// it). A token not yet settled is only offered in a create.
    pub settled: bool,
}

/// The token the Secret holds, or a new one to create it with.
pub fn token(ws: &Workspace, ctx: &Context) -> Token {
    let k = ws.key();
    let ns = ws.namespace().unwrap_or_default();
    let from_cache = cached(&ctx.secrets, &ns, &names::token_secret(&ws.name_any()))
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .map(|s| token_of(&s))
        .filter(|t| !t.is_empty());
    if from_cache.is_some() {
        ctx.recent.forget_token(&k);
    }
    // Until the cache shows the Secret this process just made, its token is remembered.
    match from_cache.or_else(|| ctx.recent.token(&k)) {
        Some(value) => Token {
            value,
            settled: true,
        },
        None => Token {
            value: desired::new_token(),
            settled: false,
        },
    }
}

/// What applying the children did.
#[derive(Default)]
pub struct Applied {
    /// The Pod as written, when it was.
    pub pod: Option<Pod>,
    /// The claim as written, when it was.
    pub claim: Option<PersistentVolumeClaim>,
    /// A skip relied on a recent write rather than the caches.
    pub lagging: bool,
    /// Children that are not what they should be.
    pub failures: Vec<ChildError>,
}

impl Applied {
    fn note<T>(&mut self, r: Result<T, ChildError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "child not applied");
                self.failures.push(e);
                None
            }
        }
    }
}

pub async fn children(ws: &Workspace, ctx: &Context, c: &Children, token: &Token) -> Applied {
    let k = ws.key();
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let full = ctx
        .full_applies
        .lock()
        .map(|m| m.get(&k).is_none_or(|t| t.elapsed() > FULL_APPLY_EVERY))
        .unwrap_or(true);
    let mut applier = Applier {
        recent: &ctx.recent,
        full,
        lagging: false,
    };
    let mut out = Applied::default();
    let client = &ctx.client;

    // The token Secret is created, never blindly applied, while we have not
    // seen it: if it exists after all (a stale cache), its token is kept.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut token_ok = token.settled;
    if token.settled {
        let seen = cached(&ctx.secrets, &ns, &names::token_secret(&name));
        let r = applier
            .apply(
                &secrets,
                &c.secret,
                seen.as_deref().map(|s| &s.metadata),
                OnInvalid::Replace,
            )
            .await;
        out.note(r);
    } else {
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match secrets.create(&pp, &c.secret).await {
            Ok(_) => {
                ctx.recent.record_token(&k, &token_of(&c.secret));
                token_ok = true;
            }
            // Someone (a previous run of ours) made it: the next round reads its token.
            Err(e) => out.failures.push(ChildError::Kube {
                object: format!("Secret/{ns}/{}", names::token_secret(&name)),
                source: e,
            }),
        }
    }

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let seen_claim = cached(&ctx.pvcs, &ns, &c.pvc.name_any());
    // A claim being deleted is left to go; a new one is made once it has.
    if seen_claim
        .as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_none())
    {
        // Deleting a claim would delete the files: a refused change is reported.
        let r = applier
            .apply(
                &pvcs,
                &c.pvc,
                seen_claim.as_deref().map(|p| &p.metadata),
                OnInvalid::Report,
            )
            .await;
        if let Some(Some(written)) = out.note(r) {
            out.claim = Some(written);
        }
    }

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let seen = cached(&ctx.services, &ns, &names::service(&name));
    let r = applier
        .apply(
            &services,
            &c.service,
            seen.as_deref().map(|m| &m.metadata),
            OnInvalid::Replace,
        )
        .await;
    out.note(r);

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let seen = cached(&ctx.policies, &ns, &names::network_policy(&name));
    let r = applier
        .apply(
            &policies,
            &c.network_policy,
            seen.as_deref().map(|m| &m.metadata),
            OnInvalid::Replace,
        )
        .await;
    out.note(r);

    let r = pod(
        ws,
        ctx,
        &mut applier,
        c.pod.as_ref(),
        token_ok.then_some(token),
    )
    .await;
    if let Some(Some(p)) = out.note(r) {
        let mut slim = p.clone();
        slim_pod(&mut slim);
        ctx.recent.record_pod(&k, Arc::new(slim));
        out.pod = Some(p);
    }

    if full
        && out.failures.is_empty()
        && let Ok(mut m) = ctx.full_applies.lock()
    {
        m.insert(k, Instant::now());
    }
    out.lagging = applier.lagging;
    out
}

/// The Pod step: remove it when suspended, replace it when its spec or its
/// token changed or it ended, else make it what it should be. Without a
/// settled token nothing but a removal is done.
async fn pod(
    ws: &Workspace,
    ctx: &Context,
    applier: &mut Applier<'_>,
    want: Option<&Pod>,
    token: Option<&Token>,
) -> Result<Option<Pod>, ChildError> {
    let ns = ws.namespace().unwrap_or_default();
    let name = names::pod(&ws.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let current = cached(&ctx.pods, &ns, &name);
    let object = format!("Pod/{ns}/{name}");
    let remove = |pod: Arc<Pod>, why: &'static str| {
        let pods = pods.clone();
        let object = object.clone();
        async move {
            tracing::info!(workspace = %ws.key(), why, "removing the Pod");
            delete_exact(&pods, &pod.name_any(), pod.meta().uid.clone())
                .await
                .map_err(|source| ChildError::Kube { object, source })
        }
    };
    let terminating = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    match (want, current) {
        (None, Some(pod)) if !terminating(&pod) => remove(pod, "suspended").await.map(|()| None),
        (None, _) => Ok(None),
        // Terminating: wait for it to go (its deletion triggers a reconcile).
        (Some(_), Some(pod)) if terminating(&pod) => Ok(None),
        (Some(_), _) if token.is_none() => Ok(None),
        (Some(want), Some(pod)) if applied_hash(&pod.metadata) != applied_hash(&want.metadata) => {
            // Pods are mostly immutable: a changed spec means a new Pod.
            remove(pod, "its spec changed").await.map(|()| None)
        }
        (Some(_), Some(pod)) if status::pod_finished(&pod) => {
            remove(pod, "it ended").await.map(|()| None)
        }
        (Some(want), Some(pod))
            if pod_token_digest(&pod.metadata)
                .is_some_and(|d| Some(d) != pod_token_digest(&want.metadata)) =>
        {
            // The agent reads its token once: a new token means a new Pod.
            remove(pod, "its token changed").await.map(|()| None)
        }
        (Some(want), current) => {
            applier
                .apply(
                    &pods,
                    want,
                    current.as_deref().map(|p| &p.metadata),
                    OnInvalid::Replace,
                )
                .await
        }
    }
}
