//! Permission prompts as a pure state machine.
//!
//! The CLI asks (`control_request` / `can_use_tool`); the request is pending
//! until the first answer from any attached client, the CLI withdrawing it
//! (`control_cancel_request`), or the timeout (which denies). "Remember"
//! allows that tool for the rest of the session: later requests for it are
//! answered at once without asking. Time comes in as an argument, so the
//! tests drive it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A client's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub allow: bool,
    /// Replacement tool input when allowing.
    pub updated_input: Option<Value>,
    /// Why, when denying; the model sees it.
    pub message: Option<String>,
    pub remember: bool,
}

/// How a request ended, for `claude.permission.resolved` and the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub request_id: String,
    pub tool_name: String,
    pub allowed: bool,
    /// `answered`, `remembered`, `timeout`, `cancelled`.
    pub reason: String,
}

/// A line to write to the CLI's stdin, and what it settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub response: Value,
    pub resolved: Resolved,
}

/// What to do with a new request.
#[derive(Debug, Clone, PartialEq)]
pub enum OnRequest {
    /// Show it to the clients and wait for an answer.
    Ask,
    /// Already allowed for this session: answer at once.
    Auto(Outcome),
}

#[derive(Debug, Clone)]
struct Pending {
    tool_name: String,
    input: Value,
    raised: Instant,
    deadline: Instant,
}

/// A pending request as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingView<'a> {
    pub request_id: &'a str,
    pub tool_name: &'a str,
    pub input: &'a Value,
    pub raised: Instant,
    pub deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no pending permission request with that id (unknown, or already resolved)")]
pub struct NoSuchRequest;

#[derive(Debug)]
pub struct Broker {
    timeout: Duration,
    pending: BTreeMap<String, Pending>,
    remembered: BTreeSet<String>,
}

/// The `control_response` the CLI expects for a `can_use_tool` request.
pub fn permission_response(request_id: &str, allow: bool, input: &Value, message: &str) -> Value {
    let inner = if allow {
        json!({"behavior": "allow", "updatedInput": input})
    } else {
        json!({"behavior": "deny", "message": message})
    };
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": inner}
    })
}

impl Broker {
    pub fn new(timeout: Duration) -> Self {
        Broker {
            timeout,
            pending: BTreeMap::new(),
            remembered: BTreeSet::new(),
        }
    }

    pub fn on_request(
        &mut self,
        request_id: &str,
        tool_name: &str,
        input: Value,
        now: Instant,
    ) -> OnRequest {
        if self.remembered.contains(tool_name) {
            return OnRequest::Auto(Outcome {
                response: permission_response(request_id, true, &input, ""),
                resolved: Resolved {
                    request_id: request_id.to_owned(),
                    tool_name: tool_name.to_owned(),
                    allowed: true,
                    reason: "remembered".into(),
                },
            });
        }
        self.pending.insert(
            request_id.to_owned(),
            Pending {
                tool_name: tool_name.to_owned(),
                input,
                raised: now,
                deadline: now + self.timeout,
            },
        );
        OnRequest::Ask
    }

    /// The first answer wins; a later one finds nothing pending.
    pub fn answer(&mut self, request_id: &str, a: Answer) -> Result<Outcome, NoSuchRequest> {
        let p = self.pending.remove(request_id).ok_or(NoSuchRequest)?;
        if a.allow && a.remember {
            self.remembered.insert(p.tool_name.clone());
        }
        let input = a.updated_input.unwrap_or(p.input);
        let message = a
            .message
            .unwrap_or_else(|| "The user denied this tool use.".to_owned());
        Ok(Outcome {
            response: permission_response(request_id, a.allow, &input, &message),
            resolved: Resolved {
                request_id: request_id.to_owned(),
                tool_name: p.tool_name,
                allowed: a.allow,
                reason: "answered".into(),
            },
        })
    }

    /// The CLI withdrew the request: nothing to write back.
    pub fn cancel(&mut self, request_id: &str) -> Option<Resolved> {
        self.pending.remove(request_id).map(|p| Resolved {
            request_id: request_id.to_owned(),
            tool_name: p.tool_name,
            allowed: false,
            reason: "cancelled".into(),
        })
    }

    /// Denies every request whose time is up.
    pub fn expire(&mut self, now: Instant) -> Vec<Outcome> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| {
                let p = self.pending.remove(&id)?;
                let secs = self.timeout.as_secs();
                Some(Outcome {
                    response: permission_response(
                        &id,
                        false,
                        &p.input,
                        &format!("Nobody answered the permission prompt within {secs} s, so it was denied."),
                    ),
                    resolved: Resolved {
                        request_id: id,
                        tool_name: p.tool_name,
                        allowed: false,
                        reason: "timeout".into(),
                    },
                })
            })
            .collect()
    }

    /// When the next request times out, if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Every pending request, oldest first.
    pub fn pending(&self) -> Vec<PendingView<'_>> {
        let mut v: Vec<PendingView<'_>> = self
            .pending
            .iter()
            .map(|(id, p)| PendingView {
                request_id: id,
                tool_name: &p.tool_name,
                input: &p.input,
                raised: p.raised,
                deadline: p.deadline,
            })
            .collect();
        v.sort_by_key(|p| p.raised);
        v
    }

    #[cfg(test)]
    pub fn is_pending(&self, request_id: &str) -> bool {
        self.pending.contains_key(request_id)
    }

    /// The CLI is gone: nothing pending can be answered any more.
    pub fn drain(&mut self) -> Vec<Resolved> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(id, p)| Resolved {
                request_id: id,
                tool_name: p.tool_name,
                allowed: false,
                reason: "cancelled".into(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Answer {
        Answer {
            allow: true,
            updated_input: None,
            message: None,
            remember: false,
        }
    }

    #[test]
    fn first_answer_wins_and_becomes_the_control_response() {
        let t0 = Instant::now();
        let mut b = Broker::new(Duration::from_secs(60));
        let input = json!({"command": "touch x"});
        assert_eq!(
            b.on_request("r1", "Bash", input.clone(), t0),
            OnRequest::Ask
        );
        let edited = json!({"command": "touch y"});
        let out = b
            .answer(
                "r1",
                Answer {
                    updated_input: Some(edited.clone()),
                    ..allow()
                },
            )
            .unwrap();
        assert_eq!(
            out.response,
            json!({"type":"control_response","response":{"subtype":"success","request_id":"r1",
                   "response":{"behavior":"allow","updatedInput":edited}}})
        );
        assert!(out.resolved.allowed);
        assert_eq!(out.resolved.reason, "answered");
        // The second client is too late.
        assert_eq!(b.answer("r1", allow()), Err(NoSuchRequest));
        assert_eq!(b.answer("nope", allow()), Err(NoSuchRequest));
    }

    #[test]
    fn deny_carries_the_message_and_allow_defaults_to_the_original_input() {
        let t0 = Instant::now();
        let mut b = Broker::new(Duration::from_secs(60));
        b.on_request("r1", "Bash", json!({"command": "rm -rf /"}), t0);
        let out = b
            .answer(
                "r1",
                Answer {
                    allow: false,
                    updated_input: None,
                    message: Some("not that".into()),
                    remember: true,
                },
            )
            .unwrap();
        assert_eq!(out.response["response"]["response"]["behavior"], "deny");
        assert_eq!(out.response["response"]["response"]["message"], "not that");
        // Remember on a denial does not allow anything later.
        assert_eq!(b.on_request("r2", "Bash", json!({}), t0), OnRequest::Ask);
        let out = b.answer("r2", allow()).unwrap();
        assert_eq!(
            out.response["response"]["response"]["updatedInput"],
            json!({})
        );
    }

    #[test]
    fn remember_allows_that_tool_for_the_rest_of_the_session() {
        let t0 = Instant::now();
        let mut b = Broker::new(Duration::from_secs(60));
        b.on_request("r1", "Bash", json!({}), t0);
        b.answer(
            "r1",
            Answer {
                remember: true,
                ..allow()
            },
        )
        .unwrap();
        match b.on_request("r2", "Bash", json!({"command": "ls"}), t0) {
            OnRequest::Auto(o) => {
                assert_eq!(o.resolved.reason, "remembered");
                assert_eq!(
                    o.response["response"]["response"]["updatedInput"]["command"],
                    "ls"
                );
            }
            other => panic!("expected an automatic answer, got {other:?}"),
        }
        assert!(!b.is_pending("r2"));
        // Another tool still asks.
        assert_eq!(b.on_request("r3", "Write", json!({}), t0), OnRequest::Ask);
    }

    #[test]
    fn cancel_withdraws_and_timeout_denies() {
        let t0 = Instant::now();
        let mut b = Broker::new(Duration::from_secs(30));
        b.on_request("r1", "Bash", json!({}), t0);
        b.on_request("r2", "Bash", json!({}), t0 + Duration::from_secs(10));
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_secs(30)));
        let listed: Vec<(&str, Instant)> = b
            .pending()
            .iter()
            .map(|p| (p.request_id, p.raised))
            .collect();
        assert_eq!(
            listed,
            vec![("r1", t0), ("r2", t0 + Duration::from_secs(10))]
        );
        let c = b.cancel("r1").unwrap();
        assert_eq!((c.allowed, c.reason.as_str()), (false, "cancelled"));
        assert_eq!(b.cancel("r1"), None);
        assert!(b.expire(t0 + Duration::from_secs(39)).is_empty());
        let out = b.expire(t0 + Duration::from_secs(40));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].resolved.reason, "timeout");
        assert_eq!(out[0].response["response"]["response"]["behavior"], "deny");
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.answer("r2", allow()), Err(NoSuchRequest));
    }

    #[test]
    fn drain_settles_everything_pending() {
        let t0 = Instant::now();
        let mut b = Broker::new(Duration::from_secs(30));
        b.on_request("a", "Bash", json!({}), t0);
        b.on_request("b", "Edit", json!({}), t0);
        let d = b.drain();
        assert_eq!(d.len(), 2);
        assert!(b.next_deadline().is_none());
    }
}
