//! Deletion. Children go by ownerReference garbage collection, which needs no
//! operator, so deleting a Workspace (or its whole namespace, operator,
//! Role and Lease included) always finishes. A finalizer holds a Workspace
//! only while its deletion needs the operator: a claim to keep
//! (`retainOnDelete`) that still names the Workspace as its owner. Such a
//! claim loses that owner at the next apply, and the finalizer goes with it.

use dispatch_api::crd::{FINALIZER, Workspace, names};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::applier::json_patch;
use crate::children::cached;
use crate::context::Context;
use crate::reconcile::{Error, claim};

fn has_finalizer(ws: &Workspace) -> bool {
    ws.finalizers().iter().any(|f| f == FINALIZER)
}

fn retains_claim(ws: &Workspace) -> bool {
    ws.spec.storage.as_ref().is_some_and(|s| s.retain_on_delete)
}

/// Whether deleting the Workspace now would take with it a claim it should keep.
pub fn needed(ws: &Workspace, claim_owned_by_it: bool) -> bool {
    retains_claim(ws) && claim_owned_by_it
}

fn claim_owned(ws: &Workspace, ctx: &Context, claim: &str) -> bool {
    let ns = ws.namespace().unwrap_or_default();
    let uid = ws.meta().uid.as_deref().unwrap_or_default();
    cached(&ctx.pvcs, &ns, claim).is_some_and(|c| {
        c.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
    })
}

/// Adds the finalizer where it is needed and removes it (ours from an older
/// operator included) where it is not. `claim` is the Workspace's claim
/// (the claim step's answer).
pub async fn keep_only_where_needed(
    ws: &Workspace,
    ctx: &Context,
    claim: &str,
) -> Result<(), Error> {
    let need = needed(ws, claim_owned(ws, ctx, claim));
    match (need, has_finalizer(ws)) {
        (true, false) => add(ws, ctx).await,
        (false, true) => remove(ws, ctx).await,
        _ => Ok(()),
    }
}

/// The Workspace is going: release a claim it keeps, then let it go.
pub async fn on_deletion(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    if has_finalizer(ws) {
        if retains_claim(ws) {
            release_claim(ws, ctx).await?;
        }
        remove(ws, ctx).await?;
        tracing::info!(workspace = %ws.key(), retain_volume = retains_claim(ws), "workspace deleted");
    }
    ctx.forget(&ws.key());
    Ok(Action::await_change())
}

/// The claim no longer names the Workspace as owner, so garbage collection keeps it.
async fn release_claim(ws: &Workspace, ctx: &Context) -> Result<(), Error> {
    let ns = ws.namespace().unwrap_or_default();
    // A claim taken from the warm volumes has a name of its own.
    let claim = claim::existing(ws, ctx).unwrap_or_else(|| names::pvc(&ws.name_any()));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
    match pvcs
        .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Finalizer(e)),
    }
}

/// A JSON patch whose test fails (and the reconcile retries) if someone
/// changed the finalizers meanwhile, as kube's helper does.
async fn add(ws: &Workspace, ctx: &Context) -> Result<(), Error> {
    let ops = if ws.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": ws.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    patch_finalizers(ws, ctx, ops).await
}

async fn remove(ws: &Workspace, ctx: &Context) -> Result<(), Error> {
    let Some(i) = ws.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]);
    patch_finalizers(ws, ctx, ops).await
}

async fn patch_finalizers(
    ws: &Workspace,
    ctx: &Context,
    ops: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    let patch = json_patch(ops).map_err(Error::Finalizer)?;
    match api
        .patch(
            &ws.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing holds it.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Finalizer(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(retain: bool) -> Workspace {
        serde_yaml::from_str(&format!(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: a, namespace: n}}\nspec: {{owner: al, storage: {{retainOnDelete: {retain}}}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn only_a_kept_claim_that_still_names_its_owner_needs_the_operator() {
        assert!(needed(&ws(true), true));
        assert!(!needed(&ws(true), false), "released already");
        assert!(!needed(&ws(false), true), "garbage collection does it");
        assert!(!needed(&ws(false), false));
    }
}
