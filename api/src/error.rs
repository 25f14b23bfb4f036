use serde::{Deserialize, Serialize};

/// Stable error codes sent in `error` messages and REST error bodies.
///
/// Clients match on these, so a code is never renamed; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text frame that is not valid JSON, or JSON of the wrong shape.
    BadMessage,
    /// A JSON message whose `type` is not one the server knows.
    UnknownType,
    /// A binary frame that does not decode.
    BadFrame,
    /// A frame or message over the size limit.
    TooLarge,
    /// A field has a value outside its allowed range.
    InvalidField,
    /// The named session does not exist in this workspace.
    NoSuchSession,
    /// The session exists but has ended, so it takes no input.
    SessionEnded,
    /// The operation does not apply to this kind of session.
    WrongSessionType,
    /// The workspace has as many live sessions as it may.
    SessionLimit,
    /// Input arrived faster than the allowed rate.
    RateLimited,
    /// A path named by the client resolves outside the workspace root.
    PathOutsideWorkspace,
    /// The process for a session could not be started.
    SpawnFailed,
    /// The Claude CLI is not installed or has no credentials.
    ClaudeUnavailable,
    /// The permission request is unknown or was already answered.
    NoSuchRequest,
    /// The workspace's Claude budget for this period is used up.
    BudgetExhausted,
    /// Missing or invalid credentials.
    Unauthorized,
    /// Credentials are valid but do not grant this.
    Forbidden,
    /// The named workspace does not exist.
    NoSuchWorkspace,
    /// A workspace with this name exists already.
    AlreadyExists,
    /// The workspace's agent is not reachable right now (starting, restarting, suspended).
    Unavailable,
    /// Something failed inside the server; the message says what.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::NoSuchSession => "no_such_session",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::WrongSessionType => "wrong_session_type",
            ErrorCode::SessionLimit => "session_limit",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PathOutsideWorkspace => "path_outside_workspace",
            ErrorCode::SpawnFailed => "spawn_failed",
            ErrorCode::ClaudeUnavailable => "claude_unavailable",
            ErrorCode::NoSuchRequest => "no_such_request",
            ErrorCode::BudgetExhausted => "budget_exhausted",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NoSuchWorkspace => "no_such_workspace",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_name() {
        let all = [
            ErrorCode::BadMessage,
            ErrorCode::UnknownType,
            ErrorCode::BadFrame,
            ErrorCode::TooLarge,
            ErrorCode::InvalidField,
            ErrorCode::NoSuchSession,
            ErrorCode::SessionEnded,
            ErrorCode::WrongSessionType,
            ErrorCode::SessionLimit,
            ErrorCode::RateLimited,
            ErrorCode::PathOutsideWorkspace,
            ErrorCode::SpawnFailed,
            ErrorCode::ClaudeUnavailable,
            ErrorCode::NoSuchRequest,
            ErrorCode::BudgetExhausted,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NoSuchWorkspace,
            ErrorCode::AlreadyExists,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        for code in all {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
