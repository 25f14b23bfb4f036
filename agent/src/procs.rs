//! Processes as /proc shows them, and ending a process session with
//! everything still in it.
//!
//! A session's program leads a process session (`setsid()`). Job-control
//! shells move background jobs into process groups of their own, so ending
//! "the process group" is not enough: [`kill_session`] signals every process
//! still in the session, found through /proc.

use std::future::Future;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

/// How long a stopping session gets before each harder signal.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Ends process session `sid` in steps: before each of `signals` it waits
/// [`STOP_GRACE`] for `progress` to say the session `ended`, and stops there
/// if it did; then `after` runs. On the async runtime when there is one;
/// else on a thread that cannot watch `progress` and sends every signal
/// (harmless to a session that is gone), and `after` is skipped.
pub fn stop_in_steps<P: Send + Sync + 'static>(
    sid: i32,
    mut progress: watch::Receiver<P>,
    ended: fn(&P) -> bool,
    signals: &'static [Signal],
    after: impl Future<Output = ()> + Send + 'static,
) {
    let steps = async move {
        for &sig in signals {
            if tokio::time::timeout(STOP_GRACE, progress.wait_for(ended))
                .await
                .is_ok()
            {
                break;
            }
            if sig == Signal::SIGKILL {
                tracing::warn!(pid = sid, "session ignored SIGTERM; killing it");
            }
            kill_session(sid, sig);
        }
        after.await;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(steps);
        }
        Err(_) => {
            std::thread::spawn(move || {
                for &sig in signals {
                    std::thread::sleep(STOP_GRACE);
                    kill_session(sid, sig);
                }
            });
        }
    }
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

/// The command name of process `pid` (`/proc/<pid>/comm`), if it is there.
pub fn command_name(pid: i32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
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
        assert_eq!(Proc::parse(1, "garbage"), None);
    }
}
