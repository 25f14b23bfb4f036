//! A terminal session: a program in a PTY, its output stream (ring, on-disk
//! log, emulated screen), and the threads that move bytes.
//!
//! Threads per running session, all off the async runtime:
//! - reader: blocking reads from the PTY master; writes each batch to the log,
//!   then the ring, then publishes the new end offset. Nothing it does waits on
//!   a subscriber or on the emulator.
//! - writer: blocking writes of client input to the PTY, from a bounded queue.
//! - waiter: `waitpid` on the child; then ends what the child left in its
//!   session, waits for the reader to drain, and reports the end.
//!
//! Its parts: [`attach`] streaming a session to one client; [`pty`]
//! spawning into a PTY; [`ring`], [`output_log`],
//! [`screen`] the output as memory, disk and emulated screen, with
//! [`screen_worker`] keeping screens caught up; [`spliced_output`] the
//! lossless output path under a holder; [`start`] `terminal.start`.

pub mod attach;
pub mod output_log;
pub mod pty;
pub mod ring;
pub mod screen;
pub mod screen_worker;
pub mod spliced_output;
pub mod start;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use dispatch_api::frame::{FrameBuf, FrameKind};
use dispatch_api::{ErrorCode, ServerMessage, SessionId, SessionInfo, SessionKind};
use nix::sys::signal::Signal;
use portable_pty::MasterPty;
use tokio::sync::watch;

use self::output_log::{LogRead, OutputLog, read_located};
use self::pty::SpawnSpec;
use self::ring::{Lapped, Ring};
use self::screen::Screen;
use self::screen_worker::{CatchUp, ScreenWorker};
use self::spliced_output::OutputPipe;
use crate::db::{self, SessionRow};
use crate::holder::{HeldFds, HeldSession, HolderLink};
use crate::lock::lock;
use crate::procs;
use crate::ratelimit::TokenBucket;
use crate::registry::{Entry, Registry};
use crate::session::{ClientError, Meta, Services, Session, now_ms};

/// Largest payload in one output frame.
pub const MAX_CHUNK: usize = 128 * 1024;
/// Input writes queued per session before `terminal.write` is refused.
const INPUT_QUEUE: usize = 256;
/// Most output the emulator parses to catch up for one snapshot.
pub const CATCH_UP_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ring_bytes: usize,
    pub retention_bytes: u64,
    pub input_rate: u64,
}

/// Where the output stream stands, published to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub end: u64,
    pub ended: bool,
}

/// A registry entry that may be a terminal session.
pub trait AsTerminal: Entry + From<Arc<TerminalSession>> {
    fn terminal(&self) -> Option<&Arc<TerminalSession>>;
}

/// What the terminal kind shares between its running sessions.
pub struct Terminals {
    /// Keeps the emulated screens caught up in the background.
    pub screen_worker: ScreenWorker,
    /// The holder that keeps terminals across agent restarts, when there is one.
    pub holder: Option<Arc<HolderLink>>,
    pub services: Arc<Services>,
    pub limits: Limits,
    /// Canonical workspace root: programs start in directories under it.
    pub root: PathBuf,
    /// Output logs live in `<logs_dir>/<session id>/`.
    pub logs_dir: PathBuf,
    /// Set for every program started (the Claude pane's config dir, so that
    /// `claude` in a terminal shares its login and history).
    pub shell_env: Vec<(String, String)>,
}

/// The terminal session `id` in `registry`, or the error to send.
pub fn find<E: AsTerminal>(
    registry: &Registry<E>,
    id: &SessionId,
) -> Result<Arc<TerminalSession>, ClientError> {
    registry.find(id)?.terminal().cloned().ok_or_else(|| {
        (
            ErrorCode::WrongSessionType,
            format!("session {id} is not a terminal"),
        )
    })
}

/// The PTY master: as portable-pty opened it, or as the holder handed it back.
enum Master {
    Pty(Box<dyn MasterPty + Send>),
    Held(OwnedFd),
}

impl Master {
    fn resize(&self, rows: u16, cols: u16) -> anyhow::Result<()> {
        match self {
            Master::Pty(m) => m.resize(pty::size(rows, cols)),
            Master::Held(fd) => pty::resize_fd(fd.as_raw_fd(), rows, cols),
        }
    }

    /// The PTY's foreground process group, for naming what runs in it.
    fn process_group_leader(&self) -> Option<i32> {
        match self {
            Master::Pty(m) => m.process_group_leader(),
            Master::Held(fd) => nix::unistd::tcgetpgrp(fd.as_fd()).ok().map(|p| p.as_raw()),
        }
    }
}

/// Where a session's output comes from.
enum Output {
    /// Read from the PTY into memory, then logged (no holder).
    Read(Box<dyn Read + Send>),
    /// Spliced PTY -> pipe -> log by the kernel (a holder keeps the pipe).
    Spliced(OutputPipe),
}

/// How the end of the session's program is learnt.
enum Exit {
    /// It is this agent's child: `waitpid`.
    Child(i32),
    /// The holder reaps it and says so.
    Holder,
    /// It ended while no agent ran.
    Known(Option<i32>),
}

struct Running {
    master: Master,
    /// The master fd, non-blocking: input is written straight from the
    /// connection's task when the PTY has room, else queued for the writer thread.
    fd: Option<i32>,
    input: mpsc::SyncSender<Vec<u8>>,
    /// Writes queued for the writer thread and not yet done; while any are,
    /// new input queues behind them to keep its order.
    queued: Arc<AtomicU32>,
}

pub struct TerminalSession {
    id: SessionId,
    services: Arc<Services>,
    meta: Mutex<Meta>,
    ring: Mutex<Ring>,
    log: Mutex<Option<OutputLog>>,
    progress: watch::Sender<Progress>,
    screen: Mutex<Screen>,
    screen_queued: AtomicBool,
    /// The kind's shared parts; none for a session restored ended.
    terminals: Option<Arc<Terminals>>,
    running: Mutex<Option<Running>>,
    /// Taken by the writer thread when it starts.
    input_rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    pid: Option<i32>,
    bucket: Mutex<TokenBucket>,
    attached: AtomicU32,
    stop_reason: Mutex<Option<String>>,
}

/// What `terminal.start` asks for, checked and resolved.
pub struct StartSpec {
    pub title: String,
    /// Working directory relative to the workspace root, for display.
    pub cwd_display: String,
    pub spawn: SpawnSpec,
    /// Directory for this session's output log.
    pub log_dir: PathBuf,
}

/// How an attach begins, decided under the ring lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPlan {
    pub from: u64,
    pub lost_before: Option<u64>,
}

/// A read from disk for a subscriber catching up.
pub enum DiskChunk {
    Frame(FrameBuf),
    AtEnd,
    Gone { oldest: u64 },
}

impl TerminalSession {
    /// Starts the program (blocking: fork/exec and file creation). With a
    /// holder, the session's descriptors go to it before any output is read.
    pub fn start(
        services: Arc<Services>,
        terminals: Arc<Terminals>,
        id: SessionId,
        spec: StartSpec,
        limits: Limits,
    ) -> anyhow::Result<Arc<Self>> {
        let spawned = pty::spawn(&spec.spawn)?;
        if let Some(fd) = spawned.master_fd {
            pty::set_nonblocking(fd)?;
        }
        // Created after the spawn so that a failed start leaves nothing behind;
        // the reader thread, which writes it, starts later still.
        let log = match OutputLog::create(&spec.log_dir, limits.retention_bytes) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, session = %id, "no output log; replay limited to memory");
                None
            }
        };
        let created = now_ms();
        let rows = spec.spawn.rows;
        let cols = spec.spawn.cols;
        let meta = Meta::started(
            spec.title.clone(),
            spec.cwd_display.clone(),
            created,
            Some((cols, rows)),
        );
        let row = SessionRow {
            id: id.as_str().to_owned(),
            kind: "terminal".into(),
            title: spec.title,
            cwd: spec.cwd_display,
            created,
            ended: None,
            exit_code: None,
            end_reason: None,
            cols: Some(cols),
            rows: Some(rows),
            log_dir: Some(services.db.stored_dir(&spec.log_dir)),
            oldest_offset: 0,
            end_offset: 0,
        };
        let pid = spawned.pid;
        let start = procs::Proc::of(pid).map_or(0, |p| p.start());
        // With a holder, the output goes PTY -> pipe -> log (kernel-side)
        // and the session's row is written before the holder takes it, so a
        // successor agent finds both.
        let held = match (&terminals.holder, spawned.master_fd, &log) {
            (Some(holder), Some(fd), Some(_)) => {
                let pipe = OutputPipe::new()?;
                let r = row.clone();
                services.db.call_blocking(move |c| {
                    db::insert_session(c, &r)?;
                    db::set_leader(c, &r.id, pid, start)
                })?;
                // SAFETY: the master fd stays open as long as `spawned.master`.
                let master = unsafe { BorrowedFd::borrow_raw(fd) };
                holder.hold(
                    id.as_str(),
                    pid,
                    start,
                    [master, pipe.r.as_fd(), pipe.w.as_fd()],
                );
                Some(pipe)
            }
            _ => {
                // Written before the client hears of the session, so that an
                // agent that crashes right after still lists it on restart.
                let written = services.db.call_blocking(move |c| {
                    db::insert_session(c, &row)?;
                    db::set_leader(c, &row.id, pid, start)
                });
                if let Err(e) = written {
                    tracing::warn!(error = %e, session = %id, "database: insert session failed");
                }
                None
            }
        };
        let session = Self::running(
            services.clone(),
            terminals,
            id,
            meta,
            limits,
            log,
            0,
            pid,
            Master::Pty(spawned.master),
            spawned.master_fd,
        );
        let exit = Exit::Child(pid);
        match held {
            Some(pipe) => {
                session
                    .clone()
                    .run_threads(Output::Spliced(pipe), spawned.writer, exit)?
            }
            None => {
                session
                    .clone()
                    .run_threads(Output::Read(spawned.reader), spawned.writer, exit)?
            }
        }
        services.metrics.sessions_started.inc();
        services.metrics.sessions_running.inc();
        Ok(session)
    }

    /// A session whose program outlived the agent that started it, handed
    /// back by the holder: it runs on, its output continuing where the log
    /// (and what the pipe still held) ends.
    pub fn adopt(
        services: Arc<Services>,
        terminals: Arc<Terminals>,
        row: &SessionRow,
        held: HeldSession,
        limits: Limits,
    ) -> anyhow::Result<Arc<Self>> {
        let id = SessionId::new(&row.id)?;
        let log_dir = row
            .log_dir
            .as_deref()
            .map(|d| services.db.resolve_dir(d))
            .ok_or_else(|| anyhow::anyhow!("session {} has no output log", row.id))?;
        let log = OutputLog::open_existing(&log_dir, limits.retention_bytes, row.end_offset)?;
        let end = log.end();
        let rows = row.rows.unwrap_or(24);
        let cols = row.cols.unwrap_or(80);
        let meta = Meta {
            ended: None,
            exit_code: None,
            end_reason: None,
            size: Some((cols, rows)),
            ..Meta::restored(row, now_ms())
        };
        let HeldFds {
            master,
            pipe_r,
            pipe_w,
        } = held.fds;
        let fd = master.as_raw_fd();
        pty::set_nonblocking(fd)?;
        let session = Self::running(
            services.clone(),
            terminals,
            id,
            meta,
            limits,
            Some(log),
            end,
            held.pid,
            Master::Held(master),
            Some(fd),
        );
        let exit = match held.exited {
            Some(code) => Exit::Known(code),
            None => Exit::Holder,
        };
        session.clone().run_threads(
            Output::Spliced(OutputPipe::from_fds(pipe_r, pipe_w)),
            Box::new(std::io::sink()),
            exit,
        )?;
        services.metrics.sessions_running.inc();
        tracing::info!(session = %row.id, pid = held.pid, "session carried on from the previous agent");
        Ok(session)
    }

    #[allow(clippy::too_many_arguments)]
    fn running(
        services: Arc<Services>,
        terminals: Arc<Terminals>,
        id: SessionId,
        meta: Meta,
        limits: Limits,
        log: Option<OutputLog>,
        end: u64,
        pid: i32,
        master: Master,
        fd: Option<i32>,
    ) -> Arc<Self> {
        let (input_tx, input_rx) = mpsc::sync_channel::<Vec<u8>>(INPUT_QUEUE);
        let (cols, rows) = meta.size.unwrap_or((80, 24));
        let oldest = log.as_ref().map_or(end, |l| l.oldest());
        Arc::new(TerminalSession {
            id,
            services,
            meta: Mutex::new(meta),
            ring: Mutex::new(Ring::new(limits.ring_bytes, end)),
            log: Mutex::new(log),
            progress: watch::Sender::new(Progress { end, ended: false }),
            screen: Mutex::new(Screen::new(rows, cols, oldest)),
            screen_queued: AtomicBool::new(false),
            terminals: Some(terminals),
            running: Mutex::new(Some(Running {
                master,
                fd,
                input: input_tx,
                queued: Arc::new(AtomicU32::new(0)),
            })),
            input_rx: Mutex::new(Some(input_rx)),
            pid: Some(pid),
            bucket: Mutex::new(TokenBucket::new(
                limits.input_rate,
                limits.input_rate.max(4096),
                Instant::now(),
            )),
            attached: AtomicU32::new(0),
            stop_reason: Mutex::new(None),
        })
    }

    /// The reader, writer and waiter threads of a running session.
    fn run_threads(
        self: Arc<Self>,
        output: Output,
        mut writer: Box<dyn Write + Send>,
        exit: Exit,
    ) -> anyhow::Result<()> {
        let id = self.id.clone();
        let pid = self.pid.unwrap_or(0);
        let (fd, queued) = {
            let running = lock(&self.running);
            let r = running
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("session {id} is not running"))?;
            (r.fd, r.queued.clone())
        };
        let input_rx = lock(&self.input_rx)
            .take()
            .ok_or_else(|| anyhow::anyhow!("session {id} runs already"))?;
        let (reader_done_tx, reader_done_rx) = mpsc::channel::<()>();
        let s = self.clone();
        std::thread::Builder::new()
            .name(format!("pty-read-{id}"))
            .spawn(move || {
                match output {
                    Output::Read(mut reader) => s.read_loop(&mut reader, fd),
                    Output::Spliced(pipe) => s.read_loop_spliced(fd, &pipe),
                }
                let _ = reader_done_tx.send(());
            })?;
        std::thread::Builder::new()
            .name(format!("pty-write-{id}"))
            .spawn(move || {
                for buf in input_rx {
                    let r = match fd {
                        Some(fd) => pty::write_all_waiting(fd, &buf),
                        None => writer.write_all(&buf),
                    };
                    queued.fetch_sub(1, Ordering::AcqRel);
                    if r.is_err() {
                        break;
                    }
                }
                drop(writer);
            })?;
        let s = self;
        std::thread::Builder::new()
            .name(format!("pty-wait-{id}"))
            .spawn(move || {
                let code = match exit {
                    Exit::Child(pid) => pty::wait_exit(pid),
                    Exit::Known(code) => code,
                    Exit::Holder => match s.holder() {
                        Some(h) => h.wait_exit(s.id.as_str()),
                        None => None,
                    },
                };
                // Like a terminal window closing: what the program left behind goes too.
                procs::kill_session(pid, Signal::SIGHUP);
                if reader_done_rx
                    .recv_timeout(Duration::from_millis(500))
                    .is_err()
                {
                    procs::kill_session(pid, Signal::SIGKILL);
                    let _ = reader_done_rx.recv_timeout(Duration::from_secs(2));
                }
                procs::kill_session(pid, Signal::SIGKILL);
                s.finish(code);
            })?;
        Ok(())
    }

    /// An ended session from an earlier run of the agent: its output log is
    /// readable by attach; nothing runs.
    pub fn restore(services: Arc<Services>, row: &SessionRow, limits: Limits) -> Option<Arc<Self>> {
        let id = SessionId::new(&row.id).ok()?;
        let log_dir = row.log_dir.as_deref().map(|d| services.db.resolve_dir(d));
        let log = log_dir.as_ref().and_then(|d| {
            OutputLog::open_existing(d, limits.retention_bytes, row.end_offset)
                .map_err(|e| tracing::warn!(error = %e, session = %row.id, "output log unreadable"))
                .ok()
        });
        let end = log
            .as_ref()
            .map_or(row.end_offset, |l| l.end().max(row.end_offset));
        let oldest = log.as_ref().map_or(end, |l| l.oldest());
        let rows = row.rows.unwrap_or(24);
        let cols = row.cols.unwrap_or(80);
        Some(Arc::new(TerminalSession {
            id,
            services,
            meta: Mutex::new(Meta {
                size: Some((cols, rows)),
                ..Meta::restored(row, now_ms())
            }),
            // Small: nothing more is appended.
            ring: Mutex::new(Ring::new(1, end)),
            log: Mutex::new(log),
            progress: watch::Sender::new(Progress { end, ended: true }),
            screen: Mutex::new(Screen::new(rows, cols, oldest)),
            screen_queued: AtomicBool::new(false),
            terminals: None,
            running: Mutex::new(None),
            input_rx: Mutex::new(None),
            pid: None,
            bucket: Mutex::new(TokenBucket::new(0, 0, Instant::now())),
            attached: AtomicU32::new(0),
            stop_reason: Mutex::new(None),
        }))
    }

    fn read_loop(self: &Arc<Self>, reader: &mut Box<dyn Read + Send>, fd: Option<i32>) {
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            if let Some(fd) = fd {
                // The fd is non-blocking (for the input side): wait here.
                pty::poll_fd(fd, libc::POLLIN, -1);
            }
            let mut len = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue;
                }
                // EIO: every process holding the slave side has closed it.
                Err(_) => return,
            };
            // A PTY read returns at most a few KiB. Gathering what is already
            // there into one batch costs a poll(0) per read and saves a log
            // write, a lock and a wake-up per few KiB under a flood; a lone
            // keystroke echo goes out at once.
            if let Some(fd) = fd {
                while len + 4096 <= buf.len() && pty::readable_now(fd) {
                    match reader.read(&mut buf[len..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                }
            }
            self.push_output(&buf[..len]);
        }
    }

    fn push_output(self: &Arc<Self>, data: &[u8]) {
        // Disk first, so that every offset a subscriber can see is on disk too.
        {
            let mut log = lock(&self.log);
            if let Some(l) = log.as_mut() {
                let r = l.append(data);
                self.logged(&mut log, r);
            }
        }
        self.publish(data);
    }

    /// Records a change of segments after a log write, or disables the log
    /// after a failed one.
    fn logged(&self, log: &mut Option<OutputLog>, r: std::io::Result<bool>) {
        let Some(l) = log.as_mut() else { return };
        match r {
            Ok(false) => {}
            Ok(true) => {
                let id = self.id.as_str().to_owned();
                let starts = l.segment_starts();
                let (oldest, end) = (l.oldest(), l.end());
                self.services.db.fire("segments", move |c| {
                    db::set_segments(c, &id, &starts, oldest, end)
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %self.id, dir = %l.dir().display(), "output log write failed; log disabled");
                *log = None;
            }
        }
    }

    /// The read side with a holder: see [`spliced_output`].
    fn read_loop_spliced(self: &Arc<Self>, fd: Option<i32>, pipe: &OutputPipe) {
        let Some(fd) = fd else { return };
        // SAFETY: the master stays open while the session runs (in
        // `running`, and in the holder).
        let master = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut buf = Vec::with_capacity(MAX_CHUNK);
        // What a previous agent moved into the pipe and never logged.
        self.drain_pipe(pipe, &mut buf);
        loop {
            pty::poll_fd(fd, libc::POLLIN, -1);
            let r = pipe.fill_from(master, MAX_CHUNK);
            self.drain_pipe(pipe, &mut buf);
            match r {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) => {}
                // EIO: every process holding the slave side has closed it.
                Err(_) => return,
            }
        }
    }

    /// Moves what waits in the pipe into the log, then to the ring and the
    /// subscribers (read back from the log).
    fn drain_pipe(self: &Arc<Self>, pipe: &OutputPipe, buf: &mut Vec<u8>) {
        let n = match pipe.pending() {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.clear();
        {
            let mut log = lock(&self.log);
            if let Some(l) = log.as_mut() {
                let from = l.end();
                let r = l.append_spliced(pipe.r.as_fd(), n);
                let ok = r.is_ok();
                self.logged(&mut log, r);
                if let (true, Some(l)) = (ok, log.as_ref()) {
                    while buf.len() < n {
                        let at = from + buf.len() as u64;
                        match l.read(at, n - buf.len(), buf) {
                            Ok(LogRead::Bytes(_)) => {}
                            _ => break,
                        }
                    }
                }
            }
        }
        if buf.len() < n {
            // No log (or it failed mid-way): take the rest straight from the
            // pipe, as much as it still holds (it is blocking).
            let want = (n - buf.len()).min(pipe.pending().unwrap_or(0));
            let mut rest = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match nix::unistd::read(&pipe.r, &mut rest[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            buf.extend_from_slice(&rest[..got]);
        }
        self.publish(buf);
    }

    /// Puts logged output in the ring and tells the subscribers.
    fn publish(self: &Arc<Self>, data: &[u8]) {
        let end = {
            let mut ring = lock(&self.ring);
            ring.append(data);
            ring.end()
        };
        self.progress.send_modify(|p| p.end = end);
        self.services.metrics.output_bytes.inc_by(data.len() as u64);
        self.services.touch();
        if let Some(t) = &self.terminals
            && !self.screen_queued.swap(true, Ordering::AcqRel)
        {
            t.screen_worker.queue(self);
        }
    }

    fn finish(&self, exit_code: Option<i32>) {
        let reason = lock(&self.stop_reason).take();
        // Closes the master and ends the writer thread.
        lock(&self.running).take();
        let ended = now_ms();
        lock(&self.meta).end(ended, exit_code, reason.clone());
        let (oldest, end) = self.oldest_and_end();
        // An ended session keeps its output on disk only; subscribers still
        // draining its tail read from there.
        if lock(&self.log).is_some() {
            *lock(&self.ring) = Ring::new(1, end);
            // Hand the freed ring back to the system rather than keep it in
            // the allocator's free lists.
            crate::memory::trim();
        }
        let id = self.id.as_str().to_owned();
        let r = reason.clone();
        self.services.db.fire("end session", move |c| {
            db::end_session(c, &id, ended, exit_code, r.as_deref(), oldest, end)
        });
        // After the end is queued for the database: a successor agent finds
        // either the session in the holder or its end in the database.
        if let Some(h) = self.holder() {
            h.release(self.id.as_str());
        }
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
        // Last: whoever waits for the end (the attachments, `stop_all` and
        // with it the shutdown) finds its database write queued and its
        // `session.ended` already in the connections' event queues.
        self.progress.send_modify(|p| p.ended = true);
        tracing::info!(session = %self.id, ?exit_code, "session ended");
    }

    fn holder(&self) -> Option<&Arc<HolderLink>> {
        self.terminals.as_ref()?.holder.as_ref()
    }

    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    pub(crate) fn oldest_and_end(&self) -> (u64, u64) {
        // One lock at a time: the reader takes log then ring, never both.
        let (start, end) = {
            let ring = lock(&self.ring);
            (ring.start(), ring.end())
        };
        let log_oldest = lock(&self.log).as_ref().map(|l| l.oldest());
        let oldest = log_oldest.map_or(start, |o| o.min(start));
        (oldest, end)
    }

    /// Queues keystrokes for the program.
    pub fn write(&self, data: Vec<u8>) -> Result<(), ClientError> {
        let running = lock(&self.running);
        let Some(r) = running.as_ref() else {
            return Err((
                ErrorCode::SessionEnded,
                format!("session {} has ended", self.id),
            ));
        };
        if !lock(&self.bucket).try_take(data.len() as u64, Instant::now()) {
            return Err((
                ErrorCode::RateLimited,
                format!("input to session {} is over the rate limit", self.id),
            ));
        }
        let n = data.len() as u64;
        let mut data = data;
        // Straight to the PTY when nothing is queued and it has room: no
        // thread hop on the keystroke path.
        if let Some(fd) = r.fd
            && r.queued.load(Ordering::Acquire) == 0
        {
            match pty::write_nonblocking(fd, &data) {
                Ok(w) if w == data.len() => {
                    self.services.metrics.input_bytes.inc_by(n);
                    self.services.touch();
                    return Ok(());
                }
                Ok(w) => {
                    data.drain(..w);
                }
                Err(_) => {
                    return Err((
                        ErrorCode::SessionEnded,
                        format!("session {} has ended", self.id),
                    ));
                }
            }
        }
        r.queued.fetch_add(1, Ordering::AcqRel);
        match r.input.try_send(data) {
            Ok(()) => {
                self.services.metrics.input_bytes.inc_by(n);
                self.services.touch();
                Ok(())
            }
            Err(mpsc::TrySendError::Full(_)) => {
                r.queued.fetch_sub(1, Ordering::AcqRel);
                Err((
                    ErrorCode::RateLimited,
                    format!("session {} is not reading its input", self.id),
                ))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err((
                ErrorCode::SessionEnded,
                format!("session {} has ended", self.id),
            )),
        }
    }

    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), ClientError> {
        let running = lock(&self.running);
        let Some(r) = running.as_ref() else {
            return Err((
                ErrorCode::SessionEnded,
                format!("session {} has ended", self.id),
            ));
        };
        r.master
            .resize(rows, cols)
            .map_err(|e| (ErrorCode::Internal, format!("resize failed: {e}")))?;
        // The bytes read so far were laid out for the old size.
        let at = lock(&self.ring).end();
        lock(&self.screen).resize_at(at, rows, cols);
        lock(&self.meta).size = Some((cols, rows));
        let id = self.id.as_str().to_owned();
        self.services
            .db
            .fire("resize", move |c| db::update_size(c, &id, cols, rows));
        Ok(())
    }

    /// Where a replay from `since` starts.
    pub fn plan_replay(&self, since: u64) -> Result<ReplayPlan, ClientError> {
        let (oldest, end) = self.oldest_and_end();
        if since > end {
            return Err((
                ErrorCode::InvalidField,
                format!("since {since} is past the end of the output ({end})"),
            ));
        }
        if since < oldest {
            return Ok(ReplayPlan {
                from: oldest,
                lost_before: Some(oldest),
            });
        }
        Ok(ReplayPlan {
            from: since,
            lost_before: None,
        })
    }

    /// An output frame of up to `max` bytes from `from`, copied straight from
    /// the ring into the frame; `None` when there is nothing new.
    pub fn ring_frame(&self, from: u64, max: usize) -> Result<Option<FrameBuf>, Lapped> {
        let ring = lock(&self.ring);
        let (a, b) = ring.slices(from, max)?;
        if a.is_empty() {
            return Ok(None);
        }
        let mut f = FrameBuf::new(FrameKind::Output, &self.id, from, a.len() + b.len());
        f.push(a);
        f.push(b);
        Ok(Some(f))
    }

    /// An output frame read from the on-disk log (blocking).
    pub fn disk_frame(&self, from: u64, max: usize) -> DiskChunk {
        let located = lock(&self.log)
            .as_ref()
            .map(|l| (l.locate(from), l.dir().to_owned()));
        let Some((loc, dir)) = located else {
            return DiskChunk::Gone {
                oldest: lock(&self.ring).start(),
            };
        };
        let mut f = FrameBuf::new(FrameKind::Output, &self.id, from, max.min(MAX_CHUNK));
        match f.fill(|payload| read_located(&dir, loc, max, payload)) {
            Ok(LogRead::Bytes(_)) => DiskChunk::Frame(f),
            Ok(LogRead::AtEnd) => DiskChunk::AtEnd,
            Ok(LogRead::Gone { oldest }) => DiskChunk::Gone { oldest },
            Err(e) => {
                tracing::warn!(error = %e, session = %self.id, "reading output log");
                DiskChunk::Gone {
                    oldest: lock(&self.ring).start(),
                }
            }
        }
    }

    /// Brings the emulator up to the current end and serialises the screen
    /// (blocking: may parse and read the log). Returns the offset the screen
    /// reflects and the snapshot bytes.
    pub fn snapshot(&self) -> (u64, Vec<u8>) {
        let mut screen = lock(&self.screen);
        self.catch_up(&mut screen, usize::MAX);
        (screen.parsed_upto(), screen.snapshot())
    }

    /// Called by the screen worker once the session's output has paused.
    /// Parses up to the end as it stood when called, in small slices so that a
    /// snapshot never waits long for the lock, and gives up as soon as output
    /// resumes (the next pause queues the session again).
    fn catch_up_screen_in_background(&self) {
        self.screen_queued.store(false, Ordering::Release);
        let target = self.progress().end;
        loop {
            // A snapshot in progress is catching up already.
            let Ok(mut screen) = self.screen.try_lock() else {
                return;
            };
            let before = screen.parsed_upto();
            if before >= target {
                return;
            }
            self.catch_up(&mut screen, 64 * 1024);
            let after = screen.parsed_upto();
            drop(screen);
            if after == before || self.progress().end != target {
                return;
            }
        }
    }

    /// Feeds the emulator from where it stands to the end of the output (or
    /// `budget` bytes), reading from the ring, else from the log.
    ///
    /// A backlog over [`CATCH_UP_MAX`] is skipped but for its last
    /// `CATCH_UP_MAX` bytes: that much output redraws any screen, and it keeps
    /// the cost of a snapshot bounded after a flood. (Modes set only in the
    /// skipped part, say an alternate-screen switch followed by megabytes of
    /// drawing, would be missed.)
    fn catch_up(&self, screen: &mut Screen, budget: usize) {
        // Up to the end as it stands now, not chasing a flood that goes on.
        let end = lock(&self.ring).end();
        if end.saturating_sub(screen.parsed_upto()) > CATCH_UP_MAX {
            screen.skip_to(end - CATCH_UP_MAX);
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut fed = 0usize;
        while fed < budget && screen.parsed_upto() < end {
            let from = screen.parsed_upto();
            buf.clear();
            let got = lock(&self.ring).copy_into(from, 64 * 1024, &mut buf);
            match got {
                Ok(0) => return,
                Ok(n) => {
                    screen.feed(from, &buf);
                    fed += n;
                }
                Err(Lapped { start }) => {
                    let loc_dir = lock(&self.log)
                        .as_ref()
                        .map(|l| (l.locate(from), l.dir().to_owned()));
                    let read =
                        loc_dir.map(|(loc, dir)| read_located(&dir, loc, 256 * 1024, &mut buf));
                    match read {
                        Some(Ok(LogRead::Bytes(n))) => {
                            screen.feed(from, &buf);
                            fed += n;
                        }
                        Some(Ok(LogRead::Gone { oldest })) if oldest > from => {
                            screen.skip_to(oldest.min(start));
                        }
                        _ => screen.skip_to(start),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
impl TerminalSession {
    /// A session whose output the test feeds ([`Self::push_output`]) as the
    /// PTY reader would, and ends ([`Self::finish`]) as the waiter would; no
    /// program runs. With `log_dir`, its output is logged there too.
    pub(crate) fn fed(
        services: Arc<Services>,
        id: &str,
        ring_bytes: usize,
        log_dir: Option<PathBuf>,
    ) -> Arc<Self> {
        let log = log_dir
            .as_ref()
            .map(|d| OutputLog::create(d, 1 << 30).expect("output log"));
        Arc::new(TerminalSession {
            id: SessionId::new(id).expect("session id"),
            services,
            meta: Mutex::new(Meta::started("t".into(), ".".into(), 0, Some((80, 24)))),
            ring: Mutex::new(Ring::new(ring_bytes, 0)),
            log: Mutex::new(log),
            progress: watch::Sender::new(Progress {
                end: 0,
                ended: false,
            }),
            screen: Mutex::new(Screen::new(24, 80, 0)),
            screen_queued: AtomicBool::new(false),
            terminals: None,
            running: Mutex::new(None),
            input_rx: Mutex::new(None),
            pid: None,
            bucket: Mutex::new(TokenBucket::new(0, 0, Instant::now())),
            attached: AtomicU32::new(0),
            stop_reason: Mutex::new(None),
        })
    }
}

impl CatchUp for TerminalSession {
    fn output_end(&self) -> u64 {
        self.progress().end
    }

    fn catch_up_in_background(&self) {
        self.catch_up_screen_in_background();
    }
}

impl Session for TerminalSession {
    fn id(&self) -> &SessionId {
        &self.id
    }

    fn set_title(&self, title: String) {
        lock(&self.meta).title = title.clone();
        let id = self.id.as_str().to_owned();
        self.services
            .db
            .fire("rename", move |c| db::set_title(c, &id, &title));
    }

    fn info(&self) -> SessionInfo {
        let positions = self.oldest_and_end();
        let mut info = lock(&self.meta).info(
            &self.id,
            SessionKind::Terminal,
            positions,
            self.attached.load(Ordering::Relaxed),
        );
        let group = lock(&self.running)
            .as_ref()
            .and_then(|r| r.master.process_group_leader());
        info.foreground = group
            .filter(|g| Some(*g) != self.pid)
            .and_then(procs::command_name);
        info
    }

    fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    fn stop(&self, reason: &str) {
        let Some(pid) = self.pid else { return };
        if !self.is_running() {
            return;
        }
        lock(&self.stop_reason).get_or_insert_with(|| reason.to_owned());
        procs::kill_session(pid, Signal::SIGHUP);
        procs::kill_session(pid, Signal::SIGTERM);
        procs::stop_in_steps(
            pid,
            self.progress.subscribe(),
            |p| p.ended,
            &[Signal::SIGKILL],
            async {},
        );
    }

    fn attachments(&self) -> &AtomicU32 {
        &self.attached
    }
}
