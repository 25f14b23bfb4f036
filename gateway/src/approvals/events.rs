//! What happened between two statuses of one agent, as events for a user:
//! a request raised or resolved, a turn finished, a turn that ended in an
//! error. Pure: the watcher feeds it statuses, tests feed it values.

use std::collections::BTreeSet;
use std::sync::Arc;

use dispatch_api::SessionId;
use dispatch_api::approvals::{ClaudeStatus, PendingApproval};

/// One thing a user may want to hear about. Every variant names the user
/// (`owner`) and the workspace; receivers filter by owner.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalEvent {
    /// A permission request now waits for a person.
    Raised {
        owner: String,
        workspace: String,
        request: PendingApproval,
    },
    /// A request no longer waits: answered (here, in a pane, by a push
    /// action), remembered, timed out, withdrawn by the CLI, or its agent
    /// stopped (`reason` says which).
    Resolved {
        owner: String,
        workspace: String,
        session: SessionId,
        request_id: String,
        tool: String,
        allowed: bool,
        /// `answered`, `remembered`, `timeout`, `cancelled`, `agent stopped`.
        reason: String,
    },
    /// A turn ended normally.
    TurnFinished {
        owner: String,
        workspace: String,
        session: SessionId,
        title: String,
        cost_usd: f64,
    },
    /// A turn ended in an error (the CLI's text, clipped).
    Error {
        owner: String,
        workspace: String,
        session: SessionId,
        title: String,
        message: String,
    },
    /// Anything in the workspace's Claude status changed (state, counts,
    /// cost); the new status. For views that redraw, not for notifications.
    Changed {
        owner: String,
        workspace: String,
        status: Option<Arc<ClaudeStatus>>,
    },
}

impl ApprovalEvent {
    pub fn owner(&self) -> &str {
        match self {
            ApprovalEvent::Raised { owner, .. }
            | ApprovalEvent::Resolved { owner, .. }
            | ApprovalEvent::TurnFinished { owner, .. }
            | ApprovalEvent::Error { owner, .. }
            | ApprovalEvent::Changed { owner, .. } => owner,
        }
    }

    pub fn workspace(&self) -> &str {
        match self {
            ApprovalEvent::Raised { workspace, .. }
            | ApprovalEvent::Resolved { workspace, .. }
            | ApprovalEvent::TurnFinished { workspace, .. }
            | ApprovalEvent::Error { workspace, .. }
            | ApprovalEvent::Changed { workspace, .. } => workspace,
        }
    }
}

fn key(p: &PendingApproval) -> (&str, &str) {
    (p.session.as_str(), p.request_id.as_str())
}

/// The events between `prev` (none when the watch just began) and `next`
/// (none when the agent stopped). Turns that ended before the watch began
/// are not news; requests that already wait are (better twice than never).
pub fn between(
    owner: &str,
    workspace: &str,
    prev: Option<&ClaudeStatus>,
    next: Option<&ClaudeStatus>,
) -> Vec<ApprovalEvent> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let before = prev.map_or(&empty, |s| &s.pending);
    let after = next.map_or(&empty, |s| &s.pending);
    let before_keys: BTreeSet<_> = before.iter().map(key).collect();
    let after_keys: BTreeSet<_> = after.iter().map(key).collect();
    for p in before.iter().filter(|p| !after_keys.contains(&key(p))) {
        let known = next.and_then(|n| {
            n.resolved
                .iter()
                .find(|r| r.session == p.session && r.request_id == p.request_id)
        });
        out.push(ApprovalEvent::Resolved {
            owner: owner.to_owned(),
            workspace: workspace.to_owned(),
            session: p.session.clone(),
            request_id: p.request_id.clone(),
            tool: p.tool.clone(),
            allowed: known.is_some_and(|r| r.allowed),
            reason: match (known, next) {
                (Some(r), _) => r.reason.clone(),
                (None, None) => "agent stopped".to_owned(),
                (None, Some(_)) => "cancelled".to_owned(),
            },
        });
    }
    for p in after.iter().filter(|p| !before_keys.contains(&key(p))) {
        out.push(ApprovalEvent::Raised {
            owner: owner.to_owned(),
            workspace: workspace.to_owned(),
            request: p.clone(),
        });
    }
    if let (Some(prev), Some(next)) = (prev, next) {
        for s in &next.sessions {
            let turns_before = prev
                .sessions
                .iter()
                .find(|o| o.id == s.id)
                .map_or(0, |o| o.turns);
            if s.turns > turns_before {
                out.push(match &s.last_error {
                    Some(message) => ApprovalEvent::Error {
                        owner: owner.to_owned(),
                        workspace: workspace.to_owned(),
                        session: s.id.clone(),
                        title: s.title.clone(),
                        message: message.clone(),
                    },
                    None => ApprovalEvent::TurnFinished {
                        owner: owner.to_owned(),
                        workspace: workspace.to_owned(),
                        session: s.id.clone(),
                        title: s.title.clone(),
                        cost_usd: s.cost_usd,
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use dispatch_api::approvals::{ClaudeSessionStatus, ClaudeState, ResolvedApproval};
    use serde_json::json;

    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn pending(rid: &str) -> PendingApproval {
        PendingApproval {
            session: sid("c1"),
            request_id: rid.into(),
            tool: "Bash".into(),
            input: json!({"command": "ls"}),
            description: None,
            raised: 1,
            deadline: 2,
        }
    }

    fn session(turns: u64, error: Option<&str>) -> ClaudeSessionStatus {
        ClaudeSessionStatus {
            id: sid("c1"),
            title: "fix it".into(),
            running: true,
            state: ClaudeState::Idle,
            turns,
            last_turn_time: None,
            cost_usd: 0.5,
            last_error: error.map(str::to_owned),
        }
    }

    fn status(pending: Vec<PendingApproval>, sessions: Vec<ClaudeSessionStatus>) -> ClaudeStatus {
        ClaudeStatus {
            version: 1,
            state: ClaudeState::Idle,
            sessions,
            pending_count: pending.len() as u32,
            pending,
            resolved: vec![],
            last_turn_time: None,
            cost_usd: 0.0,
            budget: None,
        }
    }

    #[test]
    fn requests_raised_and_resolved_with_the_agents_reason() {
        let a = status(vec![pending("r1"), pending("r2")], vec![session(0, None)]);
        let first = between("ann", "demo", None, Some(&a));
        assert_eq!(
            first.len(),
            2,
            "requests waiting when the watch began are news"
        );
        assert!(
            matches!(&first[0], ApprovalEvent::Raised { request, .. } if request.request_id == "r1")
        );

        let mut b = status(vec![pending("r2"), pending("r3")], vec![session(0, None)]);
        b.resolved.push(ResolvedApproval {
            session: sid("c1"),
            request_id: "r1".into(),
            tool: "Bash".into(),
            allowed: false,
            reason: "timeout".into(),
            at: 5,
        });
        let ev = between("ann", "demo", Some(&a), Some(&b));
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(
            matches!(&ev[0], ApprovalEvent::Resolved { request_id, reason, allowed: false, .. }
            if request_id == "r1" && reason == "timeout")
        );
        assert!(
            matches!(&ev[1], ApprovalEvent::Raised { request, .. } if request.request_id == "r3")
        );
        assert_eq!(ev[1].owner(), "ann");

        let gone = between("ann", "demo", Some(&b), None);
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(
            |e| matches!(e, ApprovalEvent::Resolved { reason, .. } if reason == "agent stopped")
        ));
        assert!(between("ann", "demo", Some(&b), Some(&b)).is_empty());
    }

    #[test]
    fn finished_turns_and_errors_are_told_once() {
        let a = status(vec![], vec![session(1, None)]);
        assert!(
            between("ann", "demo", None, Some(&a)).is_empty(),
            "old turns are not news"
        );
        let b = status(vec![], vec![session(2, None)]);
        let ev = between("ann", "demo", Some(&a), Some(&b));
        assert!(
            matches!(&ev[..], [ApprovalEvent::TurnFinished { cost_usd, title, .. }] if *cost_usd == 0.5 && title == "fix it")
        );
        let c = status(vec![], vec![session(3, Some("API Error: 529"))]);
        let ev = between("ann", "demo", Some(&b), Some(&c));
        assert!(
            matches!(&ev[..], [ApprovalEvent::Error { message, .. }] if message == "API Error: 529")
        );
        assert!(between("ann", "demo", Some(&c), Some(&c)).is_empty());
    }
}
