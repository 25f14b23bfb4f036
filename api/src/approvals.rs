//! Claude's state and pending permission requests, as one agent reports them
//! (`GET /claude/status` on the agent) and as the gateway aggregates them
//! across a user's workspaces (`GET /api/approvals`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::session::SessionId;

/// Longest reason a person can give with a denial (the model reads it).
pub const MAX_DENY_MESSAGE: usize = 2000;
/// Most pending requests one agent lists; more are counted, not listed.
pub const MAX_PENDING_LISTED: usize = 100;

/// What a Claude session is doing, from a person's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ClaudeState {
    /// No turn running, nothing waiting.
    Idle,
    /// A turn is running.
    Working,
    /// A permission request waits for a person.
    AwaitingApproval,
}

impl ClaudeState {
    /// The state of a workspace is the most urgent of its sessions'.
    pub fn most_urgent(states: impl IntoIterator<Item = ClaudeState>) -> ClaudeState {
        states.into_iter().max().unwrap_or(ClaudeState::Idle)
    }
}

/// One permission request that waits for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub session: SessionId,
    pub request_id: String,
    pub tool: String,
    /// The tool's input as the CLI gave it.
    #[cfg_attr(test, ts(type = "unknown"))]
    pub input: Value,
    /// The CLI's own description of the request, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unix time in milliseconds when it was raised.
    pub raised: i64,
    /// Unix time in milliseconds when it is denied unless answered.
    pub deadline: i64,
}

/// How a request ended (kept a while so a watcher that polled late learns it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ResolvedApproval {
    pub session: SessionId,
    pub request_id: String,
    pub tool: String,
    pub allowed: bool,
    /// `answered`, `remembered`, `timeout`, `cancelled`.
    pub reason: String,
    /// Unix time in milliseconds.
    pub at: i64,
}

/// One Claude session's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ClaudeSessionStatus {
    pub id: SessionId,
    pub title: String,
    pub running: bool,
    pub state: ClaudeState,
    /// Turns finished since the session started.
    pub turns: u64,
    /// Unix time in milliseconds when the last turn finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn_time: Option<i64>,
    /// What the CLI reported the session cost, in US dollars.
    pub cost_usd: f64,
    /// The last turn's error text, if it ended in an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A budget for Claude's cost in one workspace over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    pub limit_usd: f64,
    /// Spent in the current period.
    pub spent_usd: f64,
    pub period_secs: u64,
    /// Unix time in milliseconds when the current period began.
    pub period_start: i64,
    /// `ok`, `warning` (80 % or more) or `exhausted` (new turns refused).
    pub level: String,
}

/// `GET /claude/status` on the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ClaudeStatus {
    /// Grows whenever anything here changes; `?since=<version>` waits for a
    /// newer one.
    pub version: u64,
    pub state: ClaudeState,
    pub sessions: Vec<ClaudeSessionStatus>,
    /// At most [`MAX_PENDING_LISTED`], oldest first.
    pub pending: Vec<PendingApproval>,
    /// How many are pending in all.
    pub pending_count: u32,
    /// Recently resolved requests, newest last.
    pub resolved: Vec<ResolvedApproval>,
    /// Unix time in milliseconds of the last finished turn in any session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn_time: Option<i64>,
    pub cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
}

/// A person's answer to one request (agent and gateway alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalAnswer {
    pub allow: bool,
    /// Why, when denying; the model reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Allow this tool for the rest of the session ("Always").
    #[serde(default)]
    pub remember: bool,
}

impl ApprovalAnswer {
    /// What is wrong with the answer, if anything.
    pub fn check(&self) -> Result<(), String> {
        match &self.message {
            Some(m) if m.chars().count() > MAX_DENY_MESSAGE => Err(format!(
                "message is longer than {MAX_DENY_MESSAGE} characters"
            )),
            _ => Ok(()),
        }
    }
}

/// One workspace's Claude state in `GET /api/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceClaude {
    pub workspace: String,
    pub status: ClaudeStatus,
}

/// `GET /api/approvals`: the caller's workspaces whose agents run, with
/// their pending requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Inbox {
    pub workspaces: Vec<WorkspaceClaude>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_state_wins() {
        use ClaudeState::*;
        assert_eq!(ClaudeState::most_urgent([]), Idle);
        assert_eq!(ClaudeState::most_urgent([Idle, Working]), Working);
        assert_eq!(
            ClaudeState::most_urgent([Working, AwaitingApproval, Idle]),
            AwaitingApproval
        );
    }

    #[test]
    fn answers_are_checked() {
        let a: ApprovalAnswer = serde_json::from_str(r#"{"allow":false,"message":"no"}"#).unwrap();
        assert!(a.check().is_ok());
        assert!(!a.remember);
        let long = ApprovalAnswer {
            allow: false,
            message: Some("x".repeat(MAX_DENY_MESSAGE + 1)),
            remember: false,
        };
        assert!(long.check().is_err());
        assert!(serde_json::from_str::<ApprovalAnswer>(r#"{"allow":true,"x":1}"#).is_err());
        assert!(serde_json::from_str::<ApprovalAnswer>(r#"{}"#).is_err());
    }
}
