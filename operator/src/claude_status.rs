//! What the agent's `GET /claude/status` says, as the Workspace's
//! `status.claude`, and when to write it: only when it changed, and at most
//! once per [`MIN_WRITE_INTERVAL`] per workspace (a burst of changes becomes
//! one write of the latest). Pure, unit-tested.

use std::time::{Duration, Instant};

use dispatch_api::approvals::{self, ClaudeStatus};
use dispatch_api::crd::{ClaudeState, ClaudeWorkspaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The shortest time between two writes of one workspace's `status.claude`.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

fn state(s: approvals::ClaudeState) -> ClaudeState {
    match s {
        approvals::ClaudeState::Idle => ClaudeState::Idle,
        approvals::ClaudeState::Working => ClaudeState::Working,
        approvals::ClaudeState::AwaitingApproval => ClaudeState::AwaitingApproval,
    }
}

/// The status field for the agent's status. Cost is rounded to the cent's
/// hundredth, so float noise never makes a write.
pub fn summary(st: &ClaudeStatus) -> ClaudeWorkspaceStatus {
    ClaudeWorkspaceStatus {
        state: Some(state(st.state)),
        pending_approvals: st.pending_count,
        sessions_running: st.sessions.iter().filter(|s| s.running).count() as u32,
        last_turn_time: st
            .last_turn_time
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(Time),
        cost_usd: (st.cost_usd * 10_000.0).round() / 10_000.0,
        budget: st.budget.as_ref().map(|b| b.level.clone()),
    }
}

/// What to do with a new summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The same as what the status says: nothing.
    Skip,
    Now,
    /// Too soon after the last write: wait this long, then write the latest.
    After(Duration),
}

pub fn decide(
    written: Option<&ClaudeWorkspaceStatus>,
    next: &ClaudeWorkspaceStatus,
    last_write: Option<Instant>,
    now: Instant,
) -> Write {
    if written == Some(next) {
        return Write::Skip;
    }
    match last_write.map(|t| now.saturating_duration_since(t)) {
        Some(since) if since < MIN_WRITE_INTERVAL => Write::After(MIN_WRITE_INTERVAL - since),
        _ => Write::Now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_api::SessionId;
    use dispatch_api::approvals::{BudgetStatus, ClaudeSessionStatus};

    fn status(state: approvals::ClaudeState, pending: u32, cost: f64) -> ClaudeStatus {
        ClaudeStatus {
            version: 1,
            state,
            sessions: vec![ClaudeSessionStatus {
                id: SessionId::new("c1").unwrap(),
                title: "t".into(),
                running: true,
                state,
                turns: 1,
                last_turn_time: Some(1_000),
                cost_usd: cost,
                last_error: None,
            }],
            pending: vec![],
            pending_count: pending,
            resolved: vec![],
            last_turn_time: Some(1_796_558_400_000),
            cost_usd: cost,
            budget: Some(BudgetStatus {
                limit_usd: 1.0,
                spent_usd: 0.9,
                period_secs: 60,
                period_start: 0,
                level: "warning".into(),
            }),
        }
    }

    #[test]
    fn the_summary_names_what_kubectl_shows() {
        let s = summary(&status(
            approvals::ClaudeState::AwaitingApproval,
            2,
            0.123456789,
        ));
        assert_eq!(s.state, Some(ClaudeState::AwaitingApproval));
        assert_eq!((s.pending_approvals, s.sessions_running), (2, 1));
        assert_eq!(s.cost_usd, 0.1235);
        assert_eq!(s.budget.as_deref(), Some("warning"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "AwaitingApproval");
        assert_eq!(json["pendingApprovals"], 2);
        assert_eq!(json["costUSD"], 0.1235);
        assert_eq!(json["lastTurnTime"], "2026-12-06T12:00:00Z");
    }

    #[test]
    fn writes_only_changes_and_at_a_bounded_rate() {
        let t0 = Instant::now();
        let a = summary(&status(approvals::ClaudeState::Working, 0, 0.1));
        let b = summary(&status(approvals::ClaudeState::AwaitingApproval, 1, 0.1));
        assert_eq!(decide(None, &a, None, t0), Write::Now);
        assert_eq!(decide(Some(&a), &a, Some(t0), t0), Write::Skip);
        assert_eq!(
            decide(Some(&a), &b, Some(t0), t0 + Duration::from_millis(300)),
            Write::After(Duration::from_millis(700))
        );
        assert_eq!(
            decide(Some(&a), &b, Some(t0), t0 + MIN_WRITE_INTERVAL),
            Write::Now
        );
        // Float noise below a hundredth of a cent is no change.
        let c = summary(&status(approvals::ClaudeState::Working, 0, 0.100_000_01));
        assert_eq!(decide(Some(&a), &c, None, t0), Write::Skip);
    }
}
