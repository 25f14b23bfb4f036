//! The status step: the status computed from what was seen, written when it
//! differs, and a Warning Event the first time a problem shows.

use dispatch_api::crd::{Workspace, WorkspaceStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;

use crate::context::Context;
use crate::desired::Invalid;
use crate::reconcile::Error;
use crate::reconcile::observe::{Seen, warn};
use crate::status::{self, DEGRADED, Observed};

/// The status `seen` calls for.
pub fn compute(ws: &Workspace, seen: &Seen) -> WorkspaceStatus {
    let name = ws.name_any();
    let obs = Observed {
        name: &name,
        generation: ws.metadata.generation,
        deleting: false,
        suspended: ws.spec.suspended,
        invalid: None,
        pod: seen.pod.as_deref(),
        problems: &seen.problems,
        volume: seen.volume.as_ref(),
    };
    let mut next = status::compute(&obs, ws.status.as_ref(), Timestamp::now());
    if seen.last_activity.is_some() {
        next.last_activity = seen.last_activity.clone();
    }
    next
}

/// Writes the status `seen` calls for, and warns about a new problem.
pub async fn status(ws: &Workspace, ctx: &Context, seen: &Seen) -> Result<(), Error> {
    let next = compute(ws, seen);
    if let Some(first) = seen.problems.first()
        && !already_degraded(ws, first.reason)
    {
        warn(ws, ctx, first.reason, &first.message).await;
    }
    write(ws, ctx, &next).await?;
    ctx.metrics.set_phase(&ws.key(), next.phase);
    Ok(())
}

/// A spec that cannot be carried out: say so and wait for it to change.
pub async fn refuse(ws: &Workspace, ctx: &Context, invalid: &Invalid) -> Result<Action, Error> {
    if !already_degraded(ws, invalid.reason) {
        warn(ws, ctx, invalid.reason, &invalid.message).await;
    }
    let name = ws.name_any();
    let obs = Observed {
        name: &name,
        generation: ws.metadata.generation,
        deleting: false,
        suspended: ws.spec.suspended,
        invalid: Some(invalid),
        pod: None,
        problems: &[],
        volume: None,
    };
    let next = status::compute(&obs, ws.status.as_ref(), Timestamp::now());
    write(ws, ctx, &next).await?;
    ctx.metrics.set_phase(&ws.key(), next.phase);
    Ok(Action::await_change())
}

/// Whether the status already says the same about this generation
/// (reconciles triggered by other changes must not repeat the Event).
fn already_degraded(ws: &Workspace, reason: &str) -> bool {
    ws.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == DEGRADED && c.status == "True" && c.reason == reason)
            && s.observed_generation == ws.metadata.generation
    })
}

async fn write(ws: &Workspace, ctx: &Context, next: &WorkspaceStatus) -> Result<(), Error> {
    let k = ws.key();
    let current = ws.status.as_ref();
    // The cache may lag our last write; a status someone else wrote is never trusted.
    let ours = current.is_none_or(|cur| ctx.recent.wrote_status(&k, cur));
    if current.is_some_and(|cur| !status::differs(cur, next))
        || (ours && ctx.recent.status_written(&k, next))
    {
        return Ok(());
    }
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    ctx.recent.expect_status(&k, next);
    match api
        .patch_status(
            &ws.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status::merge_patch(next)),
        )
        .await
    {
        Ok(_) => {
            ctx.recent.record_status(&k, next);
            Ok(())
        }
        // Deleted since the cache showed it (with no finalizer of ours to wait for): there is
        // nobody left to report to, and the watch will drop it. Not a failure to retry.
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::debug!(workspace = %k, "deleted while being reconciled");
            Ok(())
        }
        Err(e) => Err(Error::Status(e)),
    }
}
