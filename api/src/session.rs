use serde::{Deserialize, Serialize};

/// Longest session id accepted, so that ids fit the frame header's length byte
/// with room to spare.
pub const MAX_SESSION_ID_LEN: usize = 64;

pub fn is_valid_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SESSION_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A session's id: 1 to 64 characters of `[A-Za-z0-9_-]`, unique in its workspace.
///
/// Validated on construction and on deserialisation, so code holding one never
/// needs to check it again (it is safe in file names and frame headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session id must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'")]
pub struct InvalidSessionId;

impl SessionId {
    pub fn new(s: &str) -> Result<Self, InvalidSessionId> {
        if is_valid_session_id(s) {
            Ok(SessionId(s.to_owned()))
        } else {
            Err(InvalidSessionId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidSessionId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_valid_session_id(&s) {
            Ok(SessionId(s))
        } else {
            Err(InvalidSessionId)
        }
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Terminal,
    Claude,
}

/// How a session stands, as listed by `session.list` and `GET /sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
// serde leaves out a None here, so a field is absent, never null.
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: SessionId,
    #[serde(rename = "type")]
    pub kind: SessionKind,
    pub title: String,
    /// Working directory, relative to the workspace root.
    pub cwd: String,
    /// Unix time in milliseconds.
    pub created: i64,
    /// Unix time in milliseconds; absent while the session runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it ended when that was not the process exiting by itself
    /// ("stopped", "agent restarted", "crashed: ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Bytes of output produced so far (the offset the next byte will have).
    pub offset: u64,
    /// Oldest offset still readable by `session.attach`.
    pub oldest_offset: u64,
    /// Clients attached right now.
    pub attached: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// A Claude session's conversation (Claude Code's session id), so a
    /// client can tell that a conversation is already open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// A running terminal's foreground program, when it is not the shell
    /// itself (what a tab shows when the program sets no title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreground: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_when_deserialised() {
        assert!(serde_json::from_str::<SessionId>("\"abc-DEF_1\"").is_ok());
        assert!(serde_json::from_str::<SessionId>("\"\"").is_err());
        assert!(serde_json::from_str::<SessionId>("\"../x\"").is_err());
        let long = format!("\"{}\"", "a".repeat(65));
        assert!(serde_json::from_str::<SessionId>(&long).is_err());
    }
}
