//! Where workspaces live and how to reach their agents. `local` runs agent
//! processes on this machine; the `kubernetes` backend maps the same calls
//! onto `Workspace` resources: `open` resumes a suspended one,
//! `endpoint` waits for `status.endpoint` and reads the token from the
//! workspace's Secret, `status` reports the resource's phase.

mod agent_stderr;
pub(crate) mod kubernetes;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;
use dispatch_api::ErrorCode;
use dispatch_api::rest::WorkspaceInfo;

use crate::names::WorkspaceName;

/// How to reach one workspace's agent right now.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// `http://host:port`, without a trailing slash.
    pub base_url: String,
    /// The agent's bearer token.
    pub token: String,
}

impl std::fmt::Debug for AgentEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEndpoint")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl AgentEndpoint {
    pub fn ws_url(&self) -> String {
        let rest = self
            .base_url
            .strip_prefix("http://")
            .map(|r| format!("ws://{r}"))
            .or_else(|| {
                self.base_url
                    .strip_prefix("https://")
                    .map(|r| format!("wss://{r}"))
            })
            .unwrap_or_else(|| self.base_url.clone());
        format!("{rest}/ws")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Also what another user's workspace answers: its existence is not told.
    #[error("no workspace named {0:?}")]
    NoSuchWorkspace(String),
    #[error("a workspace named {0:?} exists already")]
    AlreadyExists(String),
    /// The agent is not reachable (starting, restarting, failed to start).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BackendError::NoSuchWorkspace(_) => ErrorCode::NoSuchWorkspace,
            BackendError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            BackendError::Unavailable(_) => ErrorCode::Unavailable,
            BackendError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// One backend's workspaces, always seen as one owner's: a workspace of
/// another owner behaves exactly as one that does not exist.
#[async_trait]
pub trait WorkspaceBackend: Send + Sync + 'static {
    /// The owner's workspaces, by name.
    async fn list(&self, owner: &str) -> Result<Vec<WorkspaceInfo>, BackendError>;

    /// Creates a workspace (not started).
    async fn create(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError>;

    /// Where a workspace stands, without changing anything.
    async fn status(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError>;

    /// Starts (or resumes) the workspace's agent; returns once it is asked to
    /// start, not necessarily running (the phase says).
    async fn open(&self, owner: &str, name: &WorkspaceName) -> Result<WorkspaceInfo, BackendError>;

    /// Stops the agent and removes the workspace and its files.
    async fn delete(&self, owner: &str, name: &WorkspaceName) -> Result<(), BackendError>;

    /// Opens the workspace if needed and waits, at most `wait`, until its agent
    /// can be reached.
    async fn endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
        wait: Duration,
    ) -> Result<AgentEndpoint, BackendError>;

    /// Every workspace of every owner whose agent runs now: (owner, name).
    /// Cheap (no request to anything): the approvals watcher calls it often.
    fn running(&self) -> Vec<(String, WorkspaceName)> {
        Vec::new()
    }

    /// The agent's endpoint if it runs now; never starts or resumes it.
    async fn running_endpoint(
        &self,
        _owner: &str,
        _name: &WorkspaceName,
    ) -> Result<Option<AgentEndpoint>, BackendError> {
        Ok(None)
    }

    /// Stops whatever the backend runs itself (local agents) before exit.
    async fn shutdown(&self);
}
