//! The reconcile pipeline, one step per module:
//!
//! validate ([`crate::desired::validate`]) -> claim ([`claim`]) -> desired
//! ([`apply::token`], [`crate::desired::desired_with_claim`]) -> finalizer ([`finalizer`]) -> apply
//! ([`apply`]) -> observe ([`observe`]) -> idle ([`idle`]) -> status ([`report`]).
//!
//! Each child is applied on its own: one refused child is reported in the
//! status and retried with backoff, and never keeps the others (least of all
//! the Pod: a suspend always removes it) from being reconciled.

mod apply;
mod claim;
mod finalizer;
mod idle;
mod observe;
mod report;

use std::sync::Arc;
use std::time::Instant;

use dispatch_api::crd::Workspace;
use kube::runtime::controller::Action;

use crate::context::{Context, backoff};
use crate::desired;
use crate::recent::CACHE_LAG;

/// Children are applied in full at least this often, even when their hash
/// annotation says they are current (a safety net: edits by others are
/// undone as soon as their watch event arrives).
pub const FULL_APPLY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// With nothing to wait for, look at a Workspace again after this long.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(600);

/// What failed, one variant per step; [`Error::label`] names the step in the
/// failures metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    /// Some children could not be made what they should be (each is named);
    /// the others were.
    #[error("children: {0}")]
    Apply(String),
    #[error("idle suspension: {0}")]
    Idle(#[source] kube::Error),
    #[error("status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// The step, for the failures metric.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Finalizer(_) => "finalizer",
            Error::Apply(_) => "apply",
            Error::Idle(_) => "idle",
            Error::Status(_) => "status",
        }
    }
}

/// The agent's token as the operator knows it (its Secret in the cache, or
/// just written), once settled.
pub fn agent_token(ws: &Workspace, ctx: &Context) -> Option<String> {
    let t = apply::token(ws, ctx);
    t.settled.then_some(t.value)
}

/// Runs the pipeline for one Workspace.
pub async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let k = ws.key();
    let result = pipeline(&ws, &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    tracing::debug!(workspace = %k, took = ?started.elapsed(), ok = result.is_ok(), "reconciled");
    result
}

/// Nothing is wrong: the next failure backs off from the start.
fn healthy(ctx: &Context, ws: &Workspace) {
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&ws.key());
    }
}

async fn pipeline(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    if ws.metadata.deletion_timestamp.is_some() {
        return finalizer::on_deletion(ws, ctx).await;
    }
    let validated = match desired::validate(ws) {
        Ok(v) => v,
        Err(invalid) => return report::refuse(ws, ctx, &invalid).await,
    };
    let claim = claim::resolve(ws, ctx).await;
    let token = apply::token(ws, ctx);
    let children = desired::desired_with_claim(ws, &ctx.defaults, &token.value, &claim);
    // A finalizer that cannot be put on or taken off holds up nothing else.
    let finalizer = finalizer::keep_only_where_needed(ws, ctx, &claim).await;
    let applied = apply::children(ws, ctx, &children, &token).await;
    let mut seen = observe::observe(ws, ctx, &applied, &children.pvc).await;
    let idle = idle::check(ws, ctx, &validated, &mut seen, &token).await?;
    report::status(ws, ctx, &seen).await?;
    if validated.idle_timeout.is_none() && idle::token_refused(ws, ctx, &mut seen, &token).await {
        report::status(ws, ctx, &seen).await?;
    }

    let k = ws.key();
    if !applied.failures.is_empty() {
        let summary = applied
            .failures
            .iter()
            .map(|f| f.summary())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Apply(summary));
    }
    finalizer?;
    if seen.retry {
        // Something is wrong outside the spec (an agent refusing its token):
        // look again soon, less often while it stays wrong.
        ctx.metrics.failed("degraded");
        return Ok(Action::requeue(backoff(ctx, &k)));
    }
    healthy(ctx, ws);
    if applied.lagging {
        // A skip trusted a recent write: look again once the caches must show it.
        return Ok(Action::requeue(CACHE_LAG));
    }
    Ok(idle)
}
