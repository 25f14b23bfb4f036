//! The workspace's files over HTTP: list, read, write with conflict
//! detection, create, move, delete, upload and download (a folder as a tar
//! stream). Every path goes through [`confine`] (the kernel resolves it
//! beneath the root at the moment of opening); [`relpath`] checks its shape
//! first. [`content`] reads and writes files, [`list`] directories, [`ops`]
//! mkdir/move/delete, [`archive`] tar streams, [`walk`] descriptor-relative
//! directory reading, [`version`] ETags, [`error`] the error replies,
//! [`routes`] the HTTP handlers.

pub mod archive;
pub mod confine;
pub mod content;
pub mod error;
pub mod list;
pub mod ops;
pub mod relpath;
pub mod routes;
pub mod version;
pub mod walk;

use std::path::Path;

/// Limits of the files and git routes (flags of the agent).
#[derive(Debug, Clone, clap::Args)]
pub struct FilesLimits {
    /// Largest file a `PUT files/content` may upload, in bytes.
    #[arg(long, env = "DISPATCH_MAX_UPLOAD_BYTES", default_value_t = 4 << 30)]
    pub max_upload_bytes: u64,

    /// Most entries `files/list` returns for one directory (`truncated`
    /// beyond).
    #[arg(long, env = "DISPATCH_MAX_LIST_ENTRIES", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_list_entries: u64,

    /// Seconds one git command may run before it is stopped.
    #[arg(long, env = "DISPATCH_GIT_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub git_timeout: u64,

    /// Bytes of a git command's output (a diff, a log) kept; longer output is
    /// cut and marked truncated.
    #[arg(long, env = "DISPATCH_MAX_GIT_OUTPUT_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(4096..=1 << 30))]
    pub max_git_output_bytes: u64,
}

/// What the files routes share.
pub struct Files {
    pub root: std::sync::Arc<confine::Root>,
    pub limits: FilesLimits,
}

impl Files {
    /// `root` is the canonical workspace root.
    pub fn open(root: &Path, limits: FilesLimits) -> std::io::Result<Files> {
        Ok(Files {
            root: std::sync::Arc::new(confine::Root::open(root)?),
            limits,
        })
    }
}
