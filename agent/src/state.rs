//! The agent's state: configuration, the session registry, services, and the
//! operations that create sessions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dispatch_api::SessionInfo;
use dispatch_api::rest::Activity;
use tokio::sync::watch;

use crate::auth::Token;
use crate::config::Config;
use crate::db::{self, Db};
use crate::metrics::Metrics;
use crate::registry::Entry;
use crate::session::{Services, now_ms};
use crate::sessions::{AnySession, Sessions};
use crate::terminal::Terminals;
use crate::terminal::screen_worker::ScreenWorker;
use crate::terminal::{Limits, TerminalSession};

pub struct AgentState {
    pub config: Config,
    /// Canonical workspace root.
    pub root: PathBuf,
    /// `<root>/.dispatch`
    pub state_dir: PathBuf,
    pub name: String,
    pub token: Token,
    pub services: Arc<Services>,
    pub registry: Sessions,
    pub limits: Limits,
    pub claude: Arc<crate::claude::ClaudeHost>,
    /// What the terminal sessions share: screen worker, holder link.
    pub terminals: Arc<Terminals>,
    /// Set when the agent is shutting down; connections close.
    pub shutdown: watch::Sender<bool>,
    /// One permit per WebSocket connection served (`--max-connections`).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
}

impl AgentState {
    /// Opens the workspace: creates it if needed, opens the database, marks
    /// sessions an earlier run left running as ended, and lists past sessions.
    pub fn open(config: Config, token: Token) -> anyhow::Result<Arc<Self>> {
        use crate::workspace_identity::{self as identity, IdentityError};
        // Checked at every start: the directory may have been swapped since
        // the last one.
        identity::refuse_symlink(&config.workspace, IdentityError::SymlinkedRoot)?;
        std::fs::create_dir_all(&config.workspace)?;
        let root = config.workspace.canonicalize()?;
        let state_dir = root.join(".dispatch");
        identity::refuse_symlink(&state_dir, IdentityError::SymlinkedStateDir)?;
        std::fs::create_dir_all(&state_dir)?;
        let name = config.name.clone().unwrap_or_else(|| {
            root.file_name()
                .map_or_else(|| "workspace".into(), |n| n.to_string_lossy().into_owned())
        });
        let db = Db::open(&state_dir.join("agent.db"))?;
        // Before anything in the state is read or changed.
        let expected = config.workspace_id.clone();
        db.call_blocking(move |c| {
            Ok(identity::bind(c, expected.as_deref()).map_err(|e| e.to_string()))
        })?
        .map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(state_dir.join("logs"))?;
        let now = now_ms();
        let keep = config.keep_sessions;
        let bounds = config.event_bounds();
        // Under a holder: the terminals that outlived the previous agent.
        let (holder, mut held) = match config.holder_fd {
            Some(fd) => {
                let (link, held) = crate::holder::HolderLink::connect(fd)?;
                (Some(link), held)
            }
            None => (None, Vec::new()),
        };
        let carried: Vec<String> = held.iter().map(|h| h.id.clone()).collect();
        let (rows, (ended, leaders)) = db.call_blocking(move |c| {
            crate::event_log_bounds::prune(c, &bounds, now)?;
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
        let services = Arc::new(Services::new(db, Metrics::new(), bounds));
        let limits = Limits {
            ring_bytes: config.ring_bytes as usize,
            retention_bytes: config.retention_bytes,
            input_rate: config.input_rate,
        };
        let claude = crate::claude::ClaudeHost::new(
            &config.claude_bin,
            crate::claude::Workspace {
                state_dir: state_dir.clone(),
                root: root.clone(),
                services: services.clone(),
                mem_cap: limits.ring_bytes,
                retention: limits.retention_bytes,
                budget: config
                    .claude_budget_usd
                    .map(|usd| crate::claude::budget::Limit {
                        usd,
                        period_secs: config.claude_budget_period,
                    }),
            },
            Duration::from_secs(config.claude_permission_timeout),
            crate::claude::SessionDefaults {
                model: config.claude_model.clone(),
                permission_mode: config.claude_permission_mode,
            },
        );
        let terminals = Arc::new(Terminals {
            screen_worker: ScreenWorker::start()?,
            holder,
            services: services.clone(),
            limits,
            root: root.clone(),
            logs_dir: state_dir.join("logs"),
            shell_env: vec![(
                "CLAUDE_CONFIG_DIR".to_owned(),
                claude.config_dir().to_string_lossy().into_owned(),
            )],
        });
        let registry = Sessions::new(config.max_sessions as usize);
        for row in &rows {
            // A session whose end is recorded stays ended, even when the
            // agent that recorded it died before telling the holder.
            if let Some(i) = held
                .iter()
                .position(|h| h.id == row.id && row.ended.is_none())
            {
                let h = held.swap_remove(i);
                let (id, pid) = (h.id.clone(), h.pid);
                match TerminalSession::adopt(services.clone(), terminals.clone(), row, h, limits) {
                    Ok(s) => {
                        registry.insert(s);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, session = %id, "cannot carry the session on; ending it");
                        crate::procs::kill_session(pid, nix::sys::signal::Signal::SIGKILL);
                        if let Some(h) = &terminals.holder {
                            h.release(&id);
                        }
                    }
                }
            }
            // Other kinds restore themselves where they are implemented.
            if row.kind == "terminal"
                && let Some(s) = TerminalSession::restore(services.clone(), row, limits)
            {
                registry.insert(s);
            } else if row.kind == "claude"
                && let Some(s) = crate::claude::restore(
                    &services,
                    row,
                    limits.ring_bytes,
                    limits.retention_bytes,
                )
            {
                registry.insert(s);
            }
        }
        for h in held {
            // Held, but not among the sessions listed: nothing to show it in.
            tracing::warn!(session = %h.id, "held session unknown to the database; ending it");
            if h.exited.is_none() {
                crate::procs::kill_session(h.pid, nix::sys::signal::Signal::SIGKILL);
            }
            if let Some(l) = &terminals.holder {
                l.release(&h.id);
            }
        }
        let (shutdown, _) = watch::channel(false);
        let config_max_connections = config.max_connections;
        Ok(Arc::new(AgentState {
            config,
            root,
            state_dir,
            name,
            token,
            services,
            registry,
            limits,
            claude,
            terminals,
            shutdown,
            connection_slots: Arc::new(tokio::sync::Semaphore::new(
                config_max_connections as usize,
            )),
        }))
    }

    pub fn activity(&self) -> Activity {
        Activity {
            attached_clients: self.services.metrics.connections.get().max(0) as u32,
            running_sessions: self.registry.running() as u32,
            claude_turn_running: crate::claude::turn_running(&self.registry),
            last_activity: self.services.last_activity(),
        }
    }

    /// Claude's state for watchers, as of now.
    pub fn claude_status(&self) -> dispatch_api::approvals::ClaudeStatus {
        // The version is read first: a change after it bumps it again, so a
        // watcher never keeps a stale picture under a current version.
        let version = *self.services.claude_changes.borrow();
        crate::claude::status(&self.claude, &self.registry, version)
    }

    /// Whether the Claude CLI can be found (on PATH or as a path).
    pub fn claude_available(&self) -> bool {
        self.claude.available()
    }

    pub fn session_infos(&self) -> Vec<SessionInfo> {
        self.registry.infos()
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
