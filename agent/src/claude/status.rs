//! `GET /claude/status`: Claude's state across the agent's sessions, for
//! watchers without a browser (the gateway's inbox, the operator's status).

use std::time::Instant;

use dispatch_api::SessionId;
use dispatch_api::approvals::{
    ClaudeSessionStatus, ClaudeState, ClaudeStatus, MAX_PENDING_LISTED, PendingApproval,
    ResolvedApproval,
};

use super::broker::Broker;
use super::budget::Budget;
use super::turn_stats::TurnStats;

/// One session's share of the status.
pub struct SessionParts {
    pub session: ClaudeSessionStatus,
    pub pending: Vec<PendingApproval>,
    pub resolved: Vec<ResolvedApproval>,
}

/// An `Instant` as Unix ms, given a pair of readings of both clocks.
fn wall(at: Instant, (now, now_ms): (Instant, i64)) -> i64 {
    if at <= now {
        now_ms - now.duration_since(at).as_millis() as i64
    } else {
        now_ms + at.duration_since(now).as_millis() as i64
    }
}

impl SessionParts {
    pub fn new(
        id: &SessionId,
        title: String,
        running: bool,
        turn_running: bool,
        broker: &Broker,
        stats: &TurnStats,
        clocks: (Instant, i64),
    ) -> Self {
        let pending: Vec<PendingApproval> = if running {
            broker
                .pending()
                .into_iter()
                .map(|p| PendingApproval {
                    session: id.clone(),
                    request_id: p.request_id.to_owned(),
                    tool: p.tool_name.to_owned(),
                    input: p.input.clone(),
                    description: None,
                    raised: wall(p.raised, clocks),
                    deadline: wall(p.deadline, clocks),
                })
                .collect()
        } else {
            Vec::new()
        };
        let state = if !pending.is_empty() {
            ClaudeState::AwaitingApproval
        } else if running && turn_running {
            ClaudeState::Working
        } else {
            ClaudeState::Idle
        };
        let resolved = stats
            .resolved
            .iter()
            .map(|r| ResolvedApproval {
                session: id.clone(),
                request_id: r.request_id.clone(),
                tool: r.tool.clone(),
                allowed: r.allowed,
                reason: r.reason.clone(),
                at: r.at,
            })
            .collect();
        SessionParts {
            session: ClaudeSessionStatus {
                id: id.clone(),
                title,
                running,
                state,
                turns: stats.turns,
                last_turn_time: stats.last_turn_time,
                cost_usd: stats.cost_usd,
                last_error: stats.last_error.clone(),
            },
            pending,
            resolved,
        }
    }
}

/// The agent's status from its sessions' parts. Ended sessions count for
/// the cost and the last turn; only running ones are listed.
pub fn assemble(
    version: u64,
    parts: Vec<SessionParts>,
    budget: &Budget,
    now_ms: i64,
) -> ClaudeStatus {
    let mut sessions = Vec::new();
    let mut pending = Vec::new();
    let mut resolved = Vec::new();
    let mut cost_usd = 0.0;
    let mut last_turn_time: Option<i64> = None;
    for p in parts {
        cost_usd += p.session.cost_usd;
        last_turn_time = last_turn_time.max(p.session.last_turn_time);
        pending.extend(p.pending);
        resolved.extend(p.resolved);
        if p.session.running {
            sessions.push(p.session);
        }
    }
    pending.sort_by_key(|p| p.raised);
    let pending_count = pending.len() as u32;
    pending.truncate(MAX_PENDING_LISTED);
    resolved.sort_by_key(|r| r.at);
    let keep = super::turn_stats::RESOLVED_KEPT;
    if resolved.len() > keep {
        resolved.drain(..resolved.len() - keep);
    }
    ClaudeStatus {
        version,
        state: ClaudeState::most_urgent(sessions.iter().map(|s| s.state)),
        sessions,
        pending,
        pending_count,
        resolved,
        last_turn_time,
        cost_usd,
        budget: budget.status(now_ms),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_pending_request_makes_the_session_and_the_agent_wait() {
        let t0 = Instant::now();
        let clocks = (t0 + Duration::from_secs(5), 100_000);
        let mut b = Broker::new(Duration::from_secs(60));
        b.on_request("r1", "Bash", json!({"command": "ls"}), t0);
        let id = SessionId::new("c1").unwrap();
        let stats = TurnStats::default();
        let waiting = SessionParts::new(&id, "t".into(), true, true, &b, &stats, clocks);
        assert_eq!(waiting.session.state, ClaudeState::AwaitingApproval);
        assert_eq!(waiting.pending[0].raised, 95_000);
        assert_eq!(waiting.pending[0].deadline, 155_000);
        let idle_b = Broker::new(Duration::from_secs(60));
        let id2 = SessionId::new("c2").unwrap();
        let working = SessionParts::new(&id2, "u".into(), true, true, &idle_b, &stats, clocks);
        assert_eq!(working.session.state, ClaudeState::Working);
        let status = assemble(7, vec![working, waiting], &Budget::open(None, None), 0);
        assert_eq!(status.state, ClaudeState::AwaitingApproval);
        assert_eq!(status.pending_count, 1);
        assert_eq!(status.version, 7);
        // An ended session neither waits nor works, and is not listed.
        let ended = SessionParts::new(&id, "t".into(), false, true, &b, &stats, clocks);
        assert_eq!(ended.session.state, ClaudeState::Idle);
        assert!(ended.pending.is_empty());
        let status = assemble(8, vec![ended], &Budget::open(None, None), 0);
        assert_eq!(
            (status.state, status.sessions.len()),
            (ClaudeState::Idle, 0)
        );
    }
}
