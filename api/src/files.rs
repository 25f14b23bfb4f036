//! Shapes of the files and git routes (agent `/files/...`, `/git/...`, and
//! the gateway's `/api/workspaces/{name}/files/...`, `.../git/...`, which
//! carry them unchanged). Paths are relative to the workspace root,
//! `/`-separated, UTF-8. Errors are [`crate::rest::ApiError`] bodies.

use serde::{Deserialize, Serialize};

/// What a directory entry is (symlinks are not followed when listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of `GET files/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    pub size: u64,
    /// Unix time in milliseconds.
    pub mtime_ms: i64,
}

/// `GET files/list?path=DIR`: directories first, then by name. At most the
/// agent's `--max-list-entries`; `truncated` when there were more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FileList {
    pub path: String,
    pub entries: Vec<FileEntry>,
    pub truncated: bool,
}

/// The reply of `PUT files/content` (and the body of its 412: the current
/// version of the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FileVersion {
    /// The new `ETag`, with its quotes.
    pub etag: String,
    pub size: u64,
}

/// `POST files/move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MoveRequest {
    pub from: String,
    pub to: String,
}

/// One changed path of `GET git/status`. `index` and `worktree` are git's
/// one-letter codes (`M`, `A`, `D`, `R`, `C`, `U`, `?` untracked, `.`
/// unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct GitFileStatus {
    pub path: String,
    /// The path before a rename or copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_path: Option<String>,
    pub index: String,
    pub worktree: String,
}

/// `GET git/status`. Without a repository: `repository: false` and the rest
/// empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct GitStatus {
    pub repository: bool,
    /// The current branch; none when HEAD is detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit HEAD names; none before the first commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    pub ahead: u32,
    pub behind: u32,
    pub files: Vec<GitFileStatus>,
    /// More changed paths than the agent lists.
    pub truncated: bool,
}

/// `POST git/stage` and `POST git/unstage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GitPaths {
    pub paths: Vec<String>,
}

/// `POST git/commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GitCommitRequest {
    pub message: String,
}

/// The reply of `POST git/commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GitCommitDone {
    pub commit: String,
}

/// `GET git/branches`: local branches, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct GitBranches {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    pub branches: Vec<String>,
}

/// `POST git/checkout`: switch to an existing local branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GitCheckout {
    pub branch: String,
}

/// One commit of `GET git/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct GitCommitInfo {
    pub sha: String,
    pub author: String,
    /// Author time, Unix milliseconds.
    pub time_ms: i64,
    pub subject: String,
}

/// `GET git/log?limit=N`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GitLog {
    pub commits: Vec<GitCommitInfo>,
}
