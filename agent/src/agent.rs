//! The agent: its workspace, configuration and token, the services its
//! sessions use, the sessions service, and what the connections share
//! (shutdown signal, connection slots). Opened once at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dispatch_api::rest::Activity;
use tokio::sync::watch;

use crate::auth::Token;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::session::{Services, now_ms};
use crate::sessions::{RestoreLimits, Sessions};
use crate::terminal::screen_worker::ScreenWorker;
use crate::terminal::{Limits, Terminals};

pub struct Agent {
    pub config: Config,
    /// Canonical workspace root.
    pub root: PathBuf,
    pub name: String,
    pub token: Token,
    pub services: Arc<Services>,
    pub sessions: Sessions,
    pub claude: Arc<crate::claude::ClaudeHost>,
    /// The workspace's files, its git, and each Claude turn's changes (the
    /// REST routes beside the WebSocket).
    pub files: Arc<crate::files::Files>,
    pub git: Arc<crate::git::run::Git>,
    pub turns: Arc<crate::turns::recorder::Recorder>,
    /// What the terminal sessions share: screen worker, holder link.
    pub terminals: Arc<Terminals>,
    /// Set when the agent is shutting down; connections close.
    pub shutdown: watch::Sender<bool>,
    /// One permit per WebSocket connection served (`--max-connections`).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
}

impl Agent {
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
        let bounds = config.event_bounds();
        // Under a holder: the terminals that outlived the previous agent.
        let (holder, held) = match config.holder_fd {
            Some(fd) => {
                let (link, held) = crate::holder::HolderLink::connect(fd)?;
                (Some(link), held)
            }
            None => (None, Vec::new()),
        };
        db.call_blocking(move |c| crate::event_log_bounds::prune(c, &bounds, now))?;
        let services = Arc::new(Services::new(db, Metrics::new(), bounds));
        let limits = Limits {
            ring_bytes: config.ring_bytes as usize,
            retention_bytes: config.retention_bytes,
            input_rate: config.input_rate,
        };
        let files = Arc::new(crate::files::Files::open(&root, config.files.clone())?);
        let git = Arc::new(crate::git::open(&root, &config.files));
        let turns = Arc::new(crate::turns::start_recorder(&files, &git));
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
                turns: turns.clone(),
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
        let sessions = Sessions::restore(
            services.clone(),
            &terminals,
            held,
            RestoreLimits {
                keep: config.keep_sessions,
                max_running: config.max_sessions as usize,
            },
        )?;
        let (shutdown, _) = watch::channel(false);
        let config_max_connections = config.max_connections;
        Ok(Arc::new(Agent {
            config,
            root,
            name,
            token,
            services,
            sessions,
            claude,
            files,
            git,
            turns,
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
            running_sessions: self.sessions.running() as u32,
            claude_turn_running: self.sessions.claude_turn_running(),
            last_activity: self.services.last_activity(),
        }
    }

    /// Claude's state for watchers, as of now.
    pub fn claude_status(&self) -> dispatch_api::approvals::ClaudeStatus {
        // The version is read first: a change after it bumps it again, so a
        // watcher never keeps a stale picture under a current version.
        let version = *self.services.claude_changes.borrow();
        crate::claude::status(&self.claude, self.sessions.registry(), version)
    }
}
