//! JSON control messages on the WebSocket between a client and an agent.
//!
//! Each text frame is one object whose `type` names the message. Terminal
//! output never travels here: it goes in binary frames (see [`crate::frame`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::session::{SessionId, SessionInfo};

// One type for the wire protocol, the agent's flag and the Workspace
// resource (whose schema takes the doc comment below as its description).
/// How Claude Code asks before using tools (its --permission-mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum PermissionMode {
    /// Ask for every tool that needs permission (the CLI calls it Manual).
    #[serde(alias = "manual")]
    Default,
    /// Accept file edits without asking.
    AcceptEdits,
    /// Plan only; change nothing.
    Plan,
    /// A classifier model approves or refuses in place of a person.
    Auto,
    /// Never ask: anything not allowed beforehand is refused (unattended runs).
    DontAsk,
    /// Never ask, allow everything.
    BypassPermissions,
}

impl PermissionMode {
    pub const ALL: [PermissionMode; 6] = [
        PermissionMode::Default,
        PermissionMode::AcceptEdits,
        PermissionMode::Plan,
        PermissionMode::Auto,
        PermissionMode::DontAsk,
        PermissionMode::BypassPermissions,
    ];

    /// The CLI's spelling.
    pub fn as_cli_arg(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::Auto => "auto",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

/// Messages from a client (browser, CLI, test) to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
// Fields serde fills in when absent may be left out by a client.
#[cfg_attr(test, ts(optional_fields))]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Start a shell in a PTY. The reply is `session.created`, then output frames.
    #[serde(rename = "terminal.start")]
    TerminalStart {
        /// Working directory relative to the workspace root (default: the root).
        #[serde(default)]
        workspace_path: Option<String>,
        /// Program to run (default: the user's shell).
        #[serde(default)]
        shell: Option<String>,
        #[serde(default)]
        env: Option<BTreeMap<String, String>>,
        cols: u16,
        rows: u16,
        #[serde(default)]
        title: Option<String>,
        /// Chosen by the client, echoed in the reply to this request only
        /// (`session.created` or `error`), so a client can tell its reply
        /// from other clients' sessions announced meanwhile.
        #[serde(default)]
        client_ref: Option<String>,
    },
    /// Keystrokes as text. Binary `input` frames carry the same without JSON.
    #[serde(rename = "terminal.write")]
    TerminalWrite { id: SessionId, data: String },
    #[serde(rename = "terminal.resize")]
    TerminalResize { id: SessionId, cols: u16, rows: u16 },
    #[serde(rename = "claude.start")]
    ClaudeStart {
        /// Claude Code session id of a past conversation to continue.
        #[serde(default)]
        resume: Option<String>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        permission_mode: Option<PermissionMode>,
        #[serde(default)]
        workspace_path: Option<String>,
        /// As in `terminal.start`.
        #[serde(default)]
        client_ref: Option<String>,
    },
    #[serde(rename = "claude.send")]
    ClaudeSend { id: SessionId, input: String },
    /// Answer a permission request. The first answer wins.
    #[serde(rename = "claude.permission")]
    ClaudePermission {
        id: SessionId,
        request_id: String,
        allow: bool,
        /// Replacement tool input when allowing (edited by the user).
        #[serde(default)]
        #[cfg_attr(test, ts(optional, type = "unknown"))]
        updated_input: Option<serde_json::Value>,
        /// Why, when denying; shown to the model.
        #[serde(default)]
        message: Option<String>,
        /// Allow this tool for the rest of the session without asking.
        #[serde(default)]
        #[cfg_attr(test, ts(as = "Option<bool>", optional))]
        remember: bool,
    },
    /// Stop the running Claude turn, keeping the session.
    #[serde(rename = "claude.interrupt")]
    ClaudeInterrupt { id: SessionId },
    /// List past Claude conversations in this workspace.
    #[serde(rename = "claude.history")]
    ClaudeHistory {},
    /// Replay a past conversation's messages into the client.
    #[serde(rename = "claude.load")]
    ClaudeLoad { conversation_id: String },
    /// Receive a session's output. Without `since`, a terminal sends its current
    /// screen as a snapshot frame; with it, exactly the bytes from that offset.
    #[serde(rename = "session.attach")]
    SessionAttach {
        id: SessionId,
        #[serde(default)]
        since: Option<u64>,
    },
    #[serde(rename = "session.detach")]
    SessionDetach { id: SessionId },
    /// End the session's whole process group.
    #[serde(rename = "session.stop")]
    SessionStop { id: SessionId },
    #[serde(rename = "session.list")]
    SessionList {},
    /// Read earlier output of a terminal, `[from, to)`, for scrolling back
    /// past what the client keeps. The reply is `session.range` and one
    /// range frame (kind 4); at most [`MAX_READ_BYTES`] per request.
    #[serde(rename = "session.read")]
    SessionRead { id: SessionId, from: u64, to: u64 },
    /// Give a session a name of the user's choosing (a tab's title); every
    /// client hears `session.renamed`.
    #[serde(rename = "session.rename")]
    SessionRename { id: SessionId, title: String },
    /// Change a running Claude session's permission mode and/or model.
    #[serde(rename = "claude.configure")]
    ClaudeConfigure {
        id: SessionId,
        #[serde(default)]
        permission_mode: Option<PermissionMode>,
        #[serde(default)]
        model: Option<String>,
    },
}

/// Every `type` a client may send, for telling "unknown type" from "bad shape".
pub const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "terminal.start",
    "terminal.write",
    "terminal.resize",
    "claude.start",
    "claude.send",
    "claude.permission",
    "claude.interrupt",
    "claude.history",
    "claude.load",
    "session.attach",
    "session.detach",
    "session.stop",
    "session.list",
    "session.read",
    "session.rename",
    "claude.configure",
];

/// Most bytes one `session.read` returns; a longer range is cut to this.
pub const MAX_READ_BYTES: u64 = 256 * 1024;

/// Longest `clientRef` accepted (it is echoed back).
pub const MAX_CLIENT_REF: usize = 128;

/// Longest `message` in an `error` reply. Error texts quote what the client
/// sent (a `type`, a serde complaint about a value); a client must not get a
/// 900 KiB message echoed back, nor have it stored.
pub const MAX_ERROR_MESSAGE: usize = 512;

/// Longest `type` quoted in an `unknown_type` error.
const MAX_QUOTED_TYPE: usize = 64;

/// `s` cut to at most `max` bytes on a character boundary, with "…" when cut.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}

/// The `id` an error may echo: only one short enough to be a session id.
fn echoable_id(id: Option<String>) -> Option<String> {
    id.filter(|i| i.len() <= crate::session::MAX_SESSION_ID_LEN)
}

/// Why a text frame was not a message; becomes an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: ErrorCode,
    pub message: String,
    /// The session the message named, when that much could be read.
    pub id: Option<String>,
    /// The message's `clientRef`, when that much could be read.
    pub client_ref: Option<String>,
}

impl ClientMessage {
    /// Parses one text frame, telling apart bad JSON, an unknown `type` and a
    /// known type with the wrong fields.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
            code: ErrorCode::BadMessage,
            message: format!("not valid JSON: {e}"),
            id: None,
            client_ref: None,
        })?;
        let id = echoable_id(value.get("id").and_then(|v| v.as_str()).map(str::to_owned));
        let client_ref = value
            .get("clientRef")
            .and_then(|v| v.as_str())
            .filter(|r| r.len() <= MAX_CLIENT_REF)
            .map(str::to_owned);
        let fail = |code, message: String| ParseError {
            code,
            message: clip(&message, MAX_ERROR_MESSAGE).into_owned(),
            id: id.clone(),
            client_ref: client_ref.clone(),
        };
        let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
            return Err(fail(
                ErrorCode::BadMessage,
                "message has no string field \"type\"".into(),
            ));
        };
        if !CLIENT_MESSAGE_TYPES.contains(&kind) {
            return Err(fail(
                ErrorCode::UnknownType,
                format!("unknown message type {:?}", clip(kind, MAX_QUOTED_TYPE)),
            ));
        }
        let kind = kind.to_owned();
        let m: ClientMessage = serde_json::from_value(value)
            .map_err(|e| fail(ErrorCode::BadMessage, format!("bad {kind} message: {e}")))?;
        if m.client_ref().is_some_and(|r| r.len() > MAX_CLIENT_REF) {
            return Err(fail(
                ErrorCode::InvalidField,
                format!("clientRef is longer than {MAX_CLIENT_REF} bytes"),
            ));
        }
        Ok(m)
    }

    /// The `clientRef` of a request that has one.
    pub fn client_ref(&self) -> Option<&str> {
        match self {
            ClientMessage::TerminalStart { client_ref, .. }
            | ClientMessage::ClaudeStart { client_ref, .. } => client_ref.as_deref(),
            _ => None,
        }
    }
}

/// How an attach begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Bytes from the requested offset follow, then live output.
    Replay,
    /// A snapshot frame of the current screen follows, then live output.
    Snapshot,
}

/// One event of a Claude session, as the CLI printed it, in a small envelope
/// that lets clients route it without parsing `raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ClaudeEvent {
    /// The CLI's `type` field (`system`, `assistant`, `user`, `result`,
    /// `stream_event`, `control_request`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// Claude Code's own session id (the conversation id), when the event has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Position of this event in the session's event log, for resuming.
    pub seq: u64,
    #[cfg_attr(test, ts(type = "unknown"))]
    pub raw: serde_json::Value,
}

/// A past Claude conversation found in the workspace's transcripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationInfo {
    pub id: String,
    pub title: String,
    pub cwd: String,
    /// Unix time in milliseconds of the last entry.
    pub updated: i64,
    pub messages: u32,
}

/// Messages from the agent to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
// A None is left out (absent, not null) except where a field says otherwise.
#[cfg_attr(test, ts(optional_fields))]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    /// First message on every connection.
    #[serde(rename = "hello")]
    Hello {
        protocol: u32,
        workspace: String,
        agent_version: String,
    },
    /// A session started; `info.type` says which kind.
    #[serde(rename = "session.created")]
    SessionCreated {
        id: SessionId,
        workspace: String,
        info: SessionInfo,
        /// The request's `clientRef`, in the reply to the client that asked
        /// (never in the announcement to other clients).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ref: Option<String>,
    },
    /// Reply to `session.attach`: says exactly where the stream that follows starts.
    #[serde(rename = "session.attached")]
    SessionAttached {
        id: SessionId,
        mode: AttachMode,
        /// Offset of the first byte that follows (replay) or that the snapshot reflects.
        offset: u64,
        /// Set when `since` asked for bytes that are gone: the oldest offset still kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lost_before: Option<u64>,
        info: SessionInfo,
    },
    /// The client fell too far behind; a snapshot frame at `offset` follows and
    /// live output continues from there.
    #[serde(rename = "session.resync")]
    SessionResync { id: SessionId, offset: u64 },
    #[serde(rename = "session.list")]
    SessionList { sessions: Vec<SessionInfo> },
    #[serde(rename = "message.delta")]
    MessageDelta {
        id: SessionId,
        events: Vec<ClaudeEvent>,
    },
    /// A permission request no longer needs an answer (answered elsewhere,
    /// cancelled by the CLI, or timed out).
    #[serde(rename = "claude.permission.resolved")]
    ClaudePermissionResolved {
        id: SessionId,
        request_id: String,
        allowed: bool,
        reason: String,
    },
    #[serde(rename = "claude.history")]
    ClaudeHistory {
        conversations: Vec<ConversationInfo>,
    },
    #[serde(rename = "claude.transcript")]
    ClaudeTranscript {
        conversation_id: String,
        #[cfg_attr(test, ts(type = "unknown[]"))]
        entries: Vec<serde_json::Value>,
    },
    /// Reply to `session.read`: the range frame that follows carries the bytes
    /// `[from, to)`. `from` is raised to `oldest` when earlier bytes are gone
    /// and `to` is lowered to keep within the limit. `end` is the current end.
    #[serde(rename = "session.range")]
    SessionRange {
        id: SessionId,
        from: u64,
        to: u64,
        oldest: u64,
        end: u64,
    },
    /// A session got a new name (`session.rename`), sent to every client.
    #[serde(rename = "session.renamed")]
    SessionRenamed { id: SessionId, title: String },
    /// A terminal was resized by one of its viewers, sent to every client so
    /// the others know they are sized by another.
    #[serde(rename = "session.resized")]
    SessionResized { id: SessionId, cols: u16, rows: u16 },
    #[serde(rename = "session.ended")]
    SessionEnded {
        id: SessionId,
        #[serde(default)]
        #[cfg_attr(test, ts(optional = false))]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The failed request's `clientRef`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ref: Option<String>,
    },
}

impl ServerMessage {
    /// An `error`; its message is clipped to [`MAX_ERROR_MESSAGE`] and an
    /// `id` longer than any session id is left out.
    pub fn error(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> Self {
        let message: String = message.into();
        ServerMessage::Error {
            code,
            message: clip(&message, MAX_ERROR_MESSAGE).into_owned(),
            id: echoable_id(id),
            client_ref: None,
        }
    }

    /// The same message as the reply to a request with this `clientRef`
    /// (for `session.created` and `error`; others have no such field).
    pub fn for_request(mut self, r: Option<String>) -> Self {
        if let ServerMessage::SessionCreated { client_ref, .. }
        | ServerMessage::Error { client_ref, .. } = &mut self
        {
            *client_ref = r;
        }
        self
    }

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"serialise: {e}"}}"#)
        })
    }
}

impl From<ParseError> for ServerMessage {
    fn from(e: ParseError) -> Self {
        ServerMessage::Error {
            code: e.code,
            message: e.message,
            id: e.id,
            client_ref: e.client_ref,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let m = ClientMessage::parse(
            r#"{"type":"terminal.start","cols":80,"rows":24,"workspacePath":"src"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::TerminalStart {
                workspace_path: Some("src".into()),
                shell: None,
                env: None,
                cols: 80,
                rows: 24,
                title: None,
                client_ref: None,
            }
        );
        let m = ClientMessage::parse(r#"{"type":"session.attach","id":"s1","since":42}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::SessionAttach {
                id: SessionId::new("s1").unwrap(),
                since: Some(42)
            }
        );
        let m = ClientMessage::parse(
            r#"{"type":"claude.permission","id":"c","requestId":"r","allow":false}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::ClaudePermission {
                allow: false,
                remember: false,
                ..
            }
        ));
        assert_eq!(
            ClientMessage::parse(r#"{"type":"session.list"}"#).unwrap(),
            ClientMessage::SessionList {}
        );
    }

    #[test]
    fn tells_bad_json_unknown_type_and_bad_fields_apart() {
        assert_eq!(
            ClientMessage::parse("{nope").unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            ClientMessage::parse("[]").unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"x.y"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        let e =
            ClientMessage::parse(r#"{"type":"terminal.resize","id":"s1","cols":"wide","rows":1}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert_eq!(e.id.as_deref(), Some("s1"));
        let e = ClientMessage::parse(r#"{"type":"terminal.write","id":"../etc","data":"x"}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        let e =
            ClientMessage::parse(r#"{"type":"terminal.resize","id":"s1","cols":70000,"rows":1}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
    }

    #[test]
    fn a_client_ref_is_echoed_in_the_reply_to_its_request_only() {
        let m = ClientMessage::parse(r#"{"type":"claude.start","clientRef":"pane-7"}"#).unwrap();
        assert_eq!(m.client_ref(), Some("pane-7"));
        let info: SessionInfo = serde_json::from_value(serde_json::json!({
            "id": "s1", "type": "terminal", "title": "t", "cwd": "", "created": 1,
            "offset": 0, "oldestOffset": 0, "attached": 1
        }))
        .unwrap();
        let created = ServerMessage::SessionCreated {
            id: SessionId::new("s1").unwrap(),
            workspace: "w".into(),
            info,
            client_ref: None,
        };
        assert!(
            !created.to_json().contains("clientRef"),
            "announcements carry none"
        );
        let reply = created.for_request(m.client_ref().map(str::to_owned));
        assert!(reply.to_json().contains(r#""clientRef":"pane-7""#));

        // A refused request's error carries it too, even when the message
        // itself could not be read.
        let e = ClientMessage::parse(r#"{"type":"terminal.start","clientRef":"r1","cols":"x"}"#)
            .unwrap_err();
        assert_eq!(e.client_ref.as_deref(), Some("r1"));
        let json = ServerMessage::from(e).to_json();
        assert!(json.contains(r#""clientRef":"r1""#), "{json}");

        let long = "x".repeat(MAX_CLIENT_REF + 1);
        let e = ClientMessage::parse(&format!(
            r#"{{"type":"terminal.start","cols":80,"rows":24,"clientRef":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert_eq!(e.client_ref, None, "too long to echo");
    }

    #[test]
    fn permission_modes_are_spelled_as_the_cli_spells_them() {
        for m in PermissionMode::ALL {
            let wire = serde_json::to_value(m).unwrap();
            assert_eq!(wire, m.as_cli_arg(), "{m:?}");
            assert_eq!(serde_json::from_value::<PermissionMode>(wire).unwrap(), m);
        }
        // The CLI's newer name for the default mode is accepted too.
        let manual: PermissionMode = serde_json::from_str(r#""manual""#).unwrap();
        assert_eq!(manual, PermissionMode::Default);
    }

    #[test]
    fn every_listed_type_is_a_variant() {
        for t in CLIENT_MESSAGE_TYPES {
            let e = ClientMessage::parse(&format!(r#"{{"type":"{t}"}}"#));
            if let Err(e) = e {
                assert_eq!(e.code, ErrorCode::BadMessage, "{t}");
            }
        }
    }

    #[test]
    fn server_messages_use_wire_names() {
        let m = ServerMessage::SessionEnded {
            id: SessionId::new("s1").unwrap(),
            exit_code: Some(3),
            reason: None,
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"session.ended","id":"s1","exitCode":3}"#
        );
        let e = ServerMessage::error(ErrorCode::TooLarge, "big", None).to_json();
        assert_eq!(e, r#"{"type":"error","code":"too_large","message":"big"}"#);
    }

    #[test]
    fn reads_renames_and_configures_parse() {
        let m =
            ClientMessage::parse(r#"{"type":"session.read","id":"t1","from":0,"to":10}"#).unwrap();
        assert!(matches!(
            m,
            ClientMessage::SessionRead {
                from: 0,
                to: 10,
                ..
            }
        ));
        let m =
            ClientMessage::parse(r#"{"type":"session.rename","id":"t1","title":"build"}"#).unwrap();
        assert!(matches!(m, ClientMessage::SessionRename { ref title, .. } if title == "build"));
        let m = ClientMessage::parse(
            r#"{"type":"claude.configure","id":"c1","permissionMode":"plan"}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::ClaudeConfigure {
                permission_mode: Some(PermissionMode::Plan),
                model: None,
                ..
            }
        ));
        let e = ClientMessage::parse(r#"{"type":"session.read","id":"t1","from":-1,"to":1}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        let r = ServerMessage::SessionRange {
            id: SessionId::new("t1").unwrap(),
            from: 1,
            to: 2,
            oldest: 0,
            end: 9,
        };
        assert_eq!(
            r.to_json(),
            r#"{"type":"session.range","id":"t1","from":1,"to":2,"oldest":0,"end":9}"#
        );
    }
}
