//! The claim step: which claim holds the Workspace's files. The one named
//! after it; else one its status (or this process, just now) names: a warm
//! volume it took; else one labelled with its name, kept from an earlier
//! Workspace of that name; else a warm volume taken now; else the one named
//! after it, to be made.

use dispatch_api::crd::{LABEL_WORKSPACE, Workspace, names};
use kube::ResourceExt;

use crate::children::cached;
use crate::context::Context;
use crate::desired;
use crate::warm_volumes::WARM_LABEL;

/// The claim that holds the Workspace's files, if the cache has it.
pub fn existing(ws: &Workspace, ctx: &Context) -> Option<String> {
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let own = names::pvc(&name);
    if cached(&ctx.pvcs, &ns, &own).is_some() {
        return Some(own);
    }
    let k = ws.key();
    let named = ctx
        .warm
        .as_ref()
        .and_then(|w| w.taken_by(&k))
        .or_else(|| {
            ctx.recent
                .last_status(&k)
                .and_then(|s| s.volume?.claim_name)
        })
        .or_else(|| ws.status.as_ref()?.volume.as_ref()?.claim_name.clone());
    // Another Workspace's claim is never taken for this one, whatever a status says.
    let ours = |claim: &str| {
        cached(&ctx.pvcs, &ns, claim)
            .is_some_and(|c| c.labels().get(LABEL_WORKSPACE).is_none_or(|w| *w == name))
    };
    if let Some(claim) = named.filter(|c| ours(c)) {
        return Some(claim);
    }
    ctx.pvcs
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            let labels = c.labels();
            labels.get(LABEL_WORKSPACE) == Some(&name) && !labels.contains_key(WARM_LABEL)
        })
        .map(|c| c.name_any())
        .min()
}

/// The claim the Workspace's Pod mounts: [`existing`], else a warm volume
/// taken now, else the one named after the Workspace.
pub async fn resolve(ws: &Workspace, ctx: &Context) -> String {
    if let Some(claim) = existing(ws, ctx) {
        return claim;
    }
    let own = names::pvc(&ws.name_any());
    if let Some(warm) = &ctx.warm {
        let want = desired::claim(ws, &ctx.defaults, &own);
        if let Some(taken) = warm.take(&ctx.client, &ctx.metrics, ws, &want).await {
            return taken;
        }
    }
    own
}
