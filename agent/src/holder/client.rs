//! The agent's side of the holder: the sessions handed over at start, and
//! the calls that keep the holder up to date (hold, release, ready). Exits
//! of programs the holder reaped arrive on a thread and wait here until the
//! session that owns them asks.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};

use super::wire::{self, FDS_PER_SESSION, FromHolder, ToHolder};
use crate::lock::lock;

/// A terminal session that outlived the agent that started it.
#[derive(Debug)]
pub struct HeldSession {
    pub id: String,
    pub pid: i32,
    /// `Some(code)` when its program has ended already.
    pub exited: Option<Option<i32>>,
    pub fds: HeldFds,
}

/// A session's descriptors: PTY master, and the pipe its output passes
/// through on its way to the log (see `terminal::spliced`).
#[derive(Debug)]
pub struct HeldFds {
    pub master: OwnedFd,
    pub pipe_r: OwnedFd,
    pub pipe_w: OwnedFd,
}

impl HeldFds {
    fn from_vec(mut fds: Vec<OwnedFd>) -> Option<Self> {
        if fds.len() != FDS_PER_SESSION {
            return None;
        }
        let pipe_w = fds.pop()?;
        let pipe_r = fds.pop()?;
        let master = fds.pop()?;
        Some(HeldFds {
            master,
            pipe_r,
            pipe_w,
        })
    }
}

pub struct HolderLink {
    sock: OwnedFd,
    /// Exit codes reported and not yet taken, by session id.
    exits: Mutex<HashMap<String, Option<i32>>>,
    exited: Condvar,
}

impl HolderLink {
    /// Takes the socket the holder passed as `fd`, reads the sessions it
    /// holds, and starts listening for exits.
    pub fn connect(fd: RawFd) -> anyhow::Result<(Arc<Self>, Vec<HeldSession>)> {
        nix::fcntl::fcntl(
            // SAFETY: checked below to be an open descriptor; the holder
            // passed it for this process alone.
            unsafe { BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .map_err(|e| anyhow::anyhow!("--holder-fd {fd}: {e}"))?;
        // SAFETY: an open descriptor (checked above) that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // Not for the shells.
        nix::fcntl::fcntl(
            &sock,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let mut held = Vec::new();
        loop {
            match wire::recv::<FromHolder>(sock.as_fd())? {
                None => anyhow::bail!("the holder closed the connection"),
                Some((FromHolder::Listed, _)) => break,
                Some((
                    FromHolder::Held {
                        id,
                        pid,
                        exited,
                        code,
                        ..
                    },
                    fds,
                )) => match HeldFds::from_vec(fds) {
                    Some(fds) => held.push(HeldSession {
                        id,
                        pid,
                        exited: exited.then_some(code),
                        fds,
                    }),
                    None => {
                        tracing::warn!(session = %id, "held session came without its descriptors")
                    }
                },
                Some((FromHolder::Exited { id, .. }, _)) => {
                    tracing::warn!(session = %id, "exit before the inventory ended; ignored");
                }
            }
        }
        let link = Arc::new(HolderLink {
            sock,
            exits: Mutex::new(HashMap::new()),
            exited: Condvar::new(),
        });
        let l = link.clone();
        std::thread::Builder::new()
            .name("holder-link".into())
            .spawn(move || l.listen())?;
        Ok((link, held))
    }

    fn listen(&self) {
        loop {
            match wire::recv::<FromHolder>(self.sock.as_fd()) {
                Ok(Some((FromHolder::Exited { id, code }, _))) => {
                    lock(&self.exits).insert(id, code);
                    self.exited.notify_all();
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::error!("the holder is gone; its sessions end with this agent");
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!(error = %e, "bad message from the holder; ignored");
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading from the holder");
                    return;
                }
            }
        }
    }

    /// Blocks until the holder reports the end of session `id`'s program.
    pub fn wait_exit(&self, id: &str) -> Option<i32> {
        let mut exits = lock(&self.exits);
        loop {
            if let Some(code) = exits.remove(id) {
                return code;
            }
            exits = self.exited.wait(exits).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn hold(&self, id: &str, pid: i32, start: u64, fds: [BorrowedFd<'_>; FDS_PER_SESSION]) {
        let msg = ToHolder::Hold {
            id: id.to_owned(),
            pid,
            start,
        };
        if let Err(e) = wire::send(self.sock.as_fd(), &msg, &fds) {
            tracing::warn!(error = %e, session = %id, "the holder could not take the session; it ends with this agent");
        }
    }

    pub fn release(&self, id: &str) {
        let _ = wire::send(
            self.sock.as_fd(),
            &ToHolder::Release { id: id.to_owned() },
            &[],
        );
    }

    pub fn ready(&self) {
        if let Err(e) = wire::send(self.sock.as_fd(), &ToHolder::Ready, &[]) {
            tracing::warn!(error = %e, "telling the holder the agent serves");
        }
    }
}
