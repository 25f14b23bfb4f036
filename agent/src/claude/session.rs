//! A Claude session: one long-lived CLI process speaking stream-json, its
//! numbered event log, and its permission prompts.
//!
//! Tasks per running session (all async):
//! - reader: frames stdout into events, appends them to the log, answers
//!   what needs no human (remembered tools, unsupported control requests);
//! - writer: the only writer of stdin; closing its queue closes stdin;
//! - stderr: keeps the tail (for a crash's reason) and logs it;
//! - timer: denies permission requests nobody answered in time;
//! - waiter: reaps the CLI, lets the reader drain, then reports the end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_api::protocol::{ClaudeEvent, PermissionMode};
use dispatch_api::{ErrorCode, ServerMessage, SessionId, SessionInfo, SessionKind};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};

use super::broker::{Answer, Broker, OnRequest, Outcome, Resolved};
use super::event_log::{Budget, EventLog, MemRead};
use super::framing::{Line, LineFramer, MAX_LINE};
use super::process::{self, LaunchSpec};
use super::turn_stats::TurnStats;
use crate::db::SessionRow;
use crate::lock::lock;
use crate::procs::{self, STOP_GRACE};
use crate::session::{ClientError, Meta, Services, Session, now_ms};

/// The title of a new conversation until its first prompt names it.
pub const NEW_TITLE: &str = "Claude";
/// Lines queued for stdin before input is refused.
const STDIN_QUEUE: usize = 256;
/// How long the reader may take to drain stdout after the CLI exited (a
/// grandchild holding the pipe must not keep the session open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Bytes of stderr kept for the reason a crash is reported with.
const STDERR_TAIL: usize = 4096;
/// Stderr lines passed to clients as events; the rest only go to the log.
const STDERR_EVENTS: u32 = 200;

/// Where the event log stands, published to attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub next_seq: u64,
    pub ended: bool,
}

struct Inner {
    log: EventLog,
    broker: Broker,
    stats: TurnStats,
}

pub struct ClaudeSession {
    id: SessionId,
    services: Arc<Services>,
    conversation_id: Mutex<String>,
    meta: Mutex<Meta>,
    inner: Mutex<Inner>,
    progress: watch::Sender<Progress>,
    stdin: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pid: Option<i32>,
    running: AtomicBool,
    turn_running: AtomicBool,
    attached: AtomicU32,
    stop_reason: Mutex<Option<String>>,
    timer_wake: Notify,
    interrupts: AtomicU64,
    /// The workspace's cost budget (none for sessions of an earlier run).
    budget: Option<Arc<super::budget::Budget>>,
    /// Told where each turn begins and ends (none for sessions of an earlier run).
    turns: Option<Arc<crate::turns::recorder::Recorder>>,
}

/// What a new session needs beyond the launch itself.
pub struct StartSpec {
    pub launch: LaunchSpec,
    pub env: std::collections::BTreeMap<String, String>,
    pub title: String,
    pub cwd_display: String,
    pub log_dir: std::path::PathBuf,
    pub mem_cap: usize,
    pub retention: u64,
    pub permission_timeout: Duration,
    pub budget: Arc<super::budget::Budget>,
    pub turns: Arc<crate::turns::recorder::Recorder>,
}

fn resolved_event(r: &Resolved) -> Value {
    json!({"type": "dispatch", "subtype": "permission_resolved",
           "request_id": r.request_id, "tool_name": r.tool_name,
           "allowed": r.allowed, "reason": r.reason})
}

/// The `claude.permission.resolved` message an event of ours stands for.
pub fn resolved_message(id: &SessionId, ev: &ClaudeEvent) -> Option<ServerMessage> {
    if ev.kind != "dispatch" || ev.subtype.as_deref() != Some("permission_resolved") {
        return None;
    }
    Some(ServerMessage::ClaudePermissionResolved {
        id: id.clone(),
        request_id: ev.request_id.clone()?,
        allowed: ev.raw.get("allowed").and_then(Value::as_bool)?,
        reason: ev.raw.get("reason").and_then(Value::as_str)?.to_owned(),
    })
}

fn exit_description(status: &std::process::ExitStatus) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (Some(c), format!("exit status {c}")),
        (None, Some(s)) => (
            None,
            format!(
                "killed by {}",
                Signal::try_from(s).map_or_else(|_| format!("signal {s}"), |s| s.to_string())
            ),
        ),
        _ => (None, "unknown exit".to_owned()),
    }
}

impl ClaudeSession {
    /// Spawns the CLI and its tasks. Must run inside the runtime.
    pub fn start(
        services: Arc<Services>,
        id: SessionId,
        spec: StartSpec,
    ) -> anyhow::Result<Arc<Self>> {
        let log = EventLog::create(Some(&spec.log_dir), spec.mem_cap, spec.retention)?;
        let mut child = process::spawn(&spec.launch, &spec.env)?;
        let pid = child.id().map(|p| p as i32);
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(STDIN_QUEUE);
        let (progress, _) = watch::channel(Progress {
            next_seq: 0,
            ended: false,
        });
        let created = now_ms();
        let session = Arc::new(ClaudeSession {
            id: id.clone(),
            services: services.clone(),
            conversation_id: Mutex::new(spec.launch.conversation.id().to_owned()),
            meta: Mutex::new(Meta::started(
                spec.title.clone(),
                spec.cwd_display.clone(),
                created,
                None,
            )),
            inner: Mutex::new(Inner {
                log,
                broker: Broker::new(spec.permission_timeout),
                stats: TurnStats::default(),
            }),
            progress,
            stdin: Mutex::new(Some(stdin_tx)),
            pid,
            running: AtomicBool::new(true),
            turn_running: AtomicBool::new(false),
            attached: AtomicU32::new(0),
            stop_reason: Mutex::new(None),
            timer_wake: Notify::new(),
            interrupts: AtomicU64::new(0),
            budget: Some(spec.budget.clone()),
            turns: Some(spec.turns.clone()),
        });

        let row = SessionRow {
            id: id.as_str().to_owned(),
            kind: "claude".into(),
            title: spec.title,
            cwd: spec.cwd_display,
            created,
            ended: None,
            exit_code: None,
            end_reason: None,
            cols: None,
            rows: None,
            log_dir: Some(services.db.stored_dir(&spec.log_dir)),
            oldest_offset: 0,
            end_offset: 0,
        };
        let rec = super::db::ClaudeRecord {
            session_id: id.as_str().to_owned(),
            conversation_id: spec.launch.conversation.id().to_owned(),
            model: spec.launch.model.clone(),
            permission_mode: spec
                .launch
                .permission_mode
                .map(|m| m.as_cli_arg().to_owned()),
        };
        services.db.fire("insert claude session", move |c| {
            crate::db::insert_session(c, &row)?;
            super::db::insert(c, &rec)
        });

        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        if let Some(stdin) = stdin {
            tokio::spawn(write_stdin(stdin, stdin_rx));
        }
        let reader = stdout.map(|out| tokio::spawn(session.clone().read_stdout(out)));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::<u8>::new()));
        let stderr_task =
            stderr.map(|err| tokio::spawn(session.clone().read_stderr(err, stderr_tail.clone())));
        tokio::spawn(session.clone().run_timer());
        let s = session.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // Let the readers pass on everything the CLI printed before
            // exiting; a pipe a leftover grandchild still holds is abandoned,
            // so nothing is appended after the end.
            for mut task in [reader, stderr_task].into_iter().flatten() {
                if tokio::time::timeout(DRAIN_GRACE, &mut task).await.is_err() {
                    task.abort();
                }
            }
            let tail = {
                let t = lock(&stderr_tail);
                let bytes: Vec<u8> = t.iter().copied().collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            s.finish(status, &tail);
        });
        services.metrics.sessions_started.inc();
        services.metrics.sessions_running.inc();
        Ok(session)
    }

    /// An ended session from an earlier run: its events replay from disk.
    pub fn restore(
        services: Arc<Services>,
        row: &SessionRow,
        conversation_id: Option<String>,
        mem_cap: usize,
        retention: u64,
    ) -> Option<Arc<Self>> {
        let id = SessionId::new(&row.id).ok()?;
        let log = match &row.log_dir {
            Some(d) => EventLog::open_existing(&services.db.resolve_dir(d), mem_cap, retention),
            None => EventLog::create(None, mem_cap, retention).ok()?,
        };
        let next_seq = log.next_seq();
        let (progress, _) = watch::channel(Progress {
            next_seq,
            ended: true,
        });
        Some(Arc::new(ClaudeSession {
            id,
            services,
            conversation_id: Mutex::new(conversation_id.unwrap_or_default()),
            meta: Mutex::new(Meta::restored(row, now_ms())),
            inner: Mutex::new(Inner {
                log,
                broker: Broker::new(Duration::from_secs(1)),
                stats: TurnStats::default(),
            }),
            progress,
            stdin: Mutex::new(None),
            pid: None,
            running: AtomicBool::new(false),
            turn_running: AtomicBool::new(false),
            attached: AtomicU32::new(0),
            stop_reason: Mutex::new(None),
            timer_wake: Notify::new(),
            interrupts: AtomicU64::new(0),
            budget: None,
            turns: None,
        }))
    }

    pub fn conversation_id(&self) -> String {
        lock(&self.conversation_id).clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn turn_running(&self) -> bool {
        self.turn_running.load(Ordering::Relaxed)
    }

    pub fn oldest_seq(&self) -> u64 {
        lock(&self.inner).log.oldest()
    }

    pub fn read_mem(&self, from: u64, budget: Budget) -> MemRead {
        lock(&self.inner).log.read_mem(from, budget)
    }

    fn ended_error(&self) -> ClientError {
        (
            ErrorCode::SessionEnded,
            format!("Claude session {} has ended", self.id),
        )
    }

    /// Queues one line for stdin.
    fn write(&self, v: &Value) -> Result<(), ClientError> {
        let guard = lock(&self.stdin);
        let Some(tx) = guard.as_ref() else {
            return Err(self.ended_error());
        };
        tx.try_send(process::line(v)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => (
                ErrorCode::RateLimited,
                "the Claude CLI is not reading its input; try again shortly".to_owned(),
            ),
            mpsc::error::TrySendError::Closed(_) => self.ended_error(),
        })
    }

    /// Appends an event and tells the attachments.
    fn push(&self, inner: &mut Inner, raw: Value) -> ClaudeEvent {
        let ev = inner.log.append(raw);
        let next = inner.log.next_seq();
        self.progress.send_modify(|p| p.next_seq = next);
        if let Some(cost) = inner.stats.observe(&ev, now_ms()) {
            let crossed = self.budget.as_ref().and_then(|b| b.spend(cost, now_ms()));
            if let Some(notice) = crossed.and_then(|_| self.budget.as_ref()?.notice(now_ms())) {
                // The pane shows it where the turn ended.
                self.push(inner, notice);
            }
            self.services.claude_changed();
        }
        ev
    }

    /// This session as `/claude/status` shows it, with its pending requests.
    pub fn status(&self, now: Instant, now_ms: i64) -> super::status::SessionParts {
        let inner = lock(&self.inner);
        super::status::SessionParts::new(
            &self.id,
            lock(&self.meta).title.clone(),
            self.is_running(),
            self.turn_running(),
            &inner.broker,
            &inner.stats,
            (now, now_ms),
        )
    }

    fn settle(&self, inner: &mut Inner, o: Outcome) {
        if let Err((_, msg)) = self.write(&o.response) {
            tracing::warn!(session = %self.id, "could not answer a permission request: {msg}");
        }
        self.push(inner, resolved_event(&o.resolved));
    }

    /// A user turn (`claude.send`).
    pub fn send_input(&self, text: &str) -> Result<(), ClientError> {
        if text.trim().is_empty() {
            return Err((ErrorCode::InvalidField, "input is empty".to_owned()));
        }
        if let Some(b) = &self.budget {
            b.allows_a_turn(now_ms())?;
        }
        self.write(&process::user_message(text))?;
        self.turn_running.store(true, Ordering::Relaxed);
        self.services.claude_changed();
        self.title_from_first_prompt(text);
        self.services.touch();
        self.services.metrics.input_bytes.inc_by(text.len() as u64);
        Ok(())
    }

    /// A new conversation is named after its first prompt, as the history
    /// names it, so the session list says more than "Claude".
    fn title_from_first_prompt(&self, text: &str) {
        let title = {
            let mut m = lock(&self.meta);
            if m.title != NEW_TITLE {
                return;
            }
            m.title = super::history::one_line(text);
            m.title.clone()
        };
        let id = self.id.as_str().to_owned();
        self.services.db.fire("claude session title", move |c| {
            super::db::set_title(c, &id, &title)
        });
    }

    /// A client's answer to a permission prompt; the first one wins.
    pub fn answer(&self, request_id: &str, a: Answer) -> Result<(), ClientError> {
        if !self.is_running() {
            return Err(self.ended_error());
        }
        let mut inner = lock(&self.inner);
        let o = inner.broker.answer(request_id, a).map_err(|e| {
            (
                ErrorCode::NoSuchRequest,
                format!("{e}: {request_id:?} in session {}", self.id),
            )
        })?;
        self.settle(&mut inner, o);
        drop(inner);
        self.timer_wake.notify_one();
        self.services.touch();
        Ok(())
    }

    /// Changes the permission mode and/or model of the running CLI through
    /// its control protocol; its `control_response` comes back as an event.
    pub fn configure(
        &self,
        mode: Option<PermissionMode>,
        model: Option<&str>,
    ) -> Result<(), ClientError> {
        let n = self.interrupts.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = mode {
            self.write(&process::set_permission_mode_request(
                &format!("dispatch-mode-{n}"),
                m,
            ))?;
        }
        if let Some(m) = model {
            self.write(&process::set_model_request(
                &format!("dispatch-model-{n}"),
                m,
            ))?;
        }
        Ok(())
    }

    /// Stops the running turn (the session goes on).
    pub fn interrupt(&self) -> Result<(), ClientError> {
        let n = self.interrupts.fetch_add(1, Ordering::Relaxed);
        self.write(&process::interrupt_request(&format!(
            "dispatch-interrupt-{n}"
        )))
    }

    fn on_json(&self, raw: Value) {
        let kind = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut inner = lock(&self.inner);
        let ev = self.push(&mut inner, raw);
        match kind.as_str() {
            "control_request" => {
                let request_id = ev.request_id.clone().unwrap_or_default();
                let req = ev.raw.get("request").cloned().unwrap_or(Value::Null);
                match ev.subtype.as_deref() {
                    Some("can_use_tool") => {
                        let tool = req.get("tool_name").and_then(Value::as_str).unwrap_or("");
                        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
                        match inner
                            .broker
                            .on_request(&request_id, tool, input, Instant::now())
                        {
                            OnRequest::Ask => self.timer_wake.notify_one(),
                            OnRequest::Auto(o) => self.settle(&mut inner, o),
                        }
                    }
                    other => {
                        let subtype = other.unwrap_or("");
                        tracing::warn!(session = %self.id, subtype, "unsupported control request");
                        let r = process::unsupported_response(&request_id, subtype);
                        if let Err((_, m)) = self.write(&r) {
                            tracing::warn!(session = %self.id, "could not answer: {m}");
                        }
                    }
                }
            }
            "control_cancel_request" => {
                if let Some(rid) = ev.request_id.as_deref()
                    && let Some(r) = inner.broker.cancel(rid)
                {
                    self.push(&mut inner, resolved_event(&r));
                }
            }
            "result" => {
                self.turn_running.store(false, Ordering::Relaxed);
                if let Some(turns) = &self.turns {
                    turns.turn_ended(self.id.as_str());
                }
            }
            "system" if ev.subtype.as_deref() == Some("init") => {
                if let Some(cid) = ev.session_id.clone() {
                    let mut cur = lock(&self.conversation_id);
                    if *cur != cid {
                        *cur = cid.clone();
                        let sid = self.id.as_str().to_owned();
                        self.services.db.fire("claude conversation id", move |c| {
                            super::db::set_conversation(c, &sid, &cid)
                        });
                    }
                }
            }
            _ => {}
        }
    }

    async fn read_stdout(self: Arc<Self>, mut out: tokio::process::ChildStdout) {
        let mut framer = LineFramer::new(MAX_LINE);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.services.touch();
            for line in framer.push(&buf[..n]) {
                self.on_line(line);
            }
        }
        if let Some(line) = framer.finish() {
            self.on_line(line);
        }
    }

    fn on_line(&self, line: Line) {
        match line {
            Line::Json(v) => self.on_json(v),
            Line::NotJson(s) => {
                if !s.trim().is_empty() {
                    tracing::debug!(session = %self.id, line = %s, "skipped a non-JSON stdout line");
                }
            }
            Line::TooLong(n) => {
                tracing::warn!(session = %self.id, bytes = n, "dropped an over-long stdout line");
                let mut inner = lock(&self.inner);
                self.push(
                    &mut inner,
                    json!({"type": "dispatch", "subtype": "line_dropped", "bytes": n}),
                );
            }
        }
    }

    async fn read_stderr(
        self: Arc<Self>,
        mut err: tokio::process::ChildStderr,
        tail: Arc<Mutex<VecDeque<u8>>>,
    ) {
        let mut framer = LineFramer::new(64 * 1024);
        let mut buf = vec![0u8; 16 * 1024];
        let mut passed = 0u32;
        loop {
            let n = match err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut t = lock(&tail);
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL);
                t.drain(..excess);
            }
            for line in framer.push(&buf[..n]) {
                let text = match line {
                    Line::Json(v) => v.to_string(),
                    Line::NotJson(s) => s,
                    Line::TooLong(n) => format!("({n} bytes)"),
                };
                if text.trim().is_empty() {
                    continue;
                }
                tracing::info!(session = %self.id, "claude stderr: {text}");
                if passed < STDERR_EVENTS {
                    passed += 1;
                    let mut inner = lock(&self.inner);
                    self.push(
                        &mut inner,
                        json!({"type": "dispatch", "subtype": "stderr", "text": text}),
                    );
                }
            }
        }
    }

    /// Denies permission requests whose time ran out.
    async fn run_timer(self: Arc<Self>) {
        loop {
            if !self.is_running() {
                return;
            }
            let next = lock(&self.inner).broker.next_deadline();
            let sleep = async {
                match next {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    let mut inner = lock(&self.inner);
                    for o in inner.broker.expire(Instant::now()) {
                        tracing::info!(session = %self.id, request = %o.resolved.request_id, "permission request timed out; denied");
                        self.settle(&mut inner, o);
                    }
                }
                _ = self.timer_wake.notified() => {}
            }
        }
    }

    fn finish(&self, status: std::io::Result<std::process::ExitStatus>, stderr_tail: &str) {
        lock(&self.stdin).take();
        self.running.store(false, Ordering::Relaxed);
        self.turn_running.store(false, Ordering::Relaxed);
        self.services.claude_changed();
        let (exit_code, how) = match &status {
            Ok(s) => exit_description(s),
            Err(e) => (None, format!("wait failed: {e}")),
        };
        let stopped = lock(&self.stop_reason).clone();
        let reason = match stopped {
            Some(r) => Some(r),
            None if exit_code == Some(0) => Some("exited".to_owned()),
            None => {
                let last = stderr_tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default();
                Some(format!("crashed: {how}{last}"))
            }
        };
        let ended = now_ms();
        let (oldest, end) = {
            let mut inner = lock(&self.inner);
            for r in inner.broker.drain() {
                self.push(&mut inner, resolved_event(&r));
            }
            (inner.log.oldest(), inner.log.next_seq())
        };
        lock(&self.meta).end(ended, exit_code, reason.clone());
        let id = self.id.as_str().to_owned();
        let r = reason.clone();
        self.services.db.fire("end claude session", move |c| {
            crate::db::end_session(c, &id, ended, exit_code, r.as_deref(), oldest, end)
        });
        self.services.event(
            Some(&self.id),
            "end",
            Some(format!("exit code {exit_code:?}, reason {reason:?}")),
        );
        self.services.metrics.sessions_running.dec();
        let _ = self.services.events.send(ServerMessage::SessionEnded {
            id: self.id.clone(),
            exit_code,
            reason,
        });
        // After the broadcast, as for terminals: a shutdown waiting for the
        // end finds `session.ended` queued for every connection.
        self.progress.send_modify(|p| p.ended = true);
        self.timer_wake.notify_one();
        tracing::info!(session = %self.id, ?exit_code, "claude session ended");
    }
}

async fn write_stdin(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    // Dropping stdin closes it: the CLI ends once it has nothing left to do.
}

impl Session for ClaudeSession {
    fn id(&self) -> &SessionId {
        &self.id
    }

    fn info(&self) -> SessionInfo {
        let positions = {
            let inner = lock(&self.inner);
            (inner.log.oldest(), inner.log.next_seq())
        };
        let mut info = lock(&self.meta).info(
            &self.id,
            SessionKind::Claude,
            positions,
            self.attached.load(Ordering::Relaxed),
        );
        info.conversation_id = Some(self.conversation_id());
        info
    }

    fn set_title(&self, title: String) {
        lock(&self.meta).title = title.clone();
        let id = self.id.as_str().to_owned();
        self.services.db.fire("claude session title", move |c| {
            super::db::set_title(c, &id, &title)
        });
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Closes stdin; if the CLI is still there after a grace, SIGTERM to its
    /// process group (and session), then SIGKILL.
    fn stop(&self, reason: &str) {
        if !self.is_running() {
            return;
        }
        lock(&self.stop_reason).get_or_insert_with(|| reason.to_owned());
        lock(&self.stdin).take();
        let Some(pid) = self.pid else { return };
        // The CLI's tools run in sessions of their own and may outlive it:
        // note them now, while they are still its descendants.
        let tools = procs::descendants(pid, &procs::live_procs());
        // Without its input the CLI ends by itself; if not, it is ended, and
        // what it started goes too.
        procs::stop_in_steps(
            pid,
            self.progress.subscribe(),
            |p| p.ended,
            &[Signal::SIGTERM, Signal::SIGKILL],
            end_leftovers(pid, tools),
        );
    }

    fn attachments(&self) -> &AtomicU32 {
        &self.attached
    }
}

/// Ends what is left of a stopped CLI's processes: its session, the tools
/// noted at the stop with whatever they started since, and the sessions
/// those tools lead (the CLI starts each in a session of its own, and what
/// a tool leaves behind when it dies stays there). SIGTERM until the grace
/// period is over, then SIGKILL. (They are not our children, so there is no
/// exit to await: /proc is looked at, once a round.)
async fn end_leftovers(sid: i32, tools: Vec<procs::Proc>) {
    let mut known = tools;
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    loop {
        let procs = procs::live_procs();
        // A process is traced to a tool through its parent, so what a tool
        // started is noted before the tool is signalled.
        for t in known.clone() {
            if t.is_in(&procs) {
                for d in procs::descendants(t.pid, &procs) {
                    if !d.is_in(&known) {
                        known.push(d);
                    }
                }
            }
        }
        let sessions: Vec<i32> = std::iter::once(sid)
            .chain(known.iter().filter(|t| t.sid == t.pid).map(|t| t.sid))
            .collect();
        let left: Vec<i32> = procs
            .iter()
            .filter(|p| sessions.contains(&p.sid) || p.is_in(&known))
            .map(|p| p.pid)
            .collect();
        if left.is_empty() {
            return;
        }
        let sig = if tokio::time::Instant::now() < deadline {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        for pid in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        if sig == Signal::SIGKILL {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The permission mode to run with, or why not.
pub fn check_permission_mode(
    mode: Option<PermissionMode>,
    running_as_root: bool,
) -> Result<Option<PermissionMode>, ClientError> {
    match mode {
        Some(PermissionMode::BypassPermissions) if running_as_root => Err((
            ErrorCode::Forbidden,
            "permission mode bypassPermissions is refused: the agent runs as root".to_owned(),
        )),
        m => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_is_refused_only_for_root() {
        assert_eq!(
            check_permission_mode(Some(PermissionMode::BypassPermissions), true)
                .unwrap_err()
                .0,
            ErrorCode::Forbidden
        );
        assert_eq!(
            check_permission_mode(Some(PermissionMode::BypassPermissions), false).unwrap(),
            Some(PermissionMode::BypassPermissions)
        );
        assert_eq!(
            check_permission_mode(Some(PermissionMode::Plan), true).unwrap(),
            Some(PermissionMode::Plan)
        );
        assert_eq!(check_permission_mode(None, true).unwrap(), None);
    }

    #[test]
    fn resolved_events_become_resolved_messages() {
        let id = SessionId::new("c1").unwrap();
        let r = Resolved {
            request_id: "r1".into(),
            tool_name: "Bash".into(),
            allowed: false,
            reason: "timeout".into(),
        };
        let ev = super::super::framing::envelope(resolved_event(&r), 3);
        assert_eq!(
            resolved_message(&id, &ev),
            Some(ServerMessage::ClaudePermissionResolved {
                id: id.clone(),
                request_id: "r1".into(),
                allowed: false,
                reason: "timeout".into()
            })
        );
        let other = super::super::framing::envelope(json!({"type": "result"}), 4);
        assert_eq!(resolved_message(&id, &other), None);
    }
}
