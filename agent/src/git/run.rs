//! Running the real `git` in the workspace: fixed arguments chosen here, a
//! client's paths only after `--` (and read literally: no pathspec magic),
//! the `GIT_*` environment of the agent dropped, no pager, no prompt, no
//! discovery of a repository above the workspace, a timeout, and stdout and
//! stderr read up to a bound.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Bytes of stderr kept (for the error message).
const MAX_STDERR: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Git {
    root: PathBuf,
    pub timeout: Duration,
    pub max_output: usize,
    /// Set after the agent's `GIT_*` are dropped (a private repository's
    /// `GIT_DIR` and `GIT_WORK_TREE`).
    env: Vec<(String, PathBuf)>,
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// stdout was longer than the bound; `stdout` holds the start.
    pub truncated: bool,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("git could not be started: {0} (is git installed?)")]
    Spawn(std::io::Error),
    #[error("git took longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("reading git's output: {0}")]
    Io(std::io::Error),
}

impl Git {
    pub fn new(root: &Path, timeout: Duration, max_output: usize) -> Git {
        Git {
            root: root.to_owned(),
            timeout,
            max_output,
            env: Vec::new(),
        }
    }

    /// git on a repository of the agent's own at `git_dir` whose work tree is
    /// the workspace: it never reads or writes the user's `.git`.
    pub fn private(root: &Path, git_dir: &Path, timeout: Duration, max_output: usize) -> Git {
        let mut g = Git::new(root, timeout, max_output);
        g.env = vec![
            ("GIT_DIR".to_owned(), git_dir.to_owned()),
            ("GIT_WORK_TREE".to_owned(), root.to_owned()),
        ];
        g
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The command with every setting that does not depend on the call.
    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(&k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let ceiling = self.root.parent().unwrap_or(&self.root);
        cmd.current_dir(&self.root)
            .env("GIT_CEILING_DIRECTORIES", ceiling)
            .env("GIT_TERMINAL_PROMPT", "0")
            // Reads never take the index lock away from the user's own git.
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("LC_ALL", "C")
            .args([
                "--no-pager",
                "--literal-pathspecs",
                "-c",
                "core.quotepath=off",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "color.ui=false",
                "-c",
                "diff.external=",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `git <args>` (with `input` on stdin when given).
    pub async fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output, RunError> {
        let mut cmd = self.command();
        cmd.args(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(RunError::Spawn)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let max = self.max_output;
        let work = async {
            let feed = async {
                if let (Some(mut w), Some(data)) = (stdin, input) {
                    // git may exit without reading it all (an error): not ours to report.
                    let _ = w.write_all(data).await;
                }
            };
            let (_, out, err) = tokio::join!(
                feed,
                read_bounded(stdout, max),
                read_bounded(stderr, MAX_STDERR)
            );
            let (stdout, truncated) = out.map_err(RunError::Io)?;
            if truncated {
                // The rest is not wanted: stop git rather than wait for it.
                let _ = child.start_kill();
            }
            let (stderr, _) = err.map_err(RunError::Io)?;
            let status = child.wait().await.map_err(RunError::Io)?;
            Ok(Output {
                code: if truncated { Some(0) } else { status.code() },
                stdout,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
                truncated,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RunError::Timeout(self.timeout)),
        }
    }
}

/// Up to `max` bytes, and whether there were more (reading stops there).
async fn read_bounded<R: AsyncRead + Unpin>(
    r: Option<R>,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(r) = r else {
        return Ok((Vec::new(), false));
    };
    let mut buf = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut buf).await?;
    let truncated = buf.len() > max;
    buf.truncate(max);
    Ok((buf, truncated))
}
