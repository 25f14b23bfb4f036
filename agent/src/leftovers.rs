//! Ending what sessions of an earlier run left running: after the agent was
//! killed with no holder to keep its terminals (or the holder died too), a
//! shell's `nohup`, signal-ignoring or `setsid` children run on, reparented
//! to init, counted against nothing.
//!
//! Every session's processes inherit `DISPATCH_SESSION_ID=<id>`, whatever
//! session or group they moved to, and session ids are random, so the
//! environment names them even after their parents are gone and their pids
//! reused by others. (A process that clears its own environment escapes.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::procs::{self, Proc};

const VAR: &[u8] = b"DISPATCH_SESSION_ID=";

/// The session id in a `/proc/<pid>/environ` image, if it has one.
pub fn session_of(environ: &[u8]) -> Option<&[u8]> {
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(VAR))
}

/// The members of the process session that `leader` (pid, start time) led,
/// in `procs`. Linux never hands out a pid while a session still bears it as
/// its id, so processes with that session id are the leader's, unless the
/// pid now belongs to a later process (another start time) that made a
/// session of its own after the old one emptied.
pub fn members_of(leader: (i32, u64), procs: &[Proc]) -> Vec<Proc> {
    let (pid, start) = leader;
    if procs.iter().any(|p| p.pid == pid && p.start() != start) {
        return Vec::new();
    }
    procs.iter().filter(|p| p.sid == pid).copied().collect()
}

/// Live processes (other than this one) whose environment names one of
/// `ids`, or that are in the process session one of `leaders` led.
pub fn find(ids: &HashSet<String>, leaders: &[(i32, u64)]) -> Vec<Proc> {
    if ids.is_empty() && leaders.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let procs = procs::live_procs();
    let mut found: Vec<Proc> = leaders
        .iter()
        .flat_map(|l| members_of(*l, &procs))
        .collect();
    for p in &procs {
        let named = std::fs::read(format!("/proc/{}/environ", p.pid)).is_ok_and(|env| {
            session_of(&env)
                .and_then(|s| std::str::from_utf8(s).ok())
                .is_some_and(|s| ids.contains(s))
        });
        if named && !p.is_in(&found) {
            found.push(*p);
        }
    }
    found.retain(|p| p.pid != me);
    found
}

/// Ends the processes of sessions `ids` (led by `leaders`) that an earlier
/// run left: SIGHUP and SIGTERM now, SIGKILL after `grace` to those (same
/// pid and start time) still there. Returns at once; the SIGKILL comes from
/// a thread.
pub fn end(ids: &HashSet<String>, leaders: &[(i32, u64)], grace: Duration) -> usize {
    let found = find(ids, leaders);
    if found.is_empty() {
        return 0;
    }
    tracing::info!(
        processes = found.len(),
        "ending what sessions of the previous run left running"
    );
    for p in &found {
        for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGCONT] {
            let _ = kill(Pid::from_raw(p.pid), sig);
        }
    }
    let n = found.len();
    let _ = std::thread::Builder::new()
        .name("end-leftovers".into())
        .spawn(move || {
            let deadline = Instant::now() + grace;
            let mut left = found;
            while !left.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                let live = procs::live_procs();
                left.retain(|p| p.is_in(&live));
            }
            let live = procs::live_procs();
            for p in left.iter().filter(|p| p.is_in(&live)) {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        });
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_from_an_environment() {
        let env = b"PATH=/bin\0DISPATCH_SESSION_ID=t0123\0HOME=/h\0";
        assert_eq!(session_of(env), Some(&b"t0123"[..]));
        assert_eq!(session_of(b"PATH=/bin\0"), None);
        assert_eq!(session_of(b""), None);
        assert_eq!(session_of(b"XDISPATCH_SESSION_ID=t1\0"), None);
    }

    #[test]
    fn finds_and_ends_a_process_that_ignores_hangups_by_its_environment() {
        let id = format!("leftover{}", std::process::id());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' HUP TERM; while :; do sleep 1; done")
            .env("DISPATCH_SESSION_ID", &id)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ids: HashSet<String> = [id].into();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The shell has exec'd once /proc shows its environment.
        while !find(&ids, &[]).iter().any(|p| p.pid == pid) {
            assert!(Instant::now() < deadline, "not found");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(end(&ids, &[], Duration::from_millis(300)) >= 1);
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");
        let other: HashSet<String> = ["nobody-has-this".to_owned()].into();
        assert!(find(&other, &[]).is_empty());
    }

    #[test]
    fn a_session_is_its_leaders_unless_the_pid_went_to_a_later_process() {
        let procs = procs::live_procs();
        let me = procs
            .iter()
            .find(|p| p.pid == std::process::id() as i32)
            .copied()
            .unwrap();
        let leader = procs.iter().find(|p| p.pid == me.sid).copied();
        if let Some(l) = leader {
            let members = members_of((l.pid, l.start()), &procs);
            assert!(me.is_in(&members), "this process is in its session");
            let reused = members_of((l.pid, l.start() + 1), &procs);
            assert!(reused.is_empty(), "the pid is another process's now");
        }
        // A leader that is gone: its session's members are still its own.
        let members = members_of((me.sid, 0), &procs);
        assert_eq!(leader.is_none(), me.is_in(&members));
    }
}
