//! Claude sessions: the real Claude Code CLI as a long-lived child per
//! session, speaking stream-json on stdin/stdout, its events streamed to
//! clients as `message.delta`, its permission prompts answered by them.
//!
//! Module map: [`process`] the CLI's command line, environment and spawn;
//! [`framing`] stdout bytes to event envelopes; [`event_log`] numbered events
//! in memory and on disk; [`broker`] permission prompts; [`session`] one
//! running CLI; [`attach`] streaming a session to one client; [`history`]
//! past conversations from the CLI's transcripts; [`db`] what SQLite keeps.
//!
//! [`ClaudeHost`] is the agent-wide part (where the CLI is, whether it works);
//! [`handle`] answers every `claude.*` client message.
//!
//! # What a client sees (checked against Claude Code 2.1.330)
//!
//! `claude.start` answers `session.created` (`info.type == "claude"`) and
//! `session.attached {offset: 0}`; then `message.delta {id, events}` where
//! each event is `{type, subtype?, sessionId?, requestId?, seq, raw}`: `raw`
//! is the CLI's line as printed, `seq` numbers events from 0 without gaps
//! (`session.attach {id, since: seq}` replays from there, from memory or
//! disk; without `since`, from the oldest kept). The kinds that matter:
//!
//! - `system/init`: `sessionId` is the conversation id (for resume);
//!   `raw.model`, `raw.cwd`, `raw.tools`, `raw.permissionMode`.
//! - `system/status` (`raw.status == "requesting"`) and `system/api_retry`
//!   (`raw.attempt`, `raw.max_retries`, `raw.retry_delay_ms`,
//!   `raw.error_status`): a request is under way / being retried.
//! - `stream_event` (subtype = `raw.event.type`): token deltas.
//!   `content_block_start` with `raw.event.content_block.type` `text` or
//!   `tool_use` (`id`, `name`); `content_block_delta` with
//!   `raw.event.delta.type == "text_delta"` (`.text`) or `"input_json_delta"`
//!   (`.partial_json`, concatenate per `raw.event.index`);
//!   `content_block_stop`, `message_delta` (stop reason), `message_stop`.
//! - `assistant`: the complete message (`raw.message.content[]` blocks:
//!   `text`, `tool_use {id, name, input}`, `thinking`); replaces the deltas.
//!   With `raw.error` set (and `raw.message.model == "<synthetic>"`) its text
//!   is the CLI's description of an API failure ("API Error: 529 ...").
//! - `user`: the prompt echoed back (`raw.message.content` a string), or tool
//!   results: content blocks `tool_result {tool_use_id, content, is_error}`,
//!   with `raw.tool_use_result` holding the tool's structured output.
//! - `control_request` / `can_use_tool`: a permission prompt. `requestId`;
//!   `raw.request.tool_name`, `.input`, `.description`,
//!   `.permission_suggestions`. Answer with `claude.permission {id,
//!   requestId, allow, updatedInput?, message?, remember?}`; every attached
//!   client then gets `claude.permission.resolved {id, requestId, allowed,
//!   reason}` (reason `answered`, `remembered`, `timeout`, `cancelled`).
//! - `control_cancel_request`: the CLI withdrew a prompt (e.g. interrupt).
//! - `control_response`: the CLI's answer to `claude.interrupt`.
//! - `result`: the turn is over. `raw.is_error`, `raw.result` (final text or
//!   error text), `raw.api_error_status`, `raw.usage` (tokens),
//!   `raw.total_cost_usd`, `raw.modelUsage`, `raw.duration_ms`,
//!   `raw.num_turns`, `raw.permission_denials`.
//! - `dispatch/*`, added by the agent: `permission_resolved` (same fields
//!   as the message, so a replay shows prompts as settled), `stderr`
//!   (`raw.text`), `line_dropped` (`raw.bytes`).
//!
//! The session ends with `session.ended {id, exitCode, reason}`: reason
//! `stopped`, `agent stopped`, `exited`, or `crashed: <how>: <last stderr>`.

pub mod attach;
pub mod broker;
pub mod budget;
pub mod db;
pub mod event_log;
pub mod framing;
pub mod history;
pub mod process;
pub mod session;
pub mod status;
pub mod turn_stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_api::protocol::PermissionMode;
use dispatch_api::{ClientMessage, ErrorCode, ServerMessage, SessionId};
use serde_json::{Value, json};

use crate::config::{MAX_MODEL_LEN, valid_model};
use crate::lock::lock;
use crate::paths::{self, PathError};
use crate::registry::{self, Entry, Registry};
use crate::session::{ClientError, Services, Session};

pub use session::ClaudeSession;

/// What a person without a Claude login is told to do, in either mode.
pub const NO_CREDENTIALS: &str = "Claude has no credentials: it is not logged in. Open a terminal in this workspace and run \
`claude` to log in (or `claude setup-token`), then start Claude again: terminals and this pane \
share one login. Or give Dispatch an API key: in local mode, export ANTHROPIC_API_KEY or \
CLAUDE_CODE_OAUTH_TOKEN before ./scripts/run-local.sh; in Kubernetes, set \
spec.anthropicApiKey of the Workspace (or workspaces.template in the chart) to a Secret key.";

/// How long `claude --version` may take before the CLI counts as broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest transcript sent in one `claude.transcript`.
const MAX_TRANSCRIPT_BYTES: usize = 8 * 1024 * 1024;

/// What running `<bin> --version` found.
#[derive(Debug, Clone, PartialEq)]
enum Probe {
    Works { path: PathBuf, version: String },
    Broken(String),
}

/// The agent-wide part of Claude sessions.
pub struct ClaudeHost {
    bin: String,
    /// `CLAUDE_CONFIG_DIR` for every session: `<workspace>/.dispatch/claude`.
    config_dir: PathBuf,
    /// Per-session event logs live in `<logs_dir>/<session id>/`.
    logs_dir: PathBuf,
    permission_timeout: Duration,
    /// For sessions whose `claude.start` names none (the agent's flags).
    defaults: SessionDefaults,
    running_as_root: bool,
    probe: Mutex<Option<Probe>>,
    /// Canonical workspace root: sessions run in directories under it.
    root: PathBuf,
    services: Arc<Services>,
    /// Events kept in memory per session, and on disk.
    mem_cap: usize,
    retention: u64,
    budget: Arc<budget::Budget>,
    /// Records each turn's changes.
    turns: Arc<crate::turns::recorder::Recorder>,
}

/// Where Claude sessions run and what they may keep.
pub struct Workspace {
    /// `<root>/.dispatch`
    pub state_dir: PathBuf,
    /// Canonical workspace root.
    pub root: PathBuf,
    pub services: Arc<Services>,
    pub mem_cap: usize,
    pub retention: u64,
    pub budget: Option<budget::Limit>,
    pub turns: Arc<crate::turns::recorder::Recorder>,
}

/// Model and permission mode for sessions that do not name them.
#[derive(Debug, Clone, Default)]
pub struct SessionDefaults {
    pub model: Option<String>,
    pub permission_mode: Option<PermissionMode>,
}

impl ClaudeHost {
    pub fn new(
        bin: &str,
        workspace: Workspace,
        permission_timeout: Duration,
        defaults: SessionDefaults,
    ) -> Arc<Self> {
        let host = Arc::new(ClaudeHost {
            bin: bin.to_owned(),
            config_dir: workspace.state_dir.join("claude"),
            budget: Arc::new(budget::Budget::open(
                workspace.budget,
                Some(workspace.state_dir.join("claude-budget.json")),
            )),
            logs_dir: workspace.state_dir.join("logs"),
            root: workspace.root,
            services: workspace.services,
            mem_cap: workspace.mem_cap,
            retention: workspace.retention,
            turns: workspace.turns,
            permission_timeout,
            defaults,
            // SAFETY: geteuid has no preconditions and cannot fail.
            running_as_root: unsafe { libc::geteuid() } == 0,
            probe: Mutex::new(None),
        });
        // Learn early whether the CLI works, so /readyz can say so.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = host.clone();
            rt.spawn(async move {
                let _ = h.probe().await;
            });
        }
        host
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The CLI's path and version, or why it cannot be used. A working CLI
    /// is remembered; a broken or missing one is looked at again next time.
    pub async fn probe(&self) -> Result<(PathBuf, String), String> {
        if let Some(Probe::Works { path, version }) = lock(&self.probe).clone() {
            return Ok((path, version));
        }
        let result = self.run_probe().await;
        *lock(&self.probe) = Some(match &result {
            Ok((path, version)) => Probe::Works {
                path: path.clone(),
                version: version.clone(),
            },
            Err(r) => Probe::Broken(r.clone()),
        });
        if let Err(r) = &result {
            tracing::warn!("Claude unavailable: {r}");
        }
        result
    }

    async fn run_probe(&self) -> Result<(PathBuf, String), String> {
        let path = process::resolve_bin(&self.bin, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            format!(
                "the Claude Code CLI was not found: {:?} is not an executable file{} (set --claude-bin or DISPATCH_CLAUDE_BIN)",
                self.bin,
                if self.bin.contains('/') { "" } else { " on PATH" }
            )
        })?;
        let out = tokio::time::timeout(
            PROBE_TIMEOUT,
            tokio::process::Command::new(&path)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| {
            format!(
                "{} --version did not answer within {PROBE_TIMEOUT:?}",
                path.display()
            )
        })?
        .map_err(|e| format!("could not run {}: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} --version failed ({}): {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((path, version))
    }

    /// Whether the CLI is usable as far as known now (no waiting).
    pub fn available(&self) -> bool {
        match &*lock(&self.probe) {
            Some(Probe::Works { .. }) => true,
            Some(Probe::Broken(_)) => false,
            None => process::resolve_bin(&self.bin, std::env::var_os("PATH").as_deref()).is_some(),
        }
    }

    /// The `claude` part of `/readyz`.
    pub fn readiness(&self) -> Value {
        let mut v = json!({"available": self.available(), "bin": self.bin});
        match &*lock(&self.probe) {
            Some(Probe::Works { path, version }) => {
                v["path"] = json!(path);
                v["version"] = json!(version);
            }
            Some(Probe::Broken(reason)) => v["reason"] = json!(reason),
            None => {}
        }
        v
    }
}

/// What the connection does with the outcome of a `claude.*` message.
pub enum Reply {
    Send(Box<ServerMessage>),
    /// A session started: announce it and attach the starter from seq 0.
    Started(Arc<ClaudeSession>),
}

fn agent_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// A registry entry that may be a Claude session.
pub trait AsClaude: Entry + From<Arc<ClaudeSession>> {
    fn claude(&self) -> Option<&Arc<ClaudeSession>>;
}

/// The Claude session `id`, or the error to send.
pub fn find<E: AsClaude>(
    registry: &Registry<E>,
    id: &SessionId,
) -> Result<Arc<ClaudeSession>, ClientError> {
    registry.find(id)?.claude().cloned().ok_or_else(|| {
        (
            ErrorCode::WrongSessionType,
            format!("session {id} is not a Claude session"),
        )
    })
}

/// Answers one `claude.*` message.
pub async fn handle<E: AsClaude>(
    host: &Arc<ClaudeHost>,
    registry: &Registry<E>,
    m: ClientMessage,
) -> Result<Vec<Reply>, ClientError> {
    match m {
        ClientMessage::ClaudeStart {
            resume,
            model,
            permission_mode,
            workspace_path,
            // Echoed by the connection, which knows the request.
            client_ref: _,
        } => {
            let s = start(
                host,
                registry,
                resume,
                model,
                permission_mode,
                workspace_path,
            )
            .await?;
            Ok(vec![Reply::Started(s)])
        }
        ClientMessage::ClaudeSend { id, input } => {
            let session = find(registry, &id)?;
            if !input.trim().is_empty() {
                // The workspace as it was, before the CLI reads the turn.
                host.turns.turn_started(id.as_str()).await;
            }
            session.send_input(&input)?;
            Ok(vec![])
        }
        ClientMessage::ClaudePermission {
            id,
            request_id,
            allow,
            updated_input,
            message,
            remember,
        } => {
            if updated_input.as_ref().is_some_and(|v| !v.is_object()) {
                return Err((
                    ErrorCode::InvalidField,
                    "updatedInput must be a JSON object".into(),
                ));
            }
            let answer = broker::Answer {
                allow,
                updated_input,
                message,
                remember,
            };
            find(registry, &id)?.answer(&request_id, answer)?;
            Ok(vec![])
        }
        ClientMessage::ClaudeInterrupt { id } => {
            find(registry, &id)?.interrupt()?;
            Ok(vec![])
        }
        ClientMessage::ClaudeConfigure {
            id,
            permission_mode,
            model,
        } => {
            if model.as_deref().is_some_and(|m| !valid_model(m)) {
                return Err((ErrorCode::InvalidField, "model is not a model name".into()));
            }
            find(registry, &id)?.configure(permission_mode, model.as_deref())?;
            Ok(vec![])
        }
        ClientMessage::ClaudeHistory {} => {
            let (cfg, root) = (host.config_dir.clone(), host.root.clone());
            let conversations = tokio::task::spawn_blocking(move || history::list(&cfg, &root))
                .await
                .map_err(|e| (ErrorCode::Internal, format!("history task failed: {e}")))?;
            Ok(vec![Reply::Send(Box::new(ServerMessage::ClaudeHistory {
                conversations,
            }))])
        }
        ClientMessage::ClaudeLoad { conversation_id } => {
            let cfg = host.config_dir.clone();
            let cid = conversation_id.clone();
            let entries = tokio::task::spawn_blocking(move || {
                history::find(&cfg, &cid).map(|p| history::load(&p, MAX_TRANSCRIPT_BYTES))
            })
            .await
            .map_err(|e| (ErrorCode::Internal, format!("transcript task failed: {e}")))?
            .ok_or_else(|| no_conversation(&conversation_id))?;
            Ok(vec![Reply::Send(Box::new(
                ServerMessage::ClaudeTranscript {
                    conversation_id,
                    entries,
                },
            ))])
        }
        _ => Err((ErrorCode::Internal, "not a claude.* message".into())),
    }
}

fn no_conversation(id: &str) -> ClientError {
    (
        ErrorCode::NoSuchSession,
        format!("no Claude conversation {id:?} in this workspace"),
    )
}

/// Where and as what a conversation continues: its cwd inside the
/// workspace (read from the transcript), and its title.
fn resume_target(host: &ClaudeHost, id: &str) -> Result<(PathBuf, String), ClientError> {
    if !history::is_valid_conversation_id(id) {
        return Err((
            ErrorCode::InvalidField,
            "resume must be a conversation id (letters, digits, '-', '_')".into(),
        ));
    }
    let path = history::find(&host.config_dir, id).ok_or_else(|| no_conversation(id))?;
    let lines = std::fs::read_to_string(&path)
        .map_err(|e| (ErrorCode::Internal, format!("reading the transcript: {e}")))?;
    let summary =
        history::summarize(lines.lines().map(str::to_owned)).ok_or_else(|| no_conversation(id))?;
    let cwd = summary.cwd.unwrap_or_default();
    let dir = paths::resolve_dir(&host.root, &cwd).map_err(|e| match e {
        PathError::Outside(_) => (
            ErrorCode::PathOutsideWorkspace,
            format!("conversation {id} ran in {cwd:?}, outside this workspace"),
        ),
        PathError::NotADirectory(_) => (
            ErrorCode::InvalidField,
            format!("conversation {id} ran in {cwd:?}, which no longer exists"),
        ),
    })?;
    Ok((dir, summary.title))
}

async fn start<E: AsClaude>(
    host: &Arc<ClaudeHost>,
    registry: &Registry<E>,
    resume: Option<String>,
    model: Option<String>,
    permission_mode: Option<PermissionMode>,
    workspace_path: Option<String>,
) -> Result<Arc<ClaudeSession>, ClientError> {
    let (bin, version) = host
        .probe()
        .await
        .map_err(|reason| (ErrorCode::ClaudeUnavailable, reason))?;
    let model = model.or_else(|| host.defaults.model.clone());
    let permission_mode = session::check_permission_mode(
        permission_mode.or(host.defaults.permission_mode),
        host.running_as_root,
    )?;
    if let Some(m) = &model
        && !valid_model(m)
    {
        return Err((
            ErrorCode::InvalidField,
            format!(
                "model must be 1 to {MAX_MODEL_LEN} characters of letters, digits and -_.:/[]@"
            ),
        ));
    }
    let (cwd, conversation, title) = match resume {
        Some(id) => {
            let h = host.clone();
            let cid = id.clone();
            let (cwd, title) = tokio::task::spawn_blocking(move || resume_target(&h, &cid))
                .await
                .map_err(|e| (ErrorCode::Internal, format!("resume task failed: {e}")))??;
            (cwd, process::Conversation::Resume(id), title)
        }
        None => {
            let rel = workspace_path.unwrap_or_default();
            let cwd = paths::resolve_dir(&host.root, &rel).map_err(|e| e.client_error())?;
            let id = uuid::Uuid::new_v4().to_string();
            (
                cwd,
                process::Conversation::New(id),
                session::NEW_TITLE.to_owned(),
            )
        }
    };
    let cwd_display = paths::relative_display(&host.root, &cwd);

    let admission = registry.admission().await;
    if let process::Conversation::Resume(cid) = &conversation
        && let Some(open) = running_with_conversation(registry, cid)
    {
        return Err((
            ErrorCode::AlreadyExists,
            format!("conversation {cid} is already open in session {open}; attach to that session"),
        ));
    }
    admission.check_limit()?;
    let id = registry::new_id('c');
    let launch = process::LaunchSpec {
        bin,
        cwd,
        config_dir: host.config_dir.clone(),
        conversation,
        model,
        permission_mode,
        session_id: id.as_str().to_owned(),
    };
    let env = process::env(&launch, agent_env());
    if !process::has_credentials(&env, &host.config_dir) {
        return Err((ErrorCode::ClaudeUnavailable, NO_CREDENTIALS.into()));
    }
    std::fs::create_dir_all(&host.config_dir).map_err(|e| {
        (
            ErrorCode::SpawnFailed,
            format!("creating {}: {e}", host.config_dir.display()),
        )
    })?;
    let spec = session::StartSpec {
        launch,
        env,
        title,
        cwd_display,
        log_dir: host.logs_dir.join(id.as_str()),
        mem_cap: host.mem_cap,
        retention: host.retention,
        permission_timeout: host.permission_timeout,
        budget: host.budget.clone(),
        turns: host.turns.clone(),
    };
    let session = ClaudeSession::start(host.services.clone(), id.clone(), spec).map_err(|e| {
        host.services.metrics.error(ErrorCode::SpawnFailed);
        (
            ErrorCode::SpawnFailed,
            format!("could not start the Claude CLI: {e:#}"),
        )
    })?;
    registry.insert(session.clone());
    drop(admission);
    tracing::info!(session = %id, conversation = %session.conversation_id(), %version, "claude session started");
    Ok(session)
}

/// Claude sessions of an earlier run, ended, with their events readable.
pub fn restore(
    state_services: &Arc<crate::session::Services>,
    row: &crate::db::SessionRow,
    mem_cap: usize,
    retention: u64,
) -> Option<Arc<ClaudeSession>> {
    let sid = row.id.clone();
    let conversation = state_services
        .db
        .call_blocking(move |c| db::get(c, &sid))
        .ok()
        .flatten()
        .map(|r| r.conversation_id);
    ClaudeSession::restore(
        state_services.clone(),
        row,
        conversation,
        mem_cap,
        retention,
    )
}

/// The running session that carries conversation `cid`, if one does: two
/// CLIs must not append to one transcript.
fn running_with_conversation<E: AsClaude>(registry: &Registry<E>, cid: &str) -> Option<SessionId> {
    registry
        .all()
        .iter()
        .filter_map(|e| e.claude())
        .filter(|s| s.is_running())
        .find(|s| s.conversation_id() == cid)
        .map(|s| s.id().clone())
}

/// `GET /claude/status` now, as of `version`.
pub fn status<E: AsClaude>(
    host: &ClaudeHost,
    registry: &Registry<E>,
    version: u64,
) -> dispatch_api::approvals::ClaudeStatus {
    let (now, now_ms) = (std::time::Instant::now(), crate::session::now_ms());
    let parts = registry
        .all()
        .iter()
        .filter_map(|e| e.claude())
        .map(|s| s.status(now, now_ms))
        .collect();
    status::assemble(version, parts, &host.budget, now_ms)
}

/// Whether any Claude session is in the middle of a turn (for `/activity`).
pub fn turn_running<E: AsClaude>(registry: &Registry<E>) -> bool {
    registry
        .all()
        .iter()
        .filter_map(|e| e.claude())
        .any(|s| s.turn_running())
}
