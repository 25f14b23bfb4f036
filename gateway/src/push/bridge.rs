//! Web Push hooked to the approvals module: its events become
//! notifications (and, for each request still waiting near its deadline, a
//! reminder), and the notification buttons answer through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dispatch_api::SessionId;
use dispatch_api::approvals::{ApprovalAnswer, PendingApproval};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::message::PushEvent;
use super::{AnswerError, Answerer, Push};
use crate::approvals::{self, ApprovalEvent, Approvals};
use crate::auth::now_ms;

/// Reminder timers at once (one per waiting request); more wait unreminded.
const MAX_REMINDERS: usize = 4096;
/// Longest one-line summary of a tool's input in a notification.
const SUMMARY_LEN: usize = 600;

pub struct ApprovalsAnswerer(pub Arc<Approvals>);

#[async_trait]
impl Answerer for ApprovalsAnswerer {
    async fn answer(
        &self,
        user: &str,
        workspace: &str,
        session: &str,
        request_id: &str,
        allow: bool,
        reason: Option<String>,
    ) -> Result<(), AnswerError> {
        let session = SessionId::new(session).map_err(|_| AnswerError::NotPending)?;
        let answer = ApprovalAnswer {
            allow,
            message: reason,
            remember: false,
        };
        self.0
            .answer(user, workspace, &session, request_id, &answer)
            .await
            .map_err(|e| match e {
                approvals::AnswerError::NoSuchRequest(_) | approvals::AnswerError::Invalid(_) => {
                    AnswerError::NotPending
                }
                approvals::AnswerError::Unavailable(m) => AnswerError::Unavailable(m),
            })
    }
}

/// What a person needs to decide, in a line or a few: the command, the
/// file, or the input as compact JSON; the CLI's description first.
pub fn summary(req: &PendingApproval) -> String {
    let input = &req.input;
    let main = ["command", "file_path", "path", "url", "pattern", "query"]
        .iter()
        .find_map(|k| input.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        .unwrap_or_else(|| input.to_string());
    let text = match &req.description {
        Some(d) if !d.is_empty() && d != &main => format!("{d}\n{main}"),
        _ => main,
    };
    if text.len() <= SUMMARY_LEN {
        return text;
    }
    let mut end = SUMMARY_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The notification for an approvals event (None: nothing to tell).
pub fn to_push(ev: &ApprovalEvent) -> Option<PushEvent> {
    Some(match ev {
        ApprovalEvent::Raised {
            owner,
            workspace,
            request,
        } => PushEvent::ApprovalNeeded {
            user: owner.clone(),
            workspace: workspace.clone(),
            session: request.session.as_str().to_owned(),
            request_id: request.request_id.clone(),
            tool: request.tool.clone(),
            summary: summary(request),
            auto_deny_at: Some(request.deadline),
        },
        ApprovalEvent::Resolved {
            owner,
            workspace,
            session,
            request_id,
            tool,
            allowed,
            reason,
        } => PushEvent::ApprovalResolved {
            user: owner.clone(),
            workspace: workspace.clone(),
            session: session.as_str().to_owned(),
            request_id: request_id.clone(),
            outcome: match (allowed, reason.as_str()) {
                (_, "timeout") => format!("{tool}: denied, no answer in time"),
                (true, _) => format!("{tool}: allowed"),
                (false, "cancelled") => format!("{tool}: withdrawn"),
                (false, "agent stopped") => format!("{tool}: the workspace stopped"),
                (false, _) => format!("{tool}: denied"),
            },
        },
        ApprovalEvent::TurnFinished {
            owner,
            workspace,
            session,
            title,
            cost_usd,
        } => PushEvent::TurnFinished {
            user: owner.clone(),
            workspace: workspace.clone(),
            session: session.as_str().to_owned(),
            summary: if *cost_usd > 0.0 {
                format!("{title} (${cost_usd:.2})")
            } else {
                title.clone()
            },
        },
        ApprovalEvent::Error {
            owner,
            workspace,
            session,
            title,
            message,
        } => PushEvent::Error {
            user: owner.clone(),
            workspace: workspace.clone(),
            session: Some(session.as_str().to_owned()),
            message: if title.is_empty() {
                message.clone()
            } else {
                format!("{title}: {message}")
            },
        },
        ApprovalEvent::Changed { .. } => return None,
    })
}

/// (owner, workspace, session, request id)
type ReqKey = (String, String, String, String);

/// Timers that remind a person of a request shortly before it is denied
/// (and the workspace may be suspended for idleness after).
struct Reminders {
    lead: Duration,
    timers: Mutex<HashMap<ReqKey, tokio::task::AbortHandle>>,
}

impl Reminders {
    fn cancel(&self, key: &ReqKey) {
        if let Some(t) = self
            .timers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
        {
            t.abort();
        }
    }

    fn arm(
        self: &Arc<Self>,
        push: &Arc<Push>,
        approvals: &Arc<Approvals>,
        owner: &str,
        workspace: &str,
        req: &PendingApproval,
    ) {
        if self.lead.is_zero() {
            return;
        }
        let key: ReqKey = (
            owner.to_owned(),
            workspace.to_owned(),
            req.session.as_str().to_owned(),
            req.request_id.clone(),
        );
        let at = req.deadline - self.lead.as_millis() as i64;
        // A request raised with less than the lead left gets no reminder:
        // its first notification says when it is denied.
        let wait = at - now_ms();
        if wait <= 0 {
            return;
        }
        let mut timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        if timers.contains_key(&key) || timers.len() >= MAX_REMINDERS {
            return;
        }
        let (me, push, approvals, req, k) = (
            self.clone(),
            push.clone(),
            approvals.clone(),
            req.clone(),
            key.clone(),
        );
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            me.timers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
            let (owner, workspace, _, _) = &k;
            if approvals
                .pending(owner, workspace, &req.session, &req.request_id)
                .is_none()
            {
                return;
            }
            push.notify(&PushEvent::Reminder {
                user: owner.clone(),
                workspace: workspace.clone(),
                session: req.session.as_str().to_owned(),
                request_id: req.request_id.clone(),
                tool: req.tool.clone(),
                deny_at: req.deadline,
            })
            .await;
        });
        timers.insert(key, task.abort_handle());
    }
}

/// Turns approvals events into pushes until `shutdown`.
pub async fn run(
    push: Arc<Push>,
    approvals: Arc<Approvals>,
    reminder_lead: Duration,
    shutdown: CancellationToken,
) {
    push.set_answerer(Arc::new(ApprovalsAnswerer(approvals.clone())));
    let reminders = Arc::new(Reminders {
        lead: reminder_lead,
        timers: Mutex::new(HashMap::new()),
    });
    let mut rx = approvals.subscribe();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => ev,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("push: {n} approval events missed (the sender was too slow)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match &ev {
            ApprovalEvent::Raised {
                owner,
                workspace,
                request,
            } => reminders.arm(&push, &approvals, owner, workspace, request),
            ApprovalEvent::Resolved {
                owner,
                workspace,
                session,
                request_id,
                ..
            } => reminders.cancel(&(
                owner.clone(),
                workspace.clone(),
                session.as_str().to_owned(),
                request_id.clone(),
            )),
            _ => {}
        }
        if let Some(p) = to_push(&ev) {
            push.spawn_notify(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(input: serde_json::Value, description: Option<&str>) -> PendingApproval {
        PendingApproval {
            session: SessionId::new("s1").unwrap(),
            request_id: "r1".into(),
            tool: "Bash".into(),
            input,
            description: description.map(str::to_owned),
            raised: 0,
            deadline: 600_000,
        }
    }

    #[test]
    fn summaries_show_what_is_asked() {
        let r = req(serde_json::json!({"command": "ls -la"}), Some("List files"));
        assert_eq!(summary(&r), "List files\nls -la");
        let r = req(
            serde_json::json!({"file_path": "/w/a.rs", "old_string": "x"}),
            None,
        );
        assert_eq!(summary(&r), "/w/a.rs");
        let r = req(serde_json::json!({"n": 1}), None);
        assert_eq!(summary(&r), r#"{"n":1}"#);
        let r = req(serde_json::json!({"command": "é".repeat(1000)}), None);
        assert!(summary(&r).len() <= SUMMARY_LEN + 3);
    }

    #[test]
    fn events_map_to_notifications() {
        let raised = ApprovalEvent::Raised {
            owner: "me".into(),
            workspace: "demo".into(),
            request: req(serde_json::json!({"command": "ls"}), None),
        };
        match to_push(&raised).unwrap() {
            PushEvent::ApprovalNeeded {
                auto_deny_at,
                summary,
                ..
            } => {
                assert_eq!(auto_deny_at, Some(600_000));
                assert_eq!(summary, "ls");
            }
            other => panic!("{other:?}"),
        }
        let timeout = ApprovalEvent::Resolved {
            owner: "me".into(),
            workspace: "demo".into(),
            session: SessionId::new("s1").unwrap(),
            request_id: "r1".into(),
            tool: "Bash".into(),
            allowed: false,
            reason: "timeout".into(),
        };
        match to_push(&timeout).unwrap() {
            PushEvent::ApprovalResolved { outcome, .. } => {
                assert_eq!(outcome, "Bash: denied, no answer in time")
            }
            other => panic!("{other:?}"),
        }
        let changed = ApprovalEvent::Changed {
            owner: "me".into(),
            workspace: "demo".into(),
            status: None,
        };
        assert_eq!(to_push(&changed), None);
    }
}
