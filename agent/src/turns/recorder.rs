//! Records each Claude turn as two snapshots (before the CLI reads the
//! user's message, after its `result`) kept under
//! `refs/dispatch/turns/<session>/<n>/{before,after}` in the private
//! repository, so the list survives an agent restart; and undoes a turn by
//! writing back, for each path the turn changed, what was there before.
//!
//! One worker runs every snapshot and undo of the workspace in the order they
//! were asked for: they share the private index, and a turn's end must be
//! recorded before the next turn's start.

use std::sync::Arc;

use axum::http::StatusCode;
use dispatch_api::ErrorCode;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::snapshot::{Change, Snapshots};
use crate::files::confine::Root;
use crate::files::error::FsError;
use crate::files::relpath::RelPath;

/// Events queued for the worker before new ones are dropped (with a warning).
const QUEUE: usize = 256;

enum Job {
    Start {
        session: String,
        done: oneshot::Sender<()>,
    },
    End {
        session: String,
    },
    Undo {
        session: String,
        turn: u32,
        force: bool,
        reply: oneshot::Sender<Result<Undone, FsError>>,
    },
    /// Answered once every job queued before it is done: a client that saw
    /// a turn's `result` then asks for its changes sees the turn ended.
    Barrier(oneshot::Sender<()>),
}

/// What an undo did.
#[derive(Debug, Serialize)]
pub struct Undone {
    /// Paths written back as they were before the turn.
    pub restored: Vec<String>,
    /// Paths the turn had created, deleted.
    pub removed: Vec<String>,
}

/// One recorded turn.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnInfo {
    pub turn: u32,
    /// False while the turn runs (or when it never ended: the CLI stopped).
    pub complete: bool,
}

/// A turn's changes: the files and one combined diff.
#[derive(Debug, Serialize)]
pub struct TurnChanges {
    pub turn: u32,
    pub files: Vec<Change>,
    pub diff: String,
    pub truncated: bool,
}

pub struct Recorder {
    snaps: Arc<Snapshots>,
    jobs: mpsc::Sender<Job>,
}

fn turn_ref(session: &str, turn: u32, side: &str) -> String {
    format!("refs/dispatch/turns/{session}/{turn}/{side}")
}

struct Worker {
    snaps: Arc<Snapshots>,
    root: Arc<Root>,
    /// The turn that started and has not ended, per session.
    open: std::collections::HashMap<String, u32>,
}

impl Recorder {
    pub fn start(snaps: Snapshots, root: Arc<Root>) -> Recorder {
        let snaps = Arc::new(snaps);
        let (jobs, rx) = mpsc::channel(QUEUE);
        let worker = Worker {
            snaps: snaps.clone(),
            root,
            open: Default::default(),
        };
        tokio::spawn(worker.run(rx));
        Recorder { snaps, jobs }
    }

    /// Records the start of a turn; returns once the snapshot is taken (or
    /// failed, which is logged: the turn goes on without a record).
    pub async fn turn_started(&self, session: &str) {
        let (done, wait) = oneshot::channel();
        let job = Job::Start {
            session: session.to_owned(),
            done,
        };
        if self.jobs.send(job).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub fn turn_ended(&self, session: &str) {
        let job = Job::End {
            session: session.to_owned(),
        };
        if self.jobs.try_send(job).is_err() {
            tracing::warn!(session, "turn end not recorded: the snapshot queue is full");
        }
    }

    pub async fn undo(&self, session: &str, turn: u32, force: bool) -> Result<Undone, FsError> {
        let (reply, wait) = oneshot::channel();
        let job = Job::Undo {
            session: session.to_owned(),
            turn,
            force,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| FsError::internal("the turn recorder stopped"))?;
        wait.await
            .map_err(|_| FsError::internal("the turn recorder stopped"))?
    }

    async fn settled(&self) -> Result<(), FsError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Barrier(done))
            .await
            .map_err(|_| FsError::internal("the turn recorder stopped"))?;
        wait.await
            .map_err(|_| FsError::internal("the turn recorder stopped"))
    }

    /// The session's recorded turns, oldest first.
    pub async fn turns(&self, session: &str) -> Result<Vec<TurnInfo>, FsError> {
        self.settled().await?;
        let prefix = format!("refs/dispatch/turns/{session}/");
        let mut seen: std::collections::BTreeMap<u32, bool> = Default::default();
        for r in self.snaps.refs(&prefix).await? {
            let Some(rest) = r.strip_prefix(&prefix) else {
                continue;
            };
            let Some((n, side)) = rest.split_once('/') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            let complete = seen.entry(n).or_insert(false);
            *complete |= side == "after";
        }
        Ok(seen
            .into_iter()
            .map(|(turn, complete)| TurnInfo { turn, complete })
            .collect())
    }

    /// What a complete turn changed.
    pub async fn changes(&self, session: &str, turn: u32) -> Result<TurnChanges, FsError> {
        self.settled().await?;
        let (before, after) = self.pair(session, turn).await?;
        let files = self.snaps.changes(&before, &after).await?;
        let (diff, truncated) = self.snaps.diff(&before, &after).await?;
        Ok(TurnChanges {
            turn,
            files,
            diff,
            truncated,
        })
    }

    async fn pair(&self, session: &str, turn: u32) -> Result<(String, String), FsError> {
        pair(&self.snaps, session, turn).await
    }
}

async fn pair(snaps: &Snapshots, session: &str, turn: u32) -> Result<(String, String), FsError> {
    let before = snaps.kept(&turn_ref(session, turn, "before")).await?;
    let after = snaps.kept(&turn_ref(session, turn, "after")).await?;
    match (before, after) {
        (Some(b), Some(a)) => Ok((b, a)),
        (Some(_), None) => Err(FsError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("turn {turn} of session {session} has not ended"),
        )),
        _ => Err(FsError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no recorded turn {turn} in session {session}"),
        )),
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Start { session, done } => {
                    if let Err(e) = self.start(&session).await {
                        tracing::warn!(%session, "turn start not recorded: {}", e.message);
                    }
                    let _ = done.send(());
                }
                Job::End { session } => {
                    if let Err(e) = self.end(&session).await {
                        tracing::warn!(%session, "turn end not recorded: {}", e.message);
                    }
                }
                Job::Undo {
                    session,
                    turn,
                    force,
                    reply,
                } => {
                    let _ = reply.send(self.undo(&session, turn, force).await);
                }
                Job::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn next_turn(&self, session: &str) -> Result<u32, FsError> {
        let prefix = format!("refs/dispatch/turns/{session}/");
        let last = self
            .snaps
            .refs(&prefix)
            .await?
            .iter()
            .filter_map(|r| {
                r.strip_prefix(&prefix)?
                    .split('/')
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .max();
        Ok(last.map_or(1, |n| n + 1))
    }

    async fn start(&mut self, session: &str) -> Result<(), FsError> {
        let tree = self.snaps.take().await?;
        // A turn that never ended (interrupted, the CLI gone): it ends here.
        if let Some(open) = self.open.remove(session) {
            self.snaps
                .keep(&turn_ref(session, open, "after"), &tree)
                .await?;
        }
        let n = self.next_turn(session).await?;
        self.snaps
            .keep(&turn_ref(session, n, "before"), &tree)
            .await?;
        self.open.insert(session.to_owned(), n);
        tracing::debug!(session, turn = n, %tree, "turn started");
        Ok(())
    }

    async fn end(&mut self, session: &str) -> Result<(), FsError> {
        let Some(n) = self.open.remove(session) else {
            return Ok(());
        };
        let tree = self.snaps.take().await?;
        self.snaps
            .keep(&turn_ref(session, n, "after"), &tree)
            .await?;
        tracing::debug!(session, turn = n, %tree, "turn ended");
        Ok(())
    }

    async fn undo(&mut self, session: &str, turn: u32, force: bool) -> Result<Undone, FsError> {
        let (before, after) = pair(&self.snaps, session, turn).await?;
        let changed = self.snaps.changes(&before, &after).await?;
        let now = self.snaps.take().await?;
        if !force {
            let since = self.snaps.changes(&after, &now).await?;
            let drifted: Vec<&str> = since
                .iter()
                .filter(|c| changed.iter().any(|t| t.path == c.path))
                .map(|c| c.path.as_str())
                .collect();
            if !drifted.is_empty() {
                return Err(FsError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    format!(
                        "changed again since the turn ended: {}; undo with force=1 to overwrite",
                        drifted.join(", ")
                    ),
                ));
            }
        }
        let (added, rest): (Vec<&Change>, Vec<&Change>) =
            changed.iter().partition(|c| c.status == "added");
        let restored: Vec<String> = rest.iter().map(|c| c.path.clone()).collect();
        self.snaps.restore(&before, &restored).await?;
        let mut removed = Vec::new();
        for c in added {
            let rel = RelPath::parse(&c.path)?;
            let root = self.root.clone();
            let gone =
                tokio::task::spawn_blocking(move || crate::files::ops::delete(&root, &rel, false))
                    .await
                    .map_err(|e| FsError::internal(e.to_string()))?;
            match gone {
                Ok(()) => removed.push(c.path.clone()),
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            session,
            turn,
            restored = restored.len(),
            removed = removed.len(),
            "turn undone"
        );
        Ok(Undone { restored, removed })
    }
}
