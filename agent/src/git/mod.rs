//! Git for the workspace (status, diffs, stage, commit, branches, log),
//! running the real `git` (see [`run`] for how it is confined); [`status`]
//! parses its porcelain output; [`ops`] the operations; [`routes`] HTTP.

pub mod ops;
pub mod routes;
pub mod run;
pub mod status;

/// The workspace's git, within the agent's limits; the agent's state
/// directory kept out of it.
pub fn open(root: &std::path::Path, limits: &crate::files::FilesLimits) -> run::Git {
    ignore_agent_state(root);
    run::Git::new(
        root,
        std::time::Duration::from_secs(limits.git_timeout),
        limits.max_git_output_bytes as usize,
    )
}

/// Keeps the agent's state directory out of git: a `.gitignore` inside it
/// that ignores everything there (itself too), so that `git add -A` never
/// takes the agent's database or Claude's credentials, and the user's own
/// ignore files are left alone.
pub fn ignore_agent_state(root: &std::path::Path) {
    let dir = root.join(crate::files::relpath::AGENT_STATE_DIR);
    let file = dir.join(".gitignore");
    if !dir.is_dir() || file.exists() {
        return;
    }
    let text = "# The Dispatch agent's own state: never committed.\n*\n";
    if let Err(e) = std::fs::write(&file, text) {
        tracing::warn!("writing {}: {e}", file.display());
    }
}
