//! Claude's state in the Workspace status. One long poll per running agent
//! (`GET /claude/status?since=`, which answers when something a person
//! cares about changes: a request raised or settled, a turn begun or over;
//! never per token), each change written to `status.claude` with a merge
//! patch of that field alone, only when it differs and at most once a
//! second per workspace ([`crate::claude_status`]). Runs beside the
//! controller, so only on the leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dispatch_api::approvals::ClaudeStatus;
use dispatch_api::crd::{ClaudeWorkspaceStatus, Workspace, WorkspacePhase};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use kube::runtime::reflector::Store;
use tokio::task::JoinHandle;

use crate::claude_status::{self, Write};
use crate::context::Context;

/// How often the running workspaces are looked at (the cache: no request).
const TICK: Duration = Duration::from_secs(2);
/// How long one long poll waits on the agent.
const POLL_WAIT_SECS: u64 = 25;
const POLL_TIMEOUT: Duration = Duration::from_secs(POLL_WAIT_SECS + 10);
/// Pause after an agent failed to answer (it may be restarting).
const RETRY: Duration = Duration::from_secs(3);

struct Watch {
    target: (String, String),
    handle: JoinHandle<()>,
}

impl Drop for Watch {
    /// A watch ends with its entry, and all of them with [`run`].
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Runs until dropped (the controller's task ends it).
pub async fn run(ctx: Arc<Context>, workspaces: Store<Workspace>) {
    let mut watches: HashMap<String, Watch> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut live = std::collections::HashSet::new();
        for ws in workspaces.state() {
            let Some((endpoint, token)) = target(&ws, &ctx) else {
                continue;
            };
            let k = ws.key();
            live.insert(k.clone());
            let want = (endpoint, token);
            if let Some(w) = watches.get(&k)
                && w.target == want
                && !w.handle.is_finished()
            {
                continue;
            }
            if let Some(old) = watches.remove(&k) {
                old.handle.abort();
            }
            let handle = tokio::spawn(watch_one(ctx.clone(), ws.clone(), want.clone()));
            watches.insert(
                k,
                Watch {
                    target: want,
                    handle,
                },
            );
        }
        let gone: Vec<String> = watches
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(w) = watches.remove(&k) {
                w.handle.abort();
            }
            ctx.metrics.set_claude(&k, None);
        }
    }
}

/// The agent's endpoint and token, while it runs.
fn target(ws: &Workspace, ctx: &Context) -> Option<(String, String)> {
    if ws.metadata.deletion_timestamp.is_some() || ws.spec.suspended {
        return None;
    }
    let status = ws.status.as_ref()?;
    if status.phase != Some(WorkspacePhase::Running) {
        return None;
    }
    let endpoint = status.endpoint.clone()?;
    let token = crate::reconcile::agent_token(ws, ctx)?;
    Some((endpoint, token))
}

async fn watch_one(ctx: Arc<Context>, ws: Arc<Workspace>, (endpoint, token): (String, String)) {
    let k = ws.key();
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    let name = ws.name_any();
    let mut written: Option<ClaudeWorkspaceStatus> =
        ws.status.as_ref().and_then(|s| s.claude.clone());
    let mut last_write: Option<Instant> = None;
    let mut since: Option<u64> = None;
    loop {
        let path = match since {
            Some(v) => format!("/claude/status?since={v}&wait={POLL_WAIT_SECS}"),
            None => "/claude/status".to_owned(),
        };
        let st: ClaudeStatus = match ctx
            .activity
            .get_json(&endpoint, &token, &path, POLL_TIMEOUT)
            .await
        {
            Ok(st) => st,
            Err(e) => {
                tracing::debug!(workspace = %k, error = %e, "reading Claude's status");
                tokio::time::sleep(RETRY).await;
                since = None;
                continue;
            }
        };
        since = Some(st.version);
        let next = claude_status::summary(&st);
        ctx.metrics.set_claude(&k, Some(&next));
        match claude_status::decide(written.as_ref(), &next, last_write, Instant::now()) {
            Write::Skip => continue,
            Write::After(d) => tokio::time::sleep(d).await,
            Write::Now => {}
        }
        // Only while this agent is the running one: a status written after
        // a suspension (the agent's last answer as it stopped) would outlive it.
        let ops = serde_json::json!([
            {"op": "test", "path": "/status/phase", "value": "Running"},
            {"op": "test", "path": "/status/endpoint", "value": endpoint},
            {"op": "add", "path": "/status/claude", "value": next},
        ]);
        let Ok(patch) = crate::applier::json_patch(ops) else {
            return;
        };
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(workspace = %k, state = ?next.state, pending = next.pending_approvals, "Claude's status written");
                written = Some(next);
                last_write = Some(Instant::now());
            }
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 404 => {
                tracing::debug!(workspace = %k, "the agent is no longer the running one; watch ends");
                return;
            }
            Err(e) => {
                tracing::info!(workspace = %k, error = %e, "could not write Claude's status");
                tokio::time::sleep(RETRY).await;
                // Asked again at once: the next answer is written.
                since = None;
            }
        }
    }
}
