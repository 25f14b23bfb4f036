//! Shells that outlive the agent: under `dispatch-agent --hold`, a `kill -9`
//! of the agent ends no session and loses no byte. And without a holder,
//! what a session left running is ended after the restart.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

struct Holder {
    child: Child,
    addr: String,
}

impl Holder {
    fn start(ws: &Path, args: &[&str]) -> Holder {
        Holder::start_logging(ws, args, "warn", Stdio::inherit())
    }

    fn start_logging(ws: &Path, args: &[&str], log: &str, stderr: Stdio) -> Holder {
        let args: Vec<&str> = ["--hold"].into_iter().chain(args.iter().copied()).collect();
        let (child, addr) = spawn_listening(ws, &args, log, stderr);
        Holder { child, addr }
    }

    /// The agent the holder runs now (its child named dispatch-agent).
    fn agent_pid(&self) -> Option<i32> {
        let pid = self.child.id();
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        kids.split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "dispatch-agent")
            })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The numbers `seq` printed, one per line, from the first "1" on; checks
/// that each is one more than the one before (no gap, no duplicate).
fn check_counting(text: &str) -> u64 {
    let mut lines = text.split("\r\n");
    lines
        .by_ref()
        // The shell's prompt may come between the echo and the first line.
        .find(|l| l.rsplit(' ').next() == Some("1"))
        .unwrap_or_else(|| panic!("the count starts: {:?}", &text[..text.len().min(300)]));
    let mut last = 1u64;
    let rest: Vec<&str> = lines.collect();
    // The last piece may be a line still being written.
    for l in &rest[..rest.len().saturating_sub(1)] {
        let n: u64 = l
            .parse()
            .unwrap_or_else(|_| panic!("after {last}: not a number: {l:?}"));
        assert_eq!(n, last + 1, "after {last} came {n}");
        last = n;
    }
    last
}

/// Times the agent is killed while `seq` floods its terminal.
const KILLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_kill_9_of_the_agent_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    // A ring far larger than what the test prints, so that no reader ever
    // falls behind it (a resync would replace bytes by a screen).
    let holder = Holder::start(&ws, &["--ring-bytes", &(256u64 << 20).to_string()]);
    let first = wait_for("the agent", || holder.agent_pid());
    #[allow(unused_assignments)]
    let mut c = Client::connect(&holder.addr, Some(TOKEN)).await.unwrap();

    // vim with text typed and not saved.
    let vim = c
        .start(json!({"shell": "vim", "env": {"VIMINIT": "set nocompatible noswapfile", "HOME": tmp.path()}}))
        .await;
    c.write(&vim, "ihello unsaved-text\x1b").await;
    c.wait_output(&vim, "unsaved-text").await;

    // A shell counting as fast as seq can.
    let count = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(
        &count,
        "i=0; while :; do seq $((i*1000+1)) $((i*1000+1000)); i=$((i+1)); done\n",
    )
    .await;
    c.wait_output(&count, "\r\n20000\r\n").await;

    let before = c.stream(&count).bytes.clone();
    let before_base = c.stream(&count).base;
    let mut seen = c.stream(&count).end();
    let mut agent = first;
    // Killed again and again mid-stream, each time with output flowing.
    for round in 0..KILLS {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        drop(c);
        agent = wait_for("a new agent", || holder.agent_pid().filter(|p| *p != agent));

        // The address is the same; the new agent has both sessions, running.
        c = Client::connect(&holder.addr, Some(TOKEN)).await.unwrap();
        c.send(json!({"type": "session.list"})).await;
        let list = c.wait_type("session.list").await;
        let sessions = list["sessions"].as_array().unwrap();
        for id in [&vim, &count] {
            let s = sessions
                .iter()
                .find(|s| s["id"] == id.as_str())
                .unwrap_or_else(|| panic!("round {round}: {id} listed: {list}"));
            assert_eq!(s["ended"], Value::Null, "round {round}: {id} runs: {s}");
        }
        c.send(json!({"type": "session.attach", "id": count, "since": seen}))
            .await;
        let target = seen + 100_000;
        c.wait_until(|c| {
            c.streams
                .get(count.as_str())
                .is_some_and(|s| s.end() >= target)
        })
        .await;
        seen = c.stream(&count).end();
    }

    // The counting stream read from 0: what the first agent sent, then on
    // with no gap and no duplicate through every kill.
    drop(c);
    let mut c = Client::connect(&holder.addr, Some(TOKEN)).await.unwrap();
    c.send(json!({"type": "session.attach", "id": count, "since": 0}))
        .await;
    let target = seen + 100_000;
    c.wait_until(|c| {
        c.streams
            .get(count.as_str())
            .is_some_and(|s| s.end() >= target)
    })
    .await;
    let s = c.stream(&count);
    assert_eq!((s.base, s.resyncs), (0, 0), "the whole stream, as bytes");
    let at = before_base as usize;
    assert_eq!(
        &s.bytes[at..at + before.len()],
        &before[..],
        "each offset kept its byte across the restarts"
    );
    let counted = check_counting(&s.text());
    eprintln!(
        "counted to {counted} in {} bytes through {KILLS} kills",
        s.bytes.len()
    );
    assert!(counted > 20_000 + KILLS as u64 * 10_000);
    c.send(json!({"type": "session.stop", "id": count})).await;

    // vim's screen comes back from the snapshot, and its buffer saves.
    c.send(json!({"type": "session.attach", "id": vim})).await;
    c.wait_until(|c| {
        c.streams
            .get(vim.as_str())
            .and_then(|s| s.snapshots.last())
            .is_some()
    })
    .await;
    let snap = String::from_utf8_lossy(&c.stream(&vim).snapshots[0].1).into_owned();
    assert!(snap.contains("hello unsaved-text"), "{snap:?}");
    c.write(&vim, ":w saved.txt\r").await;
    let saved = ws.join("saved.txt");
    eventually("vim to write the file", || {
        std::fs::read_to_string(&saved).is_ok_and(|s| s == "hello unsaved-text\n")
    })
    .await;

    // SIGTERM to the holder: the agent stops the sessions, both exit cleanly.
    let vim_pid = pid_of_session(&vim);
    assert!(vim_pid.is_some(), "vim runs");
    // The holder's socket and the listening socket stay out of the shells'
    // reach (else a shell could forge the agent's requests or serve its port):
    // the agent marks them close-on-exec, and portable-pty closes stray fds.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", vim_pid.unwrap()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .collect();
    assert!(!fds.iter().any(|l| l.starts_with("socket:")), "{fds:?}");
    let mut holder = holder;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for("the holder to exit", || holder.child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    if let Some(p) = vim_pid {
        assert!(is_gone(p), "vim ended with the holder");
    }
}

/// A process whose environment names session `id`.
fn pid_of_session(id: &str) -> Option<i32> {
    let want = format!("DISPATCH_SESSION_ID={id}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
}

#[tokio::test]
async fn without_a_holder_what_a_session_left_is_ended_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let mut agent = Agent::start_in(&ws, &[]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    // Ways out of a terminal's reach: nohup, setsid, ignoring signals, and
    // the last also without the environment that names its session. The
    // setsid one names itself in a file (setsid may fork, so `$!` is not its
    // pid; and its own echo on the terminal it left was lost now and then:
    // this test timed out waiting for it in two CI runs).
    let setsid_file = tmp.path().join("setsid.pid");
    c.write(
        &id,
        &format!(
            "nohup sleep 1000 >/dev/null 2>&1 & echo nohup=$!; \
             setsid sh -c 'echo $$ > {f}.tmp && mv {f}.tmp {f}; exec sleep 1001' \
               </dev/null >/dev/null 2>&1 & \
             (trap '' HUP TERM; exec sleep 1002) & echo deaf=$!; \
             env -i sh -c 'trap \"\" HUP TERM; exec sleep 1003' & echo bare=$!\n",
            f = setsid_file.display()
        ),
    )
    .await;
    let mut out = c.wait_output(&id, "deaf=").await;
    out = c.wait_until_digits(&id, out, "deaf=").await;
    out = c.wait_until_digits(&id, out, "bare=").await;
    eventually("the setsid child's pid file", || setsid_file.exists()).await;
    let setsid_pid: i32 = std::fs::read_to_string(&setsid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut pids: Vec<i32> = ["nohup=", "deaf=", "bare="]
        .iter()
        .map(|k| number_after(&out, k).unwrap_or_else(|| panic!("{k} in {out}")))
        .collect();
    pids.push(setsid_pid);
    agent.signal(libc::SIGKILL);
    agent.wait_exit();
    // The kernel hangs the terminal up; these three do not care.
    for p in &pids {
        assert!(!is_gone(*p), "{p} outlived the agent: {out}");
    }
    let _again = Agent::start_in(&ws, &[]);
    eventually("what the session left to end", || {
        pids.iter().all(|p| is_gone(*p))
    })
    .await;
}

#[tokio::test]
async fn a_workspace_swapped_under_the_holder_is_refused_at_the_restart_and_the_holder_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut holder = Holder::start(&ws, &["--workspace-id", "me/ws"]);
    let agent = wait_for("the agent", || holder.agent_pid());
    let mut c = Client::connect(&holder.addr, Some(TOKEN)).await.unwrap();
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id, "echo up-$((6*7))\n").await;
    c.wait_output(&id, "up-42").await;
    let shell = pid_of_session(&id).expect("the shell runs");
    drop(c);

    // From the terminal: the workspace becomes a link to another directory;
    // then the agent crashes.
    std::fs::rename(&ws, tmp.path().join("ws.old")).unwrap();
    std::os::unix::fs::symlink(&other, &ws).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // Each restarted agent refuses; after a few the holder gives up, and
    // with it the shells it kept. Nothing was written in the other directory.
    let status = {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = holder.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "the holder kept retrying");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(!status.success(), "{status:?}");
    eventually("the shell to end with the holder", || is_gone(shell)).await;
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        0,
        "the other directory is untouched"
    );
}

/// The gateway reads its holders' stderr; when it is killed outright, that
/// pipe closes before (or while) the holder gets the gateway's death signal,
/// SIGTERM. Logging that stop then failed with EPIPE, the log writer's own
/// error report panicked, and the holder's signal thread died with it before
/// it stopped the agent: holder, agent and shells lived on (6 of 10 runs of
/// the gateway's agents_stop_when_the_gateway_is_killed_outright with the
/// holder switched on; this test, every run).
#[tokio::test]
async fn a_holder_whose_stderr_is_gone_still_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let mut holder = Holder::start_logging(&ws, &[], "info", Stdio::piped());
    let agent = wait_for("the agent", || holder.agent_pid());
    let mut c = Client::connect(&holder.addr, Some(TOKEN)).await.unwrap();
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id, "echo up-$((6*7))\n").await;
    c.wait_output(&id, "up-42").await;
    let shell = pid_of_session(&id).expect("the shell runs");
    drop(c);

    // The reader of its stderr goes, as a killed gateway's end of the pipe.
    drop(holder.child.stderr.take());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for("the holder to exit", || holder.child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    for (what, pid) in [("the agent", agent), ("the shell", shell)] {
        eventually(what, || is_gone(pid)).await;
    }
}
