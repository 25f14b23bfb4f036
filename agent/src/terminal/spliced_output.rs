//! A terminal's output path when a holder keeps the session (see
//! [`crate::holder`]): PTY -> pipe -> log file, moved by `splice(2)` inside
//! the kernel, then read back from the log for the ring and the clients.
//!
//! The holder keeps the pipe too, so every output byte is at all times in
//! the PTY's buffer, in the pipe, or in the log: never only in the agent's
//! memory. An agent killed at any instruction loses nothing, and its
//! successor first moves what the pipe holds into the log. (Reading the PTY
//! into a buffer and then writing the log, as without a holder, loses what
//! was read and not yet written.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};

/// Pipe capacity asked for (the unprivileged maximum by default).
const PIPE_BYTES: i32 = 1 << 20;

#[derive(Debug)]
pub struct OutputPipe {
    pub r: OwnedFd,
    pub w: OwnedFd,
}

impl OutputPipe {
    pub fn new() -> io::Result<Self> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // A bigger pipe takes more per splice; the default (64 KiB) works too.
        let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
        Ok(OutputPipe { r, w })
    }

    pub fn from_fds(r: OwnedFd, w: OwnedFd) -> Self {
        OutputPipe { r, w }
    }

    /// Moves what the PTY master has now into the pipe, up to `max` bytes
    /// (the master is non-blocking). `Ok(0)`: nothing there; an error such
    /// as EIO: every process has closed the PTY's other side.
    pub fn fill_from(&self, master: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let mut moved = 0;
        while moved < max {
            match splice(
                master,
                None,
                self.w.as_fd(),
                None,
                max - moved,
                SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) if moved == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(0) => break,
                Ok(n) => moved += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) if moved == 0 => return Err(e.into()),
                Err(_) => break,
            }
        }
        Ok(moved)
    }

    /// Bytes waiting in the pipe.
    pub fn pending(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which is valid.
        let r = unsafe { libc::ioctl(self.r.as_raw_fd(), libc::FIONREAD, &mut n) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.max(0) as usize)
    }
}

/// Moves exactly `n` bytes from `pipe_r` to `file` at its current position.
pub fn splice_to_file(
    pipe_r: BorrowedFd<'_>,
    file: &std::fs::File,
    mut n: usize,
) -> io::Result<()> {
    while n > 0 {
        match splice(
            pipe_r,
            None,
            file.as_fd(),
            None,
            n,
            SpliceFFlags::SPLICE_F_MOVE,
        ) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => n -= k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn pty_output_goes_through_the_pipe_into_a_file() {
        let pty = nix::pty::openpty(None, None).unwrap();
        nix::fcntl::fcntl(&pty.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let pipe = OutputPipe::new().unwrap();
        assert_eq!(pipe.fill_from(pty.master.as_fd(), 1 << 16).unwrap(), 0);
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"hello\n").unwrap();
        // The line discipline may hand it over in pieces.
        let mut moved = 0;
        while moved < 7 {
            crate::terminal::pty::poll_fd(pty.master.as_raw_fd(), libc::POLLIN, 5000);
            moved += pipe.fill_from(pty.master.as_fd(), 1 << 16).unwrap();
        }
        assert_eq!(pipe.pending().unwrap(), 7, "onlcr made it hello\\r\\n");
        let tmp = tempfile::tempfile().unwrap();
        splice_to_file(pipe.r.as_fd(), &tmp, 7).unwrap();
        assert_eq!(pipe.pending().unwrap(), 0);
        let mut f = tmp;
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello\r\n");
        drop(slave);
        assert!(
            pipe.fill_from(pty.master.as_fd(), 1 << 16).is_err(),
            "EIO once the slave is closed"
        );
    }
}
