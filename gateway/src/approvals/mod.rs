//! Claude's permission requests across all workspaces, in one place.
//!
//! The gateway keeps at most one watch per running agent, whoever looks
//! (browsers, push notifications): a long poll of the agent's
//! `GET /claude/status?since=` ([`watch`]). What changed between two
//! statuses becomes [`ApprovalEvent`]s ([`events`]) on one broadcast
//! ([`Approvals::subscribe`]); the latest status of each agent answers
//! `GET /api/approvals` ([`Approvals::inbox`]); [`Approvals::answer`]
//! answers one request through the agent that holds it. `approvals_routes` serves
//! all this to browsers, each user seeing only their workspaces.

pub mod events;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dispatch_api::SessionId;
use dispatch_api::approvals::{
    ApprovalAnswer, ClaudeStatus, Inbox, PendingApproval, WorkspaceClaude,
};
use dispatch_api::rest::ApiError;
use tokio::sync::broadcast;

pub use events::ApprovalEvent;

use crate::backend::{AgentEndpoint, WorkspaceBackend};

/// Events kept for a receiver that lags; one that lags more misses some
/// (and is told: `RecvError::Lagged`).
const EVENT_BUFFER: usize = 1024;

/// (owner, workspace)
type Key = (String, String);

/// What the gateway knows of one watched agent.
struct Watched {
    endpoint: AgentEndpoint,
    status: Option<Arc<ClaudeStatus>>,
}

/// Why an answer did not reach a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No such request pending for this user (unknown workspace, session or
    /// id, another user's, or already resolved).
    #[error("{0}")]
    NoSuchRequest(String),
    /// The answer itself is wrong (e.g. a reason too long).
    #[error("{0}")]
    Invalid(String),
    /// The agent could not be reached or failed.
    #[error("{0}")]
    Unavailable(String),
}

pub struct Approvals {
    backend: Arc<dyn WorkspaceBackend>,
    events: broadcast::Sender<ApprovalEvent>,
    watched: Mutex<HashMap<Key, Watched>>,
    /// Watch tasks running now (set by [`watch::run`]).
    watches: std::sync::atomic::AtomicUsize,
}

impl Approvals {
    pub fn new(backend: Arc<dyn WorkspaceBackend>) -> Arc<Self> {
        Arc::new(Approvals {
            backend,
            events: broadcast::channel(EVENT_BUFFER).0,
            watched: Mutex::new(HashMap::new()),
            watches: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Agents watched now (one long poll each).
    pub fn watches(&self) -> usize {
        self.watches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests waiting for a person, all users.
    pub fn pending_total(&self) -> usize {
        self.watched()
            .values()
            .filter_map(|w| w.status.as_ref())
            .map(|s| s.pending_count as usize)
            .sum()
    }

    /// Every event for every user, from now on; filter by
    /// `ApprovalEvent::owner`.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// The user's workspaces whose agents are watched, with their status.
    pub fn inbox(&self, owner: &str) -> Inbox {
        let mut workspaces: Vec<WorkspaceClaude> = self
            .watched()
            .iter()
            .filter(|((o, _), _)| o == owner)
            .filter_map(|((_, w), v)| {
                Some(WorkspaceClaude {
                    workspace: w.clone(),
                    status: (**v.status.as_ref()?).clone(),
                })
            })
            .collect();
        workspaces.sort_by(|a, b| a.workspace.cmp(&b.workspace));
        Inbox { workspaces }
    }

    /// One pending request of the user's, if it still waits.
    pub fn pending(
        &self,
        owner: &str,
        workspace: &str,
        session: &SessionId,
        request_id: &str,
    ) -> Option<PendingApproval> {
        let w = self.watched();
        let st = w
            .get(&(owner.to_owned(), workspace.to_owned()))?
            .status
            .clone()?;
        st.pending
            .iter()
            .find(|p| &p.session == session && p.request_id == request_id)
            .cloned()
    }

    /// Answers one request of `owner`'s through its agent (Allow, Deny with
    /// a reason, Always for this session = `remember`). The first answer
    /// wins, wherever it comes from; a later one is `NoSuchRequest`.
    pub async fn answer(
        &self,
        owner: &str,
        workspace: &str,
        session: &SessionId,
        request_id: &str,
        answer: &ApprovalAnswer,
    ) -> Result<(), AnswerError> {
        answer.check().map_err(AnswerError::Invalid)?;
        let endpoint = self
            .watched()
            .get(&(owner.to_owned(), workspace.to_owned()))
            .map(|w| w.endpoint.clone())
            .ok_or_else(|| {
                AnswerError::NoSuchRequest(format!(
                    "no running workspace {workspace:?} with Claude requests"
                ))
            })?;
        let path = format!(
            "/claude/sessions/{}/permissions/{}",
            session.as_str(),
            percent_encode(request_id)
        );
        let (status, body) = crate::agent_client::post_json(&endpoint, &path, answer)
            .await
            .map_err(AnswerError::Unavailable)?;
        if status.is_success() {
            tracing::info!(%owner, %workspace, session = %session, request = %request_id, allow = answer.allow, "permission request answered");
            return Ok(());
        }
        let message = serde_json::from_slice::<ApiError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("the agent answered {status}"));
        Err(match status.as_u16() {
            404 | 409 => AnswerError::NoSuchRequest(message),
            400 => AnswerError::Invalid(message),
            _ => AnswerError::Unavailable(message),
        })
    }

    /// A new status of a watched agent (none: it stopped); sends the events.
    fn update(&self, key: &Key, endpoint: Option<&AgentEndpoint>, next: Option<ClaudeStatus>) {
        let next = next.map(Arc::new);
        let prev = {
            let mut w = self.watched();
            match (endpoint, &next) {
                (Some(ep), _) => {
                    let entry = w.entry(key.clone()).or_insert_with(|| Watched {
                        endpoint: ep.clone(),
                        status: None,
                    });
                    entry.endpoint = ep.clone();
                    std::mem::replace(&mut entry.status, next.clone())
                }
                (None, _) => w.remove(key).and_then(|x| x.status),
            }
        };
        if prev.is_none() && next.is_none() {
            return;
        }
        let (owner, workspace) = key;
        for ev in events::between(owner, workspace, prev.as_deref(), next.as_deref()) {
            let _ = self.events.send(ev);
        }
        let _ = self.events.send(ApprovalEvent::Changed {
            owner: owner.clone(),
            workspace: workspace.clone(),
            status: next,
        });
    }
}

/// A request id in a URL path: the CLI's ids are tokens of letters, digits
/// and `-_`, but nothing outside is trusted to be.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_cannot_change_the_path() {
        assert_eq!(percent_encode("toolu_01AB-c"), "toolu_01AB-c");
        assert_eq!(percent_encode("../x?y#z"), "%2E%2E%2Fx%3Fy%23z");
    }
}
