//! Per-turn changes of Claude sessions, with undo: [`snapshot`] records the
//! workspace as git trees in a private repository, [`recorder`] keeps two per
//! turn and undoes one, [`routes`] serves them.
//!
//! Why not the CLI's own checkpoints: Claude Code's file checkpointing
//! (`enableFileCheckpointing`, `rewind_files`) only tracks its Write, Edit and
//! NotebookEdit tools, not what its Bash tool changes, and a turn here must
//! show and undo both.
//!
//! The Claude sessions hold the workspace's recorder and make two calls,
//! `turn_started` (awaited before the user's message is handed to the CLI)
//! and `turn_ended` (at its `result`).

pub mod recorder;
pub mod routes;
pub mod snapshot;

/// The recorder of this workspace, its private repository in
/// `.dispatch/turns.git`.
pub fn start_recorder(
    files: &crate::files::Files,
    git: &crate::git::run::Git,
) -> recorder::Recorder {
    let root = git.root();
    let git_dir = root
        .join(crate::files::relpath::AGENT_STATE_DIR)
        .join("turns.git");
    let git = crate::git::run::Git::private(root, &git_dir, git.timeout, git.max_output);
    recorder::Recorder::start(snapshot::Snapshots::new(git, &git_dir), files.root.clone())
}
