//! The sessions service: every session of the workspace, of either kind, as
//! the layer above the kinds sees them. It brings back what an earlier run
//! left (restore), admits new sessions within the limit (through its
//! [`Registry`]), and stops them all at shutdown. Kinds are told apart by one
//! enum, [`AnySession`], so code that needs one kind matches on it.

use std::sync::Arc;
use std::time::Duration;

use dispatch_api::{SessionId, SessionInfo};
use nix::sys::signal::Signal;

use crate::claude::{AsClaude, ClaudeSession};
use crate::db::{self, SessionRow};
use crate::holder::HeldSession;
use crate::registry::{Entry, Registry};
use crate::session::{Services, Session, now_ms};
use crate::terminal::{AsTerminal, TerminalSession, Terminals};

#[derive(Clone)]
pub enum AnySession {
    Terminal(Arc<TerminalSession>),
    Claude(Arc<ClaudeSession>),
}

impl Entry for AnySession {
    fn session(&self) -> &dyn Session {
        match self {
            AnySession::Terminal(s) => s.as_ref(),
            AnySession::Claude(s) => s.as_ref(),
        }
    }
}

impl From<Arc<TerminalSession>> for AnySession {
    fn from(s: Arc<TerminalSession>) -> Self {
        AnySession::Terminal(s)
    }
}

impl From<Arc<ClaudeSession>> for AnySession {
    fn from(s: Arc<ClaudeSession>) -> Self {
        AnySession::Claude(s)
    }
}

impl AsTerminal for AnySession {
    fn terminal(&self) -> Option<&Arc<TerminalSession>> {
        match self {
            AnySession::Terminal(s) => Some(s),
            AnySession::Claude(_) => None,
        }
    }
}

impl AsClaude for AnySession {
    fn claude(&self) -> Option<&Arc<ClaudeSession>> {
        match self {
            AnySession::Claude(s) => Some(s),
            AnySession::Terminal(_) => None,
        }
    }
}

/// Every session of the workspace.
pub struct Sessions {
    registry: Registry<AnySession>,
    services: Arc<Services>,
}

/// What restoring needs to know of the workspace's settings.
#[derive(Debug, Clone, Copy)]
pub struct RestoreLimits {
    /// Ended sessions listed (`--keep-sessions`).
    pub keep: u32,
    /// Sessions that may run at once (`--max-sessions`).
    pub max_running: usize,
}

impl Sessions {
    /// The sessions of an earlier run: those it left running are marked
    /// ended (and what they left running is ended), those `held` by a holder
    /// run on, the rest are listed as ended with their output readable.
    pub fn restore(
        services: Arc<Services>,
        terminals: &Arc<Terminals>,
        mut held: Vec<HeldSession>,
        limits: RestoreLimits,
    ) -> anyhow::Result<Self> {
        let now = now_ms();
        let carried: Vec<String> = held.iter().map(|h| h.id.clone()).collect();
        let keep = limits.keep;
        let (rows, (ended, leaders)) = services.db.call_blocking(move |c| {
            let ended = db::mark_left_running(c, now, &carried)?;
            if !ended.is_empty() {
                tracing::info!(
                    sessions = ended.len(),
                    "marked sessions of the previous run as ended by the restart"
                );
            }
            let leaders = db::leaders(c, &ended)?;
            Ok((db::load_sessions(c, keep)?, (ended, leaders)))
        })?;
        // What those sessions left running goes (`nohup`, `setsid` and
        // signal-ignoring children outlived a crash).
        crate::leftovers::end(
            &ended.into_iter().collect(),
            &leaders,
            crate::procs::STOP_GRACE,
        );
        let sessions = Sessions {
            registry: Registry::new(limits.max_running),
            services,
        };
        for row in &rows {
            if let Some(s) = sessions.bring_back(terminals, row, &mut held) {
                sessions.registry.insert(s);
            }
        }
        for h in held {
            // Held, but not among the sessions listed: nothing to show it in.
            tracing::warn!(session = %h.id, "held session unknown to the database; ending it");
            if h.exited.is_none() {
                crate::procs::kill_session(h.pid, Signal::SIGKILL);
            }
            if let Some(l) = &terminals.holder {
                l.release(&h.id);
            }
        }
        Ok(sessions)
    }

    /// The session of `row`: carried on when a holder kept its terminal,
    /// else ended, of its kind.
    fn bring_back(
        &self,
        terminals: &Arc<Terminals>,
        row: &SessionRow,
        held: &mut Vec<HeldSession>,
    ) -> Option<AnySession> {
        let services = &self.services;
        let limits = terminals.limits;
        // A session whose end is recorded stays ended, even when the agent
        // that recorded it died before telling the holder.
        if let Some(i) = held
            .iter()
            .position(|h| h.id == row.id && row.ended.is_none())
        {
            let h = held.swap_remove(i);
            let (id, pid) = (h.id.clone(), h.pid);
            match TerminalSession::adopt(services.clone(), terminals.clone(), row, h, limits) {
                Ok(s) => return Some(s.into()),
                Err(e) => {
                    tracing::warn!(error = %e, session = %id, "cannot carry the session on; ending it");
                    crate::procs::kill_session(pid, Signal::SIGKILL);
                    if let Some(h) = &terminals.holder {
                        h.release(&id);
                    }
                }
            }
        }
        match row.kind.as_str() {
            "terminal" => TerminalSession::restore(services.clone(), row, limits).map(Into::into),
            "claude" => {
                crate::claude::restore(services, row, limits.ring_bytes, limits.retention_bytes)
                    .map(Into::into)
            }
            _ => None,
        }
    }

    /// The registry, for the kinds' own operations (start, find).
    pub fn registry(&self) -> &Registry<AnySession> {
        &self.registry
    }

    pub fn get(&self, id: &SessionId) -> Option<AnySession> {
        self.registry.get(id)
    }

    /// Oldest first.
    pub fn infos(&self) -> Vec<SessionInfo> {
        self.registry.infos()
    }

    pub fn running(&self) -> usize {
        self.registry.running()
    }

    /// Whether any Claude session is in the middle of a turn (for `/activity`).
    pub fn claude_turn_running(&self) -> bool {
        crate::claude::turn_running(&self.registry)
    }

    /// Stops every running session and waits (bounded) for them to end.
    pub async fn stop_all(&self, reason: &str) {
        let running: Vec<AnySession> = self
            .registry
            .all()
            .into_iter()
            .filter(|e| e.session().is_running())
            .collect();
        for e in &running {
            e.session().stop(reason);
        }
        let deadline =
            tokio::time::Instant::now() + crate::procs::STOP_GRACE + Duration::from_secs(2);
        for e in &running {
            match e {
                AnySession::Terminal(t) => {
                    let mut rx = t.subscribe();
                    let _ = tokio::time::timeout_at(deadline, rx.wait_for(|p| p.ended)).await;
                }
                AnySession::Claude(c) => {
                    let mut rx = c.subscribe();
                    let _ = tokio::time::timeout_at(deadline, rx.wait_for(|p| p.ended)).await;
                }
            }
        }
        // Let the database thread write what the sessions reported.
        let _ = self.services.db.call(|_| Ok(())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::event_log_bounds::EventBounds;
    use crate::metrics::Metrics;
    use crate::terminal::Limits;
    use crate::terminal::screen_worker::ScreenWorker;

    fn row(id: &str, kind: &str, created: i64, ended: Option<i64>) -> SessionRow {
        SessionRow {
            id: id.into(),
            kind: kind.into(),
            title: id.into(),
            cwd: ".".into(),
            created,
            ended,
            exit_code: None,
            end_reason: None,
            cols: Some(80),
            rows: Some(24),
            log_dir: None,
            oldest_offset: 0,
            end_offset: 0,
        }
    }

    #[tokio::test]
    async fn restore_lists_an_earlier_runs_sessions_ended_and_stop_all_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("agent.db")).unwrap();
        db.call_blocking(|c| {
            // Left running by a run that crashed; ended cleanly; a kind this
            // agent does not know.
            db::insert_session(c, &row("t1", "terminal", 1, None))?;
            db::insert_session(c, &row("t2", "terminal", 2, Some(5)))?;
            db::insert_session(c, &row("x3", "unknown", 3, Some(6)))
        })
        .unwrap();
        let bounds = EventBounds {
            max_rows: 100,
            max_age_ms: 1 << 40,
            per_connection: 100,
        };
        let services = Arc::new(Services::new(db, Metrics::new(), bounds));
        let limits = Limits {
            ring_bytes: 4096,
            retention_bytes: 1 << 20,
            input_rate: 1 << 20,
        };
        let terminals = Arc::new(Terminals {
            screen_worker: ScreenWorker::start().unwrap(),
            holder: None,
            services: services.clone(),
            limits,
            root: dir.path().to_owned(),
            logs_dir: dir.path().join("logs"),
            shell_env: Vec::new(),
        });
        let limits = RestoreLimits {
            keep: 10,
            max_running: 4,
        };
        let before = now_ms();
        let sessions = Sessions::restore(services.clone(), &terminals, Vec::new(), limits).unwrap();
        let infos = sessions.infos();
        let ids: Vec<&str> = infos.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert!(
            infos[0].ended.is_some_and(|t| t >= before),
            "{:?}",
            infos[0]
        );
        assert_eq!(infos[1].ended, Some(5));
        assert_eq!(sessions.running(), 0);
        assert!(matches!(
            sessions.get(&SessionId::new("t1").unwrap()),
            Some(AnySession::Terminal(_))
        ));
        // The end of the session left running is in the database too.
        let rows = services
            .db
            .call_blocking(|c| db::load_sessions(c, 10))
            .unwrap();
        assert!(rows.iter().all(|r| r.ended.is_some()), "{rows:?}");
        tokio::time::timeout(Duration::from_secs(30), sessions.stop_all("test"))
            .await
            .unwrap();
    }
}
