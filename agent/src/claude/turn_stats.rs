//! What one session's events say about its turns, for watchers (the
//! gateway's inbox, the operator's status) that must not read the events:
//! turns finished, when the last one did, what the CLI says it cost, the
//! last error, and the requests resolved lately.

use std::collections::VecDeque;

use dispatch_api::protocol::ClaudeEvent;
use serde_json::Value;

/// Resolutions kept per session for watchers that polled late.
pub const RESOLVED_KEPT: usize = 32;

/// A resolution as kept: request id, tool, allowed, reason, Unix ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub request_id: String,
    pub tool: String,
    pub allowed: bool,
    pub reason: String,
    pub at: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TurnStats {
    pub turns: u64,
    pub last_turn_time: Option<i64>,
    /// The CLI's running total for this process (`total_cost_usd` of the
    /// last result).
    pub cost_usd: f64,
    pub last_error: Option<String>,
    pub resolved: VecDeque<Resolution>,
}

/// Longest error text kept.
const MAX_ERROR: usize = 500;

impl TurnStats {
    /// A `result` event ended a turn; returns what the turn added to the
    /// cost (the CLI reports a running total per process).
    pub fn on_result(&mut self, raw: &Value, now_ms: i64) -> f64 {
        self.turns += 1;
        self.last_turn_time = Some(now_ms);
        let before = self.cost_usd;
        if let Some(total) = raw.get("total_cost_usd").and_then(Value::as_f64)
            && total.is_finite()
            && total >= before
        {
            self.cost_usd = total;
        }
        self.last_error = if raw.get("is_error").and_then(Value::as_bool) == Some(true) {
            let text = raw
                .get("result")
                .and_then(Value::as_str)
                .or_else(|| raw.get("subtype").and_then(Value::as_str))
                .unwrap_or("the turn ended in an error");
            Some(text.chars().take(MAX_ERROR).collect())
        } else {
            None
        };
        self.cost_usd - before
    }

    /// Takes in one event of the session's log. `Some(cost added)` when it
    /// changed what watchers see (a request raised or settled, a turn over).
    pub fn observe(&mut self, ev: &ClaudeEvent, now_ms: i64) -> Option<f64> {
        match (ev.kind.as_str(), ev.subtype.as_deref()) {
            ("result", _) => Some(self.on_result(&ev.raw, now_ms)),
            ("control_request", Some("can_use_tool")) | ("control_cancel_request", _) => Some(0.0),
            ("dispatch", Some("permission_resolved")) => {
                let text = |k: &str| {
                    ev.raw
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                self.on_resolved(Resolution {
                    request_id: text("request_id"),
                    tool: text("tool_name"),
                    allowed: ev.raw.get("allowed").and_then(Value::as_bool) == Some(true),
                    reason: text("reason"),
                    at: now_ms,
                });
                Some(0.0)
            }
            _ => None,
        }
    }

    pub fn on_resolved(&mut self, r: Resolution) {
        if self.resolved.len() == RESOLVED_KEPT {
            self.resolved.pop_front();
        }
        self.resolved.push_back(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_count_turns_and_the_running_cost() {
        let mut s = TurnStats::default();
        let added = s.on_result(&json!({"type":"result","total_cost_usd":0.25}), 10);
        assert_eq!((s.turns, s.last_turn_time, added), (1, Some(10), 0.25));
        let added = s.on_result(&json!({"type":"result","total_cost_usd":0.75}), 20);
        assert_eq!((s.turns, s.cost_usd, added), (2, 0.75, 0.5));
        assert_eq!(s.last_error, None);
        // Nonsense totals change nothing.
        for bad in [json!("x"), json!(-1.0), json!(0.1)] {
            let added = s.on_result(&json!({"type":"result","total_cost_usd":bad}), 30);
            assert_eq!((s.cost_usd, added), (0.75, 0.0));
        }
        s.on_result(
            &json!({"type":"result","is_error":true,"result":"API Error: 529"}),
            40,
        );
        assert_eq!(s.last_error.as_deref(), Some("API Error: 529"));
        s.on_result(&json!({"type":"result","is_error":false}), 50);
        assert_eq!(s.last_error, None);
    }

    fn ev(raw: Value) -> ClaudeEvent {
        crate::claude::framing::envelope(raw, 0)
    }

    #[test]
    fn only_what_watchers_see_counts_as_a_change() {
        let mut s = TurnStats::default();
        let ask = json!({"type":"control_request","request_id":"r1",
                         "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{}}});
        assert_eq!(s.observe(&ev(ask), 1), Some(0.0));
        let delta = json!({"type":"stream_event","event":{"type":"content_block_delta"}});
        assert_eq!(s.observe(&ev(delta), 2), None);
        let settled = json!({"type":"dispatch","subtype":"permission_resolved","request_id":"r1",
                             "tool_name":"Bash","allowed":false,"reason":"timeout"});
        assert_eq!(s.observe(&ev(settled), 3), Some(0.0));
        assert_eq!(
            s.resolved.back(),
            Some(&Resolution {
                request_id: "r1".into(),
                tool: "Bash".into(),
                allowed: false,
                reason: "timeout".into(),
                at: 3
            })
        );
        let result = json!({"type":"result","total_cost_usd":0.5});
        assert_eq!(s.observe(&ev(result), 4), Some(0.5));
    }

    #[test]
    fn resolutions_are_bounded() {
        let mut s = TurnStats::default();
        for i in 0..(RESOLVED_KEPT + 5) {
            s.on_resolved(Resolution {
                request_id: format!("r{i}"),
                tool: "Bash".into(),
                allowed: true,
                reason: "answered".into(),
                at: i as i64,
            });
        }
        assert_eq!(s.resolved.len(), RESOLVED_KEPT);
        assert_eq!(s.resolved.front().unwrap().request_id, "r5");
    }
}
