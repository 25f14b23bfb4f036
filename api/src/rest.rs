//! Shapes of the REST APIs: the agent's (used by the gateway and the operator)
//! and the gateway's (used by the web UI and scripts). Errors on both are
//! [`ApiError`] bodies with an HTTP status that fits the code.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// `GET /activity` on the agent: what the operator reads to decide idleness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub attached_clients: u32,
    pub running_sessions: u32,
    pub claude_turn_running: bool,
    /// Unix time in milliseconds of the last input or output in any session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<i64>,
}

/// Where a workspace stands, as the gateway reports it (the same names as the
/// `Workspace` resource's phase, so the UI treats both backends alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum WorkspacePhase {
    Pending,
    Starting,
    Running,
    Suspended,
    Failed,
    Terminating,
    /// Local backend: exists on disk, no agent started.
    Stopped,
}

/// A workspace as `GET /api/workspaces` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceInfo {
    pub name: String,
    pub owner: String,
    pub phase: WorkspacePhase,
    /// Unix time in milliseconds.
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed: Option<i64>,
    /// Human-readable progress or failure, when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /api/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreateWorkspace {
    pub name: String,
}

/// `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LoginRequest {
    pub key: String,
}

/// `GET /api/me` and the body of a successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub user: String,
    /// Unix time in milliseconds when the login expires.
    pub expires: i64,
}

/// Whether `name` is a DNS-1123 label: what Kubernetes accepts as a resource
/// name, and safe as a directory name (no dots, no slashes).
pub fn is_dns1123_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "ws-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a/b",
            "..",
            "a_b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }
}
