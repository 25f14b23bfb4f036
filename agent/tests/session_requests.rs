//! Requests about a session beside its live stream, through the real agent:
//! reading an earlier range of output (`session.read`), renaming
//! (`session.rename`), the resize announcement other viewers get, and the
//! Claude config dir a terminal shares with the Claude pane.

mod common;

use common::*;
use dispatch_api::protocol::MAX_READ_BYTES;
use serde_json::json;

/// The session's output end, as `session.list` says.
async fn end_of(c: &mut Client, id: &str) -> u64 {
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()["offset"]
        .as_u64()
        .unwrap()
}

/// `session.read` of `[from, to)`: the reply and the range frame's bytes.
async fn read(c: &mut Client, id: &str, from: u64, to: u64) -> (serde_json::Value, Vec<u8>) {
    c.send(json!({"type": "session.read", "id": id, "from": from, "to": to}))
        .await;
    let r = c.wait_type("session.range").await;
    c.wait_until(|c| !c.stream(id).ranges.is_empty()).await;
    let (off, bytes) = c.streams.get_mut(id).unwrap().ranges.remove(0);
    assert_eq!(
        Some(off),
        r["from"].as_u64(),
        "the frame starts where the reply says"
    );
    assert_eq!(bytes.len() as u64, r["to"].as_u64().unwrap() - off);
    (r, bytes)
}

#[tokio::test]
async fn earlier_output_is_read_by_range_apart_from_the_live_stream() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    // The marker is computed, so the typed command line does not match it.
    c.write(&id, "seq 1 90000; echo READ-$((1+1))-DONE\n").await;
    c.wait_output(&id, "READ-2-DONE").await;
    let end = end_of(&mut c, &id).await;
    assert!(
        end > 2 * MAX_READ_BYTES,
        "the output is longer than two reads ({end})"
    );

    // Too long a range: its last MAX_READ_BYTES.
    let (r, _) = read(&mut c, &id, 0, end).await;
    assert_eq!(r["from"].as_u64(), Some(end - MAX_READ_BYTES), "{r}");
    assert_eq!(r["to"].as_u64(), Some(end));
    assert_eq!(r["oldest"], 0);

    // Read backwards page by page, the whole output is there, once, in order.
    let mut all: Vec<u8> = Vec::new();
    let mut to = end;
    while to > 0 {
        let (r, bytes) = read(&mut c, &id, to.saturating_sub(MAX_READ_BYTES), to).await;
        let mut page = bytes;
        page.extend_from_slice(&all);
        all = page;
        to = r["from"].as_u64().unwrap();
    }
    let text = String::from_utf8_lossy(&all).replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    // The first number may share its line with what the terminal echoed
    // before it (a loaded machine echoes the typed command late): find "2".
    let two = lines
        .iter()
        .position(|l| *l == "2")
        .expect("the line 2 in what was read");
    assert!(lines[two - 1].ends_with('1'), "{:?}", lines[two - 1]);
    let numbers: Vec<&str> = lines[two..]
        .iter()
        .copied()
        .take_while(|l| l.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(numbers.len(), 89999, "{} bytes of {end}", all.len());
    assert!(
        numbers
            .iter()
            .enumerate()
            .all(|(i, n)| *n == (i + 2).to_string())
    );
    assert!(text.contains("READ-2-DONE"));

    // Bad ranges are refused and change nothing.
    c.send(json!({"type": "session.read", "id": id, "from": 0, "to": end + 1_000_000}))
        .await;
    let e = c.wait_error("invalid_field").await;
    assert_eq!(e["id"], id.as_str());
    c.send(json!({"type": "session.read", "id": id, "from": 9, "to": 3}))
        .await;
    c.wait_error("invalid_field").await;
    c.send(json!({"type": "session.read", "id": "t0000000000000000", "from": 0, "to": 1}))
        .await;
    c.wait_error("no_such_session").await;
    c.write(&id, "echo STILL-$((2+2))\n").await;
    c.wait_output(&id, "STILL-4").await;
}

#[tokio::test]
async fn a_read_before_the_oldest_kept_byte_starts_at_it() {
    // Small retention: the oldest bytes are dropped from disk.
    let agent = Agent::start(&["--retention-bytes", "200000", "--ring-bytes", "65536"]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id, "seq 1 200000; echo OLD-$((1+1))-DONE\n").await;
    c.wait_output(&id, "OLD-2-DONE").await;
    let end = end_of(&mut c, &id).await;
    let (r, _) = read(&mut c, &id, 0, 100).await;
    let oldest = r["oldest"].as_u64().unwrap();
    assert!(oldest > 100, "the first bytes are gone ({r})");
    assert_eq!(r["from"].as_u64(), Some(oldest));
    assert_eq!(
        r["to"].as_u64(),
        Some(oldest),
        "nothing of [0, 100) is left"
    );
    // From the oldest on, the bytes are there.
    let (r, bytes) = read(&mut c, &id, oldest, oldest + 1000).await;
    assert_eq!(r["to"].as_u64(), Some(oldest + 1000), "{r}");
    assert_eq!(bytes.len(), 1000);
    assert!(end > oldest);
}

#[tokio::test]
async fn renames_and_resizes_are_announced_to_every_viewer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    let mut agent = Agent::start_in(&root, &[]);
    let mut a = agent.connect().await;
    let mut b = agent.connect().await;
    let id = a
        .start(json!({"shell": "/bin/sh", "cols": 80, "rows": 24}))
        .await;
    a.send(json!({"type": "session.rename", "id": id, "title": "  build  "}))
        .await;
    let m = b.wait_type("session.renamed").await;
    assert_eq!(
        (m["id"].as_str(), m["title"].as_str()),
        (Some(id.as_str()), Some("build"))
    );
    a.send(json!({"type": "session.list"})).await;
    let list = a.wait_type("session.list").await;
    assert_eq!(list["sessions"][0]["title"], "build");
    a.send(json!({"type": "session.rename", "id": id, "title": "bad\u{7}"}))
        .await;
    a.wait_error("invalid_field").await;
    a.send(json!({"type": "session.rename", "id": id, "title": ""}))
        .await;
    a.wait_error("invalid_field").await;

    a.send(json!({"type": "terminal.resize", "id": id, "cols": 100, "rows": 30}))
        .await;
    let m = b.wait_type("session.resized").await;
    assert_eq!(
        (m["cols"].as_u64(), m["rows"].as_u64()),
        (Some(100), Some(30))
    );

    // A restarted agent keeps the name.
    drop((a, b));
    agent.signal(libc::SIGTERM);
    agent.wait_exit();
    let agent = Agent::start_in(&root, &[]);
    let mut c = agent.connect().await;
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    assert_eq!(list["sessions"][0]["title"], "build");
}

#[tokio::test]
async fn terminals_share_the_claude_config_dir() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id, "echo \"CFG=$CLAUDE_CONFIG_DIR=\"\n").await;
    let out = c.wait_output(&id, ".dispatch/claude=").await;
    let expected = format!(
        "CFG={}=",
        agent.workspace.join(".dispatch/claude").display()
    );
    assert!(out.contains(&expected), "{out}");
}

#[tokio::test]
async fn a_terminal_names_its_foreground_program() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    let foreground = |list: &serde_json::Value| list["sessions"][0]["foreground"].clone();
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    assert!(
        foreground(&list).is_null(),
        "the shell itself is not named: {list}"
    );
    c.write(&id, "sleep 30\n").await;
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        c.send(json!({"type": "session.list"})).await;
        let list = c.wait_type("session.list").await;
        if foreground(&list) == "sleep" {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "no foreground program named: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
