//! The holder process (`dispatch-agent --hold`): binds the agent's address,
//! runs the agent as its child with the listening socket and one end of a
//! socket pair, keeps every terminal's PTY master (and the pipe its output
//! passes through) that the agent hands it, and restarts the agent when it
//! dies. A restarted agent gets the descriptors back and carries on the
//! sessions; meanwhile the shells keep running (the holder is a child
//! subreaper, so they become its children and it collects their exit codes)
//! and their output waits in the kernel's buffers.
//!
//! It does no terminal I/O itself and links nothing the agent's sessions
//! need: what kills it (SIGKILL, a pod deletion) still ends the shells.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill, pthread_sigmask, sigaction,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::wire::{self, FromHolder, ToHolder};
use crate::lock::lock;
use crate::procs;

/// A restarted agent that fails before it serves is retried this often
/// before the holder gives up (and the shells end with it).
const RESTARTS_BEFORE_READY: u32 = 5;
/// First delay before a restart; it doubles after each quick failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Held {
    pid: i32,
    start: u64,
    fds: Vec<OwnedFd>,
    /// Set once the program ended: its exit code, if known.
    exited: Option<Option<i32>>,
}

#[derive(Default)]
struct State {
    held: BTreeMap<String, Held>,
    /// The running agent's pid and socket.
    agent: Option<(i32, Arc<OwnedFd>)>,
    ready: bool,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the main loop's backoff wait on SIGTERM.
    wake: Condvar,
}

/// Runs the holder; `agent_args` are this process's arguments without
/// `--hold`, for the agent.
pub fn run(listen: std::net::SocketAddr, agent_args: Vec<OsString>) -> ExitCode {
    match hold(listen, agent_args) {
        Ok(code) => code,
        Err(e) => {
            say(format_args!("dispatch-agent --hold: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn signals() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s
}

extern "C" fn ignore(_: libc::c_int) {}

use dispatch_process::say;

fn hold(listen: std::net::SocketAddr, agent_args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    // SIGTERM and SIGINT are taken by one thread with sigwait; children get
    // an empty mask back before exec. They are blocked before the handler is
    // set: until then one kills the holder (nothing to stop yet), after it
    // one waits for sigwait, and none can reach the do-nothing handler and
    // be lost. The handler never runs, but as a container's PID 1 the holder
    // is sent only the signals it handles.
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals()), None)?;
    for sig in signals().iter() {
        let act = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(sig, &act)? };
    }
    nix::sys::prctl::set_child_subreaper(true)?;
    let exe = std::env::current_exe()?;
    let listener = std::net::TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    // The agent inherits it; it is never closed here, so the address stays
    // the same across agent restarts and connections wait in its backlog.
    let listen_fd = OwnedFd::from(listener);
    set_cloexec(&listen_fd, false)?;

    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    });
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("holder-signals".into())
            .spawn(move || {
                while let Ok(sig) = signals().wait() {
                    // Acted on before anything is said: this thread is the
                    // holder's only way to stop, so nothing that can fail
                    // (a log line) comes first.
                    let mut st = lock(&shared.state);
                    st.stopping = true;
                    let agent = st.agent.as_ref().map(|(pid, _)| *pid);
                    if let Some(pid) = agent {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                    drop(st);
                    shared.wake.notify_all();
                    tracing::info!(?sig, ?agent, "holder stopping: stopping the agent");
                }
            })?;
    }

    let mut backoff = FIRST_BACKOFF;
    let mut failures_before_ready = 0u32;
    loop {
        let started = Instant::now();
        let (pid, status) = run_agent(&shared, &exe, &agent_args, &listen_fd, addr)?;
        let ready = std::mem::take(&mut lock(&shared.state).ready);
        let code = exit_code(status);
        if lock(&shared.state).stopping {
            return Ok(ExitCode::from(code.unwrap_or(0).clamp(0, 255) as u8));
        }
        if !ready {
            failures_before_ready += 1;
            let first_start = !ANNOUNCED.load(Ordering::Acquire);
            if first_start || failures_before_ready > RESTARTS_BEFORE_READY {
                // The agent said why on stderr; at the first start that is
                // the last line the starter sees, as without a holder.
                if !first_start {
                    say(format_args!(
                        "dispatch-agent --hold: the restarted agent (pid {pid}) exited before it served ({status:?}) {failures_before_ready} times; giving up"
                    ));
                }
                return Ok(ExitCode::from(code.unwrap_or(1).clamp(1, 255) as u8));
            }
        } else {
            failures_before_ready = 0;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = FIRST_BACKOFF;
        }
        tracing::warn!(pid, ?status, ?backoff, "agent died; restarting it");
        let st = lock(&shared.state);
        let (st, _) = shared
            .wake
            .wait_timeout_while(st, backoff, |s| !s.stopping)
            .unwrap_or_else(|e| e.into_inner());
        if st.stopping {
            return Ok(ExitCode::SUCCESS);
        }
        drop(st);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether the address was announced: some agent served once.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

fn set_cloexec(fd: &OwnedFd, on: bool) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flag = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flag)).map(drop)
}

/// Starts one agent, hands it the held sessions, serves its requests and
/// collects exits until it dies; returns its pid and how it ended.
fn run_agent(
    shared: &Arc<Shared>,
    exe: &std::path::Path,
    args: &[OsString],
    listen_fd: &OwnedFd,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(i32, WaitStatus)> {
    let (mine, theirs) = wire::pair()?;
    set_cloexec(&theirs, false)?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--listen-fd")
        .arg(listen_fd.as_raw_fd().to_string())
        .arg("--holder-fd")
        .arg(theirs.as_raw_fd().to_string())
        .stdin(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls
    // (sigprocmask, prctl), no allocation.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            // The agent goes when the holder goes, at once: like a crash
            // without a holder (the shells end, the next agent marks their
            // sessions ended and ends what they left). A holder asked to
            // stop (SIGTERM) stops its agent in order instead.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    let pid = child.id() as i32;
    // Never waited through `child`: the loop below reaps every child.
    drop(child);
    let sock = Arc::new(mine);
    {
        let mut st = lock(&shared.state);
        send_inventory(&mut st, &sock);
        st.agent = Some((pid, sock.clone()));
        if st.stopping {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let reader = {
        let shared = shared.clone();
        let sock = sock.clone();
        std::thread::Builder::new()
            .name("holder-agent".into())
            .spawn(move || serve_agent(&shared, &sock, addr))?
    };
    let status = loop {
        match waitpid(None, None) {
            Ok(st @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) => {
                if p.as_raw() == pid {
                    break st;
                }
                session_exited(shared, p.as_raw(), exit_code(st));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => anyhow::bail!("waiting for the agent: {e}"),
        }
    };
    lock(&shared.state).agent = None;
    // Its end of the pair closed with it (and with every process it had
    // handed it to, none: it is close-on-exec there), so the reader ends.
    let _ = reader.join();
    Ok((pid, status))
}

/// The held sessions, each with its descriptors, then `Listed`. A program
/// found gone (its agent reaped it and died before saying so) or replaced by
/// a later process with its pid counts as ended.
fn send_inventory(st: &mut State, sock: &OwnedFd) {
    let procs = procs::live_procs();
    for (id, h) in st.held.iter_mut() {
        if h.exited.is_none() && !procs.iter().any(|p| p.pid == h.pid && p.start() == h.start) {
            h.exited = Some(None);
        }
        let fds: Vec<_> = h.fds.iter().map(|f| f.as_fd()).collect();
        let msg = FromHolder::Held {
            id: id.clone(),
            pid: h.pid,
            start: h.start,
            exited: h.exited.is_some(),
            code: h.exited.flatten(),
        };
        if let Err(e) = wire::send(sock.as_fd(), &msg, &fds) {
            tracing::warn!(error = %e, session = %id, "could not hand a session to the agent");
        }
    }
    let _ = wire::send(sock.as_fd(), &FromHolder::Listed, &[]);
}

fn session_exited(shared: &Shared, pid: i32, code: Option<i32>) {
    let mut st = lock(&shared.state);
    let Some(id) = st
        .held
        .iter()
        .find(|(_, h)| h.pid == pid && h.exited.is_none())
        .map(|(id, _)| id.clone())
    else {
        return; // a process a session left behind; nothing to report
    };
    if let Some(h) = st.held.get_mut(&id) {
        h.exited = Some(code);
    }
    if let Some((_, sock)) = &st.agent {
        let _ = wire::send(sock.as_fd(), &FromHolder::Exited { id, code }, &[]);
    }
}

fn serve_agent(shared: &Shared, sock: &OwnedFd, addr: std::net::SocketAddr) {
    loop {
        let msg = match wire::recv::<ToHolder>(sock.as_fd()) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "bad message from the agent; ignored");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading from the agent");
                return;
            }
        };
        match msg {
            (ToHolder::Hold { id, pid, start }, fds) => {
                if fds.len() != wire::FDS_PER_SESSION {
                    tracing::warn!(session = %id, fds = fds.len(), "hold without its descriptors; ignored");
                    continue;
                }
                lock(&shared.state).held.insert(
                    id,
                    Held {
                        pid,
                        start,
                        fds,
                        exited: None,
                    },
                );
            }
            (ToHolder::Release { id }, _) => {
                lock(&shared.state).held.remove(&id);
            }
            (ToHolder::Ready, _) => {
                lock(&shared.state).ready = true;
                if !ANNOUNCED.swap(true, Ordering::AcqRel) {
                    let _ =
                        dispatch_process::announce(&[&format!("DISPATCH_AGENT_LISTENING {addr}")]);
                }
            }
        }
    }
}
