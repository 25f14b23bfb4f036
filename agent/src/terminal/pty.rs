//! Starting a program in a PTY, and the PTY's file descriptor.
//!
//! portable-pty starts the child with `setsid()`, so the child leads a new
//! session and process group whose ids are its pid; ending it with everything
//! it started is [`crate::procs::kill_session`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;

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
