//! The idle step: ask a running agent what is going on, with the token from
//! its Secret. An agent that refuses the token is a problem; an idle one past
//! its timeout is suspended.

use std::time::Duration;

use dispatch_api::crd::{Workspace, WorkspacePhase};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::desired::Validated;
use crate::idle::{self, ActivityError, Verdict};
use crate::reconcile::apply::Token;
use crate::reconcile::observe::Seen;
use crate::reconcile::{Error, RESYNC, report};
use crate::status::{Problem, TOKEN_REFUSED};

/// Asks a running agent with an idle timeout what is going on; returns what
/// to do next. `seen.last_activity` and `seen.problems` are updated.
pub async fn check(
    ws: &Workspace,
    ctx: &Context,
    validated: &Validated,
    seen: &mut Seen,
    token: &Token,
) -> Result<Action, Error> {
    let next = report::compute(ws, seen);
    let (Some(WorkspacePhase::Running), Some(endpoint), Some(pod), true) = (
        next.phase,
        next.endpoint.as_deref(),
        seen.pod.clone(),
        token.settled,
    ) else {
        return Ok(Action::requeue(RESYNC));
    };
    let k = ws.key();
    let Some(timeout) = validated.idle_timeout else {
        return Ok(Action::requeue(RESYNC));
    };
    match ctx.activity.fetch(endpoint, &token.value).await {
        Ok(activity) => {
            let since = ready_since_ms(&pod).unwrap_or_else(|| Timestamp::now().as_millisecond());
            let now = Timestamp::now().as_millisecond();
            let (verdict, last) = idle::decide(&activity, since, now, timeout);
            seen.last_activity = Timestamp::from_millisecond(last).ok().map(Time);
            match verdict {
                Verdict::Suspend => {
                    suspend(ws, ctx, timeout).await?;
                    Ok(Action::await_change())
                }
                Verdict::CheckAgainIn(d) => Ok(Action::requeue(d + Duration::from_millis(200))),
            }
        }
        Err(ActivityError::Status(401)) => {
            refused(seen);
            Ok(Action::requeue(RESYNC))
        }
        Err(e) => {
            tracing::info!(workspace = %k, error = %e, "could not read the agent's activity");
            Ok(Action::requeue(
                (timeout / 4).clamp(Duration::from_secs(2), Duration::from_secs(300)),
            ))
        }
    }
}

fn refused(seen: &mut Seen) {
    seen.problems.push(Problem::new(
        TOKEN_REFUSED,
        "the agent refuses the token in the workspace's Secret",
    ));
    seen.retry = true;
}

/// For a workspace without an idle timeout: once per Pod and token (until it passes),
/// after its status is written, whether its agent accepts the token.
/// `true` when it refuses it (`seen` then says so).
pub async fn token_refused(ws: &Workspace, ctx: &Context, seen: &mut Seen, token: &Token) -> bool {
    let next = report::compute(ws, seen);
    let (Some(WorkspacePhase::Running), Some(endpoint), Some(uid), true) = (
        next.phase,
        next.endpoint.as_deref(),
        seen.pod.as_ref().and_then(|p| p.metadata.uid.clone()),
        token.settled,
    ) else {
        return false;
    };
    let k = ws.key();
    // Asked again when the Pod or the token changes.
    let uid = format!("{uid}/{}", crate::desired::token_digest(&token.value));
    if ctx.recent.token_checked(&k, &uid) {
        return false;
    }
    match ctx.activity.fetch(endpoint, &token.value).await {
        Err(ActivityError::Status(401)) => {
            refused(seen);
            true
        }
        // Accepted, or not reachable from here (a NetworkPolicy that admits
        // only the gateway): not asked again for this Pod.
        _ => {
            ctx.recent.record_token_checked(&k, &uid);
            false
        }
    }
}

/// When the Pod's Ready condition last turned true, Unix ms.
fn ready_since_ms(pod: &Pod) -> Option<i64> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(c.last_transition_time.as_ref()?.0.as_millisecond())
}

async fn suspend(ws: &Workspace, ctx: &Context, timeout: Duration) -> Result<(), Error> {
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    let patch = serde_json::json!({"spec": {"suspended": true}});
    api.patch(
        &ws.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Idle)?;
    tracing::info!(workspace = %ws.key(), ?timeout, "suspended for idleness");
    let ev = Event {
        type_: EventType::Normal,
        reason: "IdleSuspended".into(),
        note: Some(format!("no activity for {}s; suspended", timeout.as_secs())),
        action: "Suspend".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ws.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
    Ok(())
}
