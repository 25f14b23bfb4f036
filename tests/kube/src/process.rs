//! Child processes that never outlive their owner: each runs in its own process group,
//! its output goes to a log file, and dropping the handle ends the whole group
//! (SIGTERM, then SIGKILL after a grace period). If the test process dies without dropping
//! it (Ctrl-C, SIGKILL, a CI timeout: its own group gets the signal, the child's does not),
//! the kernel kills the child (PR_SET_PDEATHSIG), so no etcd or apiserver is left behind.
//! The signal follows the thread that spawned the child: a tokio worker, which lives as
//! long as its runtime, and so as long as the handles made in it are usable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A running child in its own process group.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    pgid: Pid,
    log: PathBuf,
    drop_grace: Duration,
}

impl ManagedProcess {
    /// Starts `cmd` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> std::io::Result<ManagedProcess> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let parent = nix::unistd::getpid();
        // SAFETY: runs in the forked child before exec and only makes two async-signal-safe
        // system calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                // The parent may have died between fork and prctl.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other(format!("{name} exited at once")))?;
        let pgid = Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?);
        Ok(ManagedProcess {
            name: name.to_string(),
            child,
            pgid,
            log: log.to_path_buf(),
            drop_grace: Duration::from_secs(3),
        })
    }

    /// How long `Drop` waits after SIGTERM before SIGKILL (default 3s). Zero kills at once,
    /// right for processes whose state is thrown away anyway.
    pub fn with_drop_grace(mut self, grace: Duration) -> ManagedProcess {
        self.drop_grace = grace;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// The last `max` bytes of the log, for error messages.
    pub fn log_tail(&self, max: usize) -> String {
        log_tail(&self.log, max)
    }

    /// `Some(exit status)` once the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to end.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM to the group, SIGKILL after `grace`; returns once the leader is gone.
    pub async fn terminate(&mut self, grace: Duration) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(self.pgid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Stragglers that ignored SIGTERM in the group (the leader is gone already).
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }

    /// Blocking variant for `Drop`, where no await is possible.
    fn terminate_blocking(&mut self, grace: Duration) {
        if !grace.is_zero() && self.try_wait().is_none() {
            let _ = killpg(self.pgid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = killpg(self.pgid, Signal::SIGKILL);
        let _ = self.child.start_kill();
        // Reaped before returning, so its ports are closed and its files no longer written
        // when the owner goes on (e.g. removes the state dir).
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.try_wait().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.terminate_blocking(self.drop_grace);
    }
}

pub fn log_tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
