//! One watch per running agent. Every [`TICK`] the backend says which
//! agents run (a map lookup locally, the watch cache in Kubernetes: no
//! request); a new one gets a task that long-polls its
//! `GET /claude/status?since=`, a stopped one loses its task and its
//! requests are resolved ("agent stopped"). A task whose agent fails to
//! answer ends, and the next tick starts another after a pause (the agent
//! may have restarted elsewhere, with a new endpoint).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dispatch_api::approvals::ClaudeStatus;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Approvals, Key};
use crate::agent_client;
use crate::names::WorkspaceName;

/// How often the set of running agents is looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// How long one long poll may wait on the agent (it answers after 25 s).
const POLL_WAIT_SECS: u64 = 25;
const POLL_TIMEOUT: Duration = Duration::from_secs(POLL_WAIT_SECS + 15);
/// Failed polls in a row after which a watch gives up (and is restarted).
const MAX_FAILURES: u32 = 3;
/// Pause before a watch that gave up is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

struct Task {
    handle: JoinHandle<()>,
}

/// Runs until `stop`: keeps one watch per running agent.
pub async fn run(approvals: Arc<Approvals>, stop: CancellationToken) {
    let mut tasks: HashMap<Key, Task> = HashMap::new();
    let mut paused: HashMap<Key, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let running: Vec<(String, WorkspaceName)> = approvals.backend.running();
        let now = tokio::time::Instant::now();
        let live: std::collections::HashSet<Key> = running
            .iter()
            .map(|(o, n)| (o.clone(), n.as_str().to_owned()))
            .collect();
        // Stopped agents: their watches end and their requests go.
        let gone: Vec<Key> = tasks
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(t) = tasks.remove(&k) {
                t.handle.abort();
            }
            approvals.update(&k, None, None);
        }
        paused.retain(|k, until| live.contains(k) && *until > now);
        for (owner, name) in running {
            let key = (owner.clone(), name.as_str().to_owned());
            if let Some(t) = tasks.get(&key) {
                if !t.handle.is_finished() {
                    continue;
                }
                tasks.remove(&key);
                paused.insert(key.clone(), now + RESTART_PAUSE);
                continue;
            }
            if paused.contains_key(&key) {
                continue;
            }
            let a = approvals.clone();
            let k = key.clone();
            let handle = tokio::spawn(async move { watch_one(a, k, owner, name).await });
            tasks.insert(key, Task { handle });
        }
    }
    for (_, t) in tasks {
        t.handle.abort();
    }
}

/// Long-polls one agent until it fails [`MAX_FAILURES`] times in a row.
async fn watch_one(approvals: Arc<Approvals>, key: Key, owner: String, name: WorkspaceName) {
    let endpoint = match approvals.backend.running_endpoint(&owner, &name).await {
        Ok(Some(ep)) => ep,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%owner, workspace = %name, "no endpoint to watch: {e}");
            return;
        }
    };
    let mut since: Option<u64> = None;
    let mut failures = 0;
    loop {
        let path = match since {
            Some(v) => format!("/claude/status?since={v}&wait={POLL_WAIT_SECS}"),
            None => "/claude/status".to_owned(),
        };
        match agent_client::get_json_within::<ClaudeStatus>(&endpoint, &path, POLL_TIMEOUT).await {
            Ok(st) => {
                failures = 0;
                if since != Some(st.version) {
                    since = Some(st.version);
                    approvals.update(&key, Some(&endpoint), Some(st));
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(%owner, workspace = %name, failures, "watching Claude: {e}");
                if failures >= MAX_FAILURES {
                    tracing::info!(%owner, workspace = %name, "stopped watching Claude's status: {e}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
            }
        }
    }
}
