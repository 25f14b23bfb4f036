//! What a notification says: the JSON the service worker receives
//! (decrypted) and shows. Pure; kept under the size one push message holds.

use serde::Serialize;

use super::ece::MAX_PLAINTEXT;

/// Something a user may be told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// Claude waits for a person to allow or deny a tool use.
    ApprovalNeeded {
        user: String,
        workspace: String,
        session: String,
        request_id: String,
        tool: String,
        /// The input, shortened, as one line or a few.
        summary: String,
        /// When the agent denies it unanswered (Unix ms), when known.
        auto_deny_at: Option<i64>,
    },
    /// A request was answered or withdrawn: its notification can go.
    ApprovalResolved {
        user: String,
        workspace: String,
        session: String,
        request_id: String,
        outcome: String,
    },
    TurnFinished {
        user: String,
        workspace: String,
        session: String,
        summary: String,
    },
    Error {
        user: String,
        workspace: String,
        session: Option<String>,
        message: String,
    },
    /// A request still waits shortly before it is denied (after which an
    /// idle workspace may be suspended).
    Reminder {
        user: String,
        workspace: String,
        session: String,
        request_id: String,
        tool: String,
        /// Unix ms.
        deny_at: i64,
    },
    /// `POST /api/push/test`.
    Test { user: String },
}

impl PushEvent {
    pub fn user(&self) -> &str {
        match self {
            PushEvent::ApprovalNeeded { user, .. }
            | PushEvent::ApprovalResolved { user, .. }
            | PushEvent::TurnFinished { user, .. }
            | PushEvent::Error { user, .. }
            | PushEvent::Reminder { user, .. }
            | PushEvent::Test { user } => user,
        }
    }

    /// Whether a browser with these prefs wants it.
    pub fn wanted_by(&self, prefs: &super::subscription::Prefs) -> bool {
        match self {
            PushEvent::ApprovalNeeded { .. }
            | PushEvent::ApprovalResolved { .. }
            | PushEvent::Reminder { .. } => prefs.approvals,
            PushEvent::TurnFinished { .. } => prefs.turn_finished,
            PushEvent::Error { .. } => prefs.errors,
            PushEvent::Test { .. } => true,
        }
    }

    /// Approvals go out at high urgency (a session is blocked).
    pub fn urgent(&self) -> bool {
        matches!(
            self,
            PushEvent::ApprovalNeeded { .. } | PushEvent::Reminder { .. }
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub action: &'static str,
    pub title: &'static str,
}

/// The decrypted payload. `tag` lets a later message (resolved) replace or
/// close the notification of the same request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub tag: String,
    /// Where a click on the notification itself leads.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Authorises the Allow / Deny actions (see `action_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub actions: Vec<Action>,
    /// Unix ms when the gateway sent it (for the latency figure).
    pub sent_at: i64,
}

/// The UI's hash route of the workspace (and session).
fn workspace_url(workspace: &str, session: Option<&str>) -> String {
    match session {
        Some(s) => format!("/#/w/{workspace}/s/{s}"),
        None => format!("/#/w/{workspace}"),
    }
}

fn tag(workspace: &str, session: &str, request_id: &str) -> String {
    format!("approval:{workspace}:{session}:{request_id}")
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn minutes_from(now: i64, at: i64) -> i64 {
    ((at - now).max(0) + 59_999) / 60_000
}

impl Payload {
    /// The payload for `ev`; `token` for approvals' actions.
    pub fn build(ev: &PushEvent, token: Option<String>, now: i64) -> Payload {
        let plain = |kind, title: String, body: String, tag: String, url: String| Payload {
            kind,
            title,
            body,
            tag,
            url,
            workspace: None,
            session: None,
            request_id: None,
            token: None,
            actions: vec![],
            sent_at: now,
        };
        match ev {
            PushEvent::ApprovalNeeded {
                workspace,
                session,
                request_id,
                tool,
                summary,
                auto_deny_at,
                ..
            } => {
                let mut body = summary.clone();
                if let Some(at) = auto_deny_at {
                    body.push_str(&format!(
                        "\nDenied automatically in {} min if unanswered.",
                        minutes_from(now, *at)
                    ));
                }
                Payload {
                    workspace: Some(workspace.clone()),
                    session: Some(session.clone()),
                    request_id: Some(request_id.clone()),
                    token,
                    actions: vec![
                        Action {
                            action: "allow",
                            title: "Allow",
                        },
                        Action {
                            action: "deny",
                            title: "Deny",
                        },
                    ],
                    ..plain(
                        "approval",
                        format!("{workspace}: Claude asks to use {tool}"),
                        body,
                        tag(workspace, session, request_id),
                        workspace_url(workspace, Some(session)),
                    )
                }
            }
            PushEvent::ApprovalResolved {
                workspace,
                session,
                request_id,
                outcome,
                ..
            } => Payload {
                workspace: Some(workspace.clone()),
                session: Some(session.clone()),
                request_id: Some(request_id.clone()),
                ..plain(
                    "resolved",
                    format!("{workspace}: {outcome}"),
                    String::new(),
                    tag(workspace, session, request_id),
                    workspace_url(workspace, Some(session)),
                )
            },
            PushEvent::TurnFinished {
                workspace,
                session,
                summary,
                ..
            } => Payload {
                workspace: Some(workspace.clone()),
                session: Some(session.clone()),
                ..plain(
                    "turn",
                    format!("{workspace}: Claude finished"),
                    summary.clone(),
                    format!("turn:{workspace}:{session}"),
                    workspace_url(workspace, Some(session)),
                )
            },
            PushEvent::Error {
                workspace,
                session,
                message,
                ..
            } => Payload {
                workspace: Some(workspace.clone()),
                session: session.clone(),
                ..plain(
                    "error",
                    format!("{workspace}: error"),
                    message.clone(),
                    format!("error:{workspace}"),
                    workspace_url(workspace, session.as_deref()),
                )
            },
            PushEvent::Reminder {
                workspace,
                session,
                request_id,
                tool,
                deny_at,
                ..
            } => Payload {
                workspace: Some(workspace.clone()),
                session: Some(session.clone()),
                request_id: Some(request_id.clone()),
                ..plain(
                    "reminder",
                    format!("{workspace}: still waiting for you"),
                    format!(
                        "Claude still asks to use {tool}: denied automatically in {} min \
                         if unanswered (an idle workspace may be suspended after).",
                        minutes_from(now, *deny_at)
                    ),
                    format!("reminder:{workspace}:{session}:{request_id}"),
                    workspace_url(workspace, Some(session)),
                )
            },
            PushEvent::Test { .. } => plain(
                "test",
                "Dispatch notifications work".into(),
                "This browser will be told when Claude needs you.".into(),
                "test".into(),
                "/".into(),
            ),
        }
    }

    /// The JSON, with the body shortened until it fits one push message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut p = self.clone();
        let mut limit = p.body.len();
        loop {
            let bytes = serde_json::to_vec(&p).unwrap_or_default();
            if bytes.len() <= MAX_PLAINTEXT || limit == 0 {
                return bytes;
            }
            limit = limit.saturating_sub((bytes.len() - MAX_PLAINTEXT).max(64));
            p.body = shorten(&self.body, limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::subscription::Prefs;

    fn approval(summary: &str) -> PushEvent {
        PushEvent::ApprovalNeeded {
            user: "alice".into(),
            workspace: "demo".into(),
            session: "s1".into(),
            request_id: "r1".into(),
            tool: "Bash".into(),
            summary: summary.into(),
            auto_deny_at: Some(10 * 60_000),
        }
    }

    #[test]
    fn an_approval_carries_allow_deny_the_token_and_the_auto_deny() {
        let p = Payload::build(&approval("rm -rf build"), Some("tok".into()), 0);
        let v: serde_json::Value = serde_json::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(v["kind"], "approval");
        assert_eq!(v["token"], "tok");
        assert_eq!(v["requestId"], "r1");
        assert_eq!(v["actions"][0]["action"], "allow");
        assert_eq!(v["actions"][1]["action"], "deny");
        assert_eq!(v["title"], "demo: Claude asks to use Bash");
        assert_eq!(v["url"], "/#/w/demo/s/s1");
        let body = v["body"].as_str().unwrap();
        assert!(body.starts_with("rm -rf build"), "{body}");
        assert!(body.contains("Denied automatically in 10 min"), "{body}");
    }

    #[test]
    fn huge_inputs_are_cut_to_fit_one_message() {
        let p = Payload::build(&approval(&"é".repeat(10_000)), Some("t".repeat(300)), 0);
        let bytes = p.to_bytes();
        assert!(bytes.len() <= MAX_PLAINTEXT, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["body"].as_str().unwrap().ends_with("..."));
    }

    #[test]
    fn prefs_choose_what_is_sent() {
        let only_approvals = Prefs::default();
        assert!(approval("x").wanted_by(&only_approvals));
        let turn = PushEvent::TurnFinished {
            user: "a".into(),
            workspace: "w".into(),
            session: "s".into(),
            summary: String::new(),
        };
        assert!(!turn.wanted_by(&only_approvals));
        assert!(turn.wanted_by(&Prefs {
            turn_finished: true,
            ..only_approvals
        }));
    }
}
