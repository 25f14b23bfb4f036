//! Starting a program in a PTY and ending it with everything it started.
//!
//! portable-pty starts the child with `setsid()`, so the child leads a new
//! session and process group whose ids are its pid. Job-control shells move
//! background jobs into process groups of their own, so ending "the process
//! group" is not enough: [`kill_session`] signals every process still in the
//! child's session, found through /proc.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

pub struct SpawnSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub rows: u16,
    pub cols: u16,
}

pub struct Spawned {
    pub pid: i32,
    pub master: Box<dyn MasterPty + Send>,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    /// The master's fd, for `poll` in the reader.
    pub master_fd: Option<RawFd>,
}

pub fn size(rows: u16, cols: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

pub fn spawn(spec: &SpawnSpec) -> anyhow::Result<Spawned> {
    let pair = native_pty_system().openpty(size(spec.rows, spec.cols))?;
    let mut cmd = CommandBuilder::new(&spec.program);
    cmd.args(&spec.args);
    cmd.cwd(&spec.cwd);
    // The agent's own credential is not the program's business.
    cmd.env_remove("DISPATCH_AGENT_TOKEN");
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let child = pair.slave.spawn_command(cmd)?;
    let pid = child
        .process_id()
        .ok_or_else(|| anyhow::anyhow!("spawned child has no pid"))? as i32;
    // The exit status is collected by `wait_exit` on the pid; the handle is not needed.
    drop(child);
    // Close our copy of the slave so that the reader sees EOF once the
    // session's processes have all closed theirs.
    drop(pair.slave);
    let reader = pair.master.try_clone_reader()?;
    let writer = pair.master.take_writer()?;
    let master_fd = pair.master.as_raw_fd();
    Ok(Spawned {
        pid,
        master: pair.master,
        reader,
        writer,
        master_fd,
    })
}

/// Sets the size of the PTY whose master is `fd`.
pub fn resize_fd(fd: RawFd, rows: u16, cols: u16) -> anyhow::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Blocks until `pid` exits; returns its exit code, 128 + signal number when a
/// signal ended it (as shells report it).
pub fn wait_exit(pid: i32) -> Option<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

fn state_of(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// A live (not zombie) process as `/proc/<pid>/stat` shows it. Its start
/// time tells it apart from a later process that got the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    ppid: i32,
    /// Clock ticks since boot.
    start: u64,
    pub sid: i32,
}

impl Proc {
    /// From a stat line: after the parenthesised name (which may itself
    /// hold spaces and parens) come state(0),
    /// ppid(1), pgrp(2), session(3) ... starttime(19). `None` for a zombie.
    fn parse(pid: i32, stat: &str) -> Option<Proc> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first()? == &"Z" {
            return None;
        }
        Some(Proc {
            pid,
            ppid: f.get(1)?.parse().ok()?,
            start: f.get(19)?.parse().ok()?,
            sid: f.get(3)?.parse().ok()?,
        })
    }

    /// Clock ticks since boot when it started.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The live process `pid`, if there is one.
    pub fn of(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Proc::parse(pid, &stat)
    }

    /// The same process (pid and start time), whatever its parent now.
    pub fn is(&self, other: &Proc) -> bool {
        self.pid == other.pid && self.start == other.start
    }

    /// Whether `procs` still holds this very process.
    pub fn is_in(&self, procs: &[Proc]) -> bool {
        procs.iter().any(|p| p.is(self))
    }
}

/// Every live process, read from /proc once.
pub fn live_procs() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Proc::parse(pid, &stat)
        })
        .collect()
}

/// Every descendant of `root` in `procs` (children, their children, ...),
/// in whatever session or group they put themselves.
pub fn descendants(root: i32, procs: &[Proc]) -> Vec<Proc> {
    let mut out: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in procs {
            if p.ppid == parent && p.pid != root && !p.is_in(&out) {
                out.push(*p);
                frontier.push(p.pid);
            }
        }
    }
    out
}

/// Live (not zombie) processes whose session id is `sid`.
pub fn session_members(sid: i32) -> Vec<i32> {
    live_procs()
        .into_iter()
        .filter(|p| p.sid == sid)
        .map(|p| p.pid)
        .collect()
}

/// Sends `sig` to the session's process group and to every other process left
/// in its session.
pub fn kill_session(sid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(sid), sig);
    for pid in session_members(sid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
/// The command name of process `pid` (`/proc/<pid>/comm`), if it is there.
pub fn command_name(pid: i32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => state_of(&stat) == Some('Z'),
        Err(_) => true,
    }
}

/// Waits up to `timeout_ms` (-1: forever) for any of `events` on `fd`;
/// returns the events that happened (0 on timeout).
pub fn poll_fd(fd: RawFd, events: i16, timeout_ms: i32) -> i16 {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if r > 0 { pfd.revents } else { 0 }
}

/// Whether data is waiting to be read on `fd` right now.
pub fn readable_now(fd: RawFd) -> bool {
    poll_fd(fd, libc::POLLIN, 0) & libc::POLLIN != 0
}

/// Puts `fd` (and every fd sharing its open file description) in
/// non-blocking mode.
pub fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes what fits without blocking: `Ok(n)` bytes written, 0 when full.
pub fn write_nonblocking(fd: RawFd, data: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `data` is valid for `data.len()` bytes for the call.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// Writes all of `data`, waiting for room when the PTY's input is full.
pub fn write_all_waiting(fd: RawFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = write_nonblocking(fd, data)?;
        if n == 0 {
            let ev = poll_fd(fd, libc::POLLOUT, -1);
            if ev & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 && ev & libc::POLLOUT == 0
            {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
        }
        data = &data[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, start: u64, sid: i32) -> Proc {
        Proc {
            pid,
            ppid,
            start,
            sid,
        }
    }

    #[test]
    fn the_tree_below_a_process_is_found_whatever_the_order() {
        // 10 -> 11 -> 13 -> 14, 10 -> 12; 20 is unrelated; 14 listed first.
        let procs = [
            proc(14, 13, 5, 11),
            proc(11, 10, 1, 11),
            proc(20, 1, 9, 20),
            proc(12, 10, 2, 10),
            proc(13, 11, 3, 11),
            proc(10, 1, 0, 10),
        ];
        let mut pids: Vec<i32> = descendants(10, &procs).iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, [11, 12, 13, 14]);
        assert!(descendants(20, &procs).is_empty());
    }

    #[test]
    fn a_seen_process_is_not_mistaken_for_a_later_one_with_its_pid() {
        let me = std::process::id() as i32;
        let procs = live_procs();
        let seen = *procs
            .iter()
            .find(|p| p.pid == me)
            .expect("this process is listed");
        assert!(seen.is_in(&procs));
        let orphaned = Proc { ppid: 1, ..seen };
        assert!(orphaned.is_in(&procs), "a new parent is the same process");
        let other = Proc {
            start: seen.start + 1,
            ..seen
        };
        assert!(!other.is_in(&procs), "same pid, other start time");
        let zombie = "7 (x) Z 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert_eq!(Proc::parse(7, zombie), None);
        let live = zombie.replace(") Z", ") S");
        assert_eq!(Proc::parse(7, &live), Some(proc(7, 1, 99, 7)));
    }

    #[test]
    fn parses_session_from_stat_with_odd_names() {
        let stat =
            "1234 (we ird) name)) S 1 1234 1230 34816 1234 4194560 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0";
        assert_eq!(Proc::parse(1234, stat).map(|p| p.sid), Some(1230));
        assert_eq!(state_of(stat), Some('S'));
        assert_eq!(Proc::parse(1, "garbage"), None);
    }
}
