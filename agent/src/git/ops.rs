//! The git operations the API offers, each a fixed argument list; what a
//! client sends is checked first and goes after `--` (paths) or is held to a
//! shape that cannot be an option (branch names, commit ids).

use axum::http::StatusCode;
use dispatch_api::ErrorCode;
use dispatch_api::files::{GitBranches, GitCommitInfo, GitLog, GitStatus};

use super::run::{Git, Output, RunError};
use super::status;
use crate::files::error::FsError;
use crate::files::relpath::RelPath;

/// Paths one stage or unstage call may name.
pub const MAX_PATHS: usize = 10_000;
/// Longest commit message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most changed paths `status` lists.
pub const MAX_STATUS_FILES: usize = 10_000;
/// Most commits `log` lists.
pub const MAX_LOG: usize = 1000;
/// Most branches listed.
pub const MAX_BRANCHES: usize = 10_000;

impl From<RunError> for FsError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Timeout(_) => FsError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::GitFailed,
                e.to_string(),
            ),
            e => FsError::internal(e.to_string()),
        }
    }
}

/// git said no: 409 with what it said.
fn failed(what: &str, out: &Output) -> FsError {
    let said = if out.stderr.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        out.stderr.clone()
    };
    FsError::new(
        StatusCode::CONFLICT,
        ErrorCode::GitFailed,
        format!("git {what} failed: {said}"),
    )
}

async fn ok(git: &Git, what: &str, args: &[&str], input: Option<&[u8]>) -> Result<Output, FsError> {
    let out = git.run(args, input).await?;
    if out.ok() {
        Ok(out)
    } else {
        Err(failed(what, &out))
    }
}

/// Whether the workspace root is the top of a git work tree.
pub async fn is_repository(git: &Git) -> Result<bool, FsError> {
    let out = git.run(&["rev-parse", "--show-toplevel"], None).await?;
    if !out.ok() {
        return Ok(false);
    }
    let top = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(std::path::Path::new(&top) == git.root())
}

async fn require_repository(git: &Git) -> Result<(), FsError> {
    if is_repository(git).await? {
        Ok(())
    } else {
        Err(FsError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotARepository,
            "the workspace has no git repository (POST git/init makes one)",
        ))
    }
}

/// The commit HEAD names, if any (none before the first commit).
async fn head(git: &Git) -> Result<Option<String>, FsError> {
    let out = git
        .run(&["rev-parse", "-q", "--verify", "HEAD^{commit}"], None)
        .await?;
    Ok(out
        .ok()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

pub async fn status(git: &Git) -> Result<GitStatus, FsError> {
    if !is_repository(git).await? {
        return Ok(GitStatus::default());
    }
    let out = ok(
        git,
        "status",
        &[
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=normal",
        ],
        None,
    )
    .await?;
    let mut st = status::parse(&out.stdout, MAX_STATUS_FILES);
    st.truncated |= out.truncated;
    Ok(st)
}

pub async fn init(git: &Git) -> Result<(), FsError> {
    if is_repository(git).await? {
        return Err(FsError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyExists,
            "the workspace is a git repository already",
        ));
    }
    ok(git, "init", &["init", "-q"], None).await.map(drop)
}

/// A diff as text, and whether it was cut at the output bound. `staged`:
/// the index against HEAD; else the work tree against the index.
pub async fn diff(
    git: &Git,
    staged: bool,
    path: Option<&RelPath>,
) -> Result<(Vec<u8>, bool), FsError> {
    require_repository(git).await?;
    let mut args = vec!["diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M"];
    if staged {
        args.push("--cached");
    }
    args.push("--");
    let p = path.map(|p| p.as_os_path());
    if let Some(p) = &p {
        args.push(p);
    }
    let out = ok(git, "diff", &args, None).await?;
    Ok((out.stdout, out.truncated))
}

/// Checked client paths, as git gets them.
pub fn client_paths(paths: &[String]) -> Result<Vec<String>, FsError> {
    if paths.is_empty() {
        return Err(FsError::bad_request("`paths` is empty"));
    }
    if paths.len() > MAX_PATHS {
        return Err(FsError::bad_request(format!("more than {MAX_PATHS} paths")));
    }
    paths
        .iter()
        .map(|p| Ok(RelPath::parse(p)?.as_os_path()))
        .collect()
}

pub async fn stage(git: &Git, paths: &[String]) -> Result<(), FsError> {
    let paths = client_paths(paths)?;
    require_repository(git).await?;
    let mut args = vec!["add", "-A", "--"];
    args.extend(paths.iter().map(String::as_str));
    ok(git, "add", &args, None).await.map(drop)
}

pub async fn unstage(git: &Git, paths: &[String]) -> Result<(), FsError> {
    let paths = client_paths(paths)?;
    require_repository(git).await?;
    // Before the first commit there is no HEAD to restore from: the paths
    // leave the index.
    let mut args = if head(git).await?.is_some() {
        vec!["restore", "--staged", "--"]
    } else {
        vec!["rm", "--cached", "-r", "-q", "--ignore-unmatch", "--"]
    };
    args.extend(paths.iter().map(String::as_str));
    ok(git, "unstage", &args, None).await.map(drop)
}

pub async fn commit(git: &Git, message: &str) -> Result<String, FsError> {
    if message.trim().is_empty() {
        return Err(FsError::bad_request("the commit message is empty"));
    }
    if message.len() > MAX_MESSAGE {
        return Err(FsError::bad_request(format!(
            "the commit message is longer than {MAX_MESSAGE} bytes"
        )));
    }
    require_repository(git).await?;
    // The message on stdin: never an argument.
    ok(
        git,
        "commit",
        &["commit", "-q", "--no-edit", "--cleanup=strip", "-F", "-"],
        Some(message.as_bytes()),
    )
    .await?;
    head(git)
        .await?
        .ok_or_else(|| FsError::internal("git commit succeeded but HEAD names no commit"))
}

pub async fn branches(git: &Git) -> Result<GitBranches, FsError> {
    require_repository(git).await?;
    let out = ok(
        git,
        "for-each-ref",
        &["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        None,
    )
    .await?;
    let branches = String::from_utf8_lossy(&out.stdout)
        .lines()
        .take(MAX_BRANCHES)
        .map(str::to_owned)
        .collect();
    let cur = git
        .run(&["symbolic-ref", "--quiet", "--short", "HEAD"], None)
        .await?;
    let current = cur
        .ok()
        .then(|| String::from_utf8_lossy(&cur.stdout).trim().to_owned());
    Ok(GitBranches { current, branches })
}

/// Switches to an existing local branch (named exactly as `branches` lists
/// it, so nothing else, and never an option).
pub async fn checkout(git: &Git, branch: &str) -> Result<(), FsError> {
    let known = branches(git).await?;
    if !known.branches.iter().any(|b| b == branch) {
        return Err(FsError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no local branch named {branch:?}"),
        ));
    }
    ok(git, "switch", &["switch", "--no-guess", "--", branch], None)
        .await
        .map(drop)
}

pub async fn log(git: &Git, limit: usize) -> Result<GitLog, FsError> {
    require_repository(git).await?;
    if head(git).await?.is_none() {
        return Ok(GitLog { commits: vec![] });
    }
    let n = format!("-n{}", limit.clamp(1, MAX_LOG));
    let out = ok(
        git,
        "log",
        &[
            "log",
            &n,
            "--no-color",
            "--format=%H%x1f%an%x1f%at%x1f%s%x1e",
        ],
        None,
    )
    .await?;
    Ok(GitLog {
        commits: parse_log(&String::from_utf8_lossy(&out.stdout)),
    })
}

pub fn parse_log(text: &str) -> Vec<GitCommitInfo> {
    text.split('\x1e')
        .filter_map(|rec| {
            let mut f = rec.trim_start_matches('\n').split('\x1f');
            let sha = f.next().filter(|s| !s.is_empty())?.to_owned();
            let author = f.next()?.to_owned();
            let time_ms = f.next()?.parse::<i64>().ok()? * 1000;
            let subject = f.next().unwrap_or("").to_owned();
            Some(GitCommitInfo {
                sha,
                author,
                time_ms,
                subject,
            })
        })
        .collect()
}

/// A commit id as a client may name one: 4 to 64 hex digits.
pub fn valid_sha(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One commit: its header and its diff against its first parent.
pub async fn show(git: &Git, sha: &str) -> Result<(Vec<u8>, bool), FsError> {
    if !valid_sha(sha) {
        return Err(FsError::bad_request("`sha` must be 4 to 64 hex digits"));
    }
    require_repository(git).await?;
    let out = git
        .run(
            &[
                "show",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "-M",
                "--format=fuller",
                sha,
                "--",
            ],
            None,
        )
        .await?;
    if !out.ok() {
        return Err(FsError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no commit {sha}: {}", out.stderr),
        ));
    }
    Ok((out.stdout, out.truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_and_shas() {
        let text = "aaaa\x1fAda\x1f1700000000\x1ffirst line\x1e\nbbbb\x1fBo\x1f1\x1f\x1e\n";
        let log = parse_log(text);
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].sha, "aaaa");
        assert_eq!(log[0].time_ms, 1_700_000_000_000);
        assert_eq!(log[1].subject, "");
        assert!(valid_sha("deadBEEF"));
        assert!(!valid_sha("--all"));
        assert!(!valid_sha("abc"));
    }

    #[test]
    fn paths_are_checked_before_git_sees_them() {
        assert!(client_paths(&[]).is_err());
        assert!(client_paths(&["../x".into()]).is_err());
        assert!(client_paths(&["/etc".into()]).is_err());
        assert_eq!(
            client_paths(&["-rf".into(), "a//b".into()]).unwrap(),
            ["-rf", "a/b"]
        );
    }
}
