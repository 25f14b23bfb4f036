//! Snapshots of the workspace as git trees in a repository of the agent's
//! own (`.dispatch/turns.git`, with its own index): `git add -A` then
//! `write-tree`. The user's `.git`, index, branches and stash are never
//! read or written; their `.gitignore` files are respected (what they
//! ignore, build outputs and dependencies, is neither recorded nor undone);
//! `.dispatch/` is ignored by its own `.gitignore`. Unchanged files are not
//! hashed again (git's stat cache in the private index), so a snapshot of a
//! workspace that changed little is quick.

use std::path::Path;

use serde::Serialize;

use crate::files::error::FsError;
use crate::git::run::{Git, Output};

/// What happened to one path between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub status: &'static str,
}

pub struct Snapshots {
    git: Git,
    git_dir: std::path::PathBuf,
    ready: tokio::sync::OnceCell<()>,
}

fn failed(what: &str, out: &Output) -> FsError {
    FsError::internal(format!("snapshot: git {what}: {}", out.stderr))
}

async fn ok(git: &Git, what: &str, args: &[&str]) -> Result<Output, FsError> {
    let out = git.run(args, None).await?;
    if out.ok() {
        Ok(out)
    } else {
        Err(failed(what, &out))
    }
}

impl Snapshots {
    /// `git` must be [`Git::private`] on `git_dir`.
    pub fn new(git: Git, git_dir: &Path) -> Snapshots {
        Snapshots {
            git,
            git_dir: git_dir.to_owned(),
            ready: tokio::sync::OnceCell::new(),
        }
    }

    /// Makes the private repository the first time.
    async fn ensure(&self) -> Result<(), FsError> {
        let git_dir = &self.git_dir;
        self.ready
            .get_or_try_init(|| async {
                if !git_dir.join("HEAD").exists() {
                    let dir = git_dir.to_string_lossy().into_owned();
                    let init = Git::new(self.git.root(), self.git.timeout, self.git.max_output);
                    ok(&init, "init", &["init", "-q", "--bare", &dir]).await?;
                }
                Ok::<(), FsError>(())
            })
            .await
            .map(|_| ())
    }

    /// The workspace now, as a tree id.
    pub async fn take(&self) -> Result<String, FsError> {
        self.ensure().await?;
        ok(&self.git, "add", &["add", "-A", "--", "."]).await?;
        let out = ok(&self.git, "write-tree", &["write-tree"]).await?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Points `refname` at `tree`, which keeps it from being collected.
    pub async fn keep(&self, refname: &str, tree: &str) -> Result<(), FsError> {
        ok(&self.git, "update-ref", &["update-ref", refname, tree])
            .await
            .map(drop)
    }

    /// `refname`'s tree, if it exists.
    pub async fn kept(&self, refname: &str) -> Result<Option<String>, FsError> {
        self.ensure().await?;
        let out = self
            .git
            .run(&["rev-parse", "-q", "--verify", refname], None)
            .await?;
        Ok(out
            .ok()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    /// Refs under `prefix` (full names).
    pub async fn refs(&self, prefix: &str) -> Result<Vec<String>, FsError> {
        self.ensure().await?;
        let out = ok(
            &self.git,
            "for-each-ref",
            &["for-each-ref", "--format=%(refname)", prefix],
        )
        .await?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The paths that differ between two trees.
    pub async fn changes(&self, from: &str, to: &str) -> Result<Vec<Change>, FsError> {
        let out = ok(
            &self.git,
            "diff-tree",
            &[
                "diff-tree",
                "-r",
                "-z",
                "--no-renames",
                "--name-status",
                from,
                to,
            ],
        )
        .await?;
        Ok(parse_name_status(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The unified diff between two trees (bounded), and whether it was cut.
    pub async fn diff(&self, from: &str, to: &str) -> Result<(String, bool), FsError> {
        let out = ok(
            &self.git,
            "diff-tree",
            &[
                "diff-tree",
                "-r",
                "-p",
                "--no-renames",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                from,
                to,
            ],
        )
        .await?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.truncated,
        ))
    }

    /// Writes `paths` as they are in `tree` into the workspace.
    pub async fn restore(&self, tree: &str, paths: &[String]) -> Result<(), FsError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut args = vec!["checkout", tree, "--"];
        args.extend(paths.iter().map(String::as_str));
        ok(&self.git, "checkout", &args).await.map(drop)
    }
}

/// `git diff-tree -z --name-status`: status and path, NUL-separated.
pub fn parse_name_status(text: &str) -> Vec<Change> {
    let mut out = Vec::new();
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        let status = match status.chars().next() {
            Some('A') => "added",
            Some('D') => "deleted",
            _ => "modified",
        };
        out.push(Change {
            path: path.to_owned(),
            status,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_records() {
        let got = parse_name_status("A\0new file\0M\0src/a.rs\0D\0gone\0T\0link\0");
        let got: Vec<_> = got.iter().map(|c| (c.path.as_str(), c.status)).collect();
        assert_eq!(
            got,
            [
                ("new file", "added"),
                ("src/a.rs", "modified"),
                ("gone", "deleted"),
                ("link", "modified"),
            ]
        );
    }
}
