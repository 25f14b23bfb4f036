//! Restarting the agent, bad input of every kind, and authentication.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn restart_keeps_old_sessions_and_their_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let (id, seen) = {
        let agent = Agent::start_in(&ws, &[]);
        let mut c = agent.connect().await;
        let id = c
            .start(json!({"shell": "/bin/sh", "title": "keeper"}))
            .await;
        c.write(&id, "echo PERSIST-ME-$((6*7))\n").await;
        c.wait_output(&id, "PERSIST-ME-42\r\n").await;
        let seen = c.stream(&id).bytes.clone();
        // a crash, not a clean stop
        agent.signal(libc::SIGKILL);
        (id, seen)
    };
    let mut agent = Agent::start_in(&ws, &[]);
    let (status, body) = http_get(&agent.addr, "/sessions", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let s = list
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("old session listed");
    assert_eq!(s["endReason"], "agent restarted");
    assert!(s["ended"].is_i64());
    assert_eq!(s["title"], "keeper");
    assert!(s["offset"].as_u64().unwrap() >= seen.len() as u64);

    let mut c = agent.connect().await;
    c.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let att = c.wait_type("session.attached").await;
    assert_eq!(att["offset"], 0);
    let ended = c.wait_json(|v| v["type"] == "session.ended").await;
    assert_eq!(ended["reason"], "agent restarted");
    assert_eq!(c.stream(&id).bytes[..seen.len()], seen[..]);
    // a fresh attach draws the old screen
    c.send(json!({"type": "session.attach", "id": id})).await;
    c.wait_json(|v| v["type"] == "session.attached" && v["mode"] == "snapshot")
        .await;
    c.wait_until(|c| !c.stream(&id).snapshots.is_empty()).await;
    let snap = &c.stream(&id).snapshots[0].1;
    assert!(String::from_utf8_lossy(snap).contains("PERSIST-ME-42"));
    // writing to it is refused
    c.write(&id, "ls\n").await;
    c.wait_error("session_ended").await;

    // A clean stop (SIGTERM) ends the running sessions and their processes.
    let id2 = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id2, "echo PID=$$\n").await;
    let out = c.wait_until_digits(&id2, String::new(), "PID=").await;
    let pid = number_after(&out, "PID=").unwrap();
    agent.signal(libc::SIGTERM);
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id2.as_str())
        .await;
    assert_eq!(ended["reason"], "agent stopped");
    let status = agent.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(is_gone(pid));
    let agent = Agent::start_in(&ws, &[]);
    let (_, body) = http_get(&agent.addr, "/sessions", Some(TOKEN)).await;
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let s = list.iter().find(|s| s["id"] == id2.as_str()).unwrap();
    assert_eq!(s["endReason"], "agent stopped");
    // The event log recorded the lifecycle. It is written without waiting,
    // so what the crashed agent had not yet written (the first session's
    // "start") may be lost; a clean stop writes everything: the old
    // session's attach and refused write, the second session's start and end.
    let conn = rusqlite::Connection::open(ws.join(".dispatch/agent.db")).unwrap();
    for (session, logged) in [(&id, ["attach", "error"]), (&id2, ["start", "end"])] {
        let kinds = dispatch_agent::event_kinds(&conn, session).unwrap();
        for k in logged {
            assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
        }
    }
}

/// A clean stop tells every client of each session's end before closing its
/// socket: the client attached to the sessions (through the attachments) and
/// one attached to none (through the event fan-out).
#[tokio::test]
async fn a_clean_stop_tells_every_connection_that_its_sessions_ended() {
    let mut agent = Agent::start(&[]);
    let mut starter = agent.connect().await;
    let mut watcher = agent.connect().await;
    // Answered from its message loop, so the watcher receives events from
    // here on.
    watcher
        .send(json!({"type": "session.attach", "id": "no-such-session"}))
        .await;
    watcher.wait_error("no_such_session").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = starter.start(json!({"shell": "/bin/sh"})).await;
        watcher
            .wait_json(|v| v["type"] == "session.created" && v["id"] == id.as_str())
            .await;
        ids.push(id);
    }
    agent.signal(libc::SIGTERM);
    for c in [&mut starter, &mut watcher] {
        for id in &ids {
            let ended = c
                .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
                .await;
            assert_eq!(ended["reason"], "agent stopped");
        }
    }
    let status = agent.wait_exit();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_moved_workspace_keeps_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
    let id = {
        let mut agent = Agent::start_in(&before, &[]);
        let mut c = agent.connect().await;
        let id = c.start(json!({"shell": "/bin/sh"})).await;
        c.write(&id, "echo MOVED-$((6*7)); exit\n").await;
        c.wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
            .await;
        agent.signal(libc::SIGTERM);
        assert!(agent.wait_exit().success());
        id
    };
    std::fs::rename(&before, &after).unwrap();
    let agent = Agent::start_in(&after, &[]);
    let mut c = agent.connect().await;
    c.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let att = c.wait_type("session.attached").await;
    assert_eq!(att["offset"], 0, "{att}");
    assert!(att.get("lostBefore").is_none(), "{att}");
    c.wait_output(&id, "MOVED-42").await;
}

#[tokio::test]
async fn every_bad_input_gets_its_code_and_the_connection_carries_on() {
    let agent = Agent::start(&[
        "--max-frame-bytes",
        "8192",
        "--max-sessions",
        "2",
        "--input-rate",
        "1000",
        "--claude-bin",
        "/nonexistent/claude",
    ]);
    std::fs::create_dir_all(agent.workspace.join("sub")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), agent.workspace.join("escape")).unwrap();
    let mut c = agent.connect().await;
    let id = c
        .start(json!({"shell": "/bin/sh", "workspacePath": "sub"}))
        .await;

    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "bad_message"),
        ("[1,2]".into(), "bad_message"),
        (json!({"id": "x"}).to_string(), "bad_message"),
        (json!({"type": "no.such"}).to_string(), "unknown_type"),
        (json!({"type": "terminal.resize", "id": id, "cols": "wide", "rows": 1}).to_string(), "bad_message"),
        (json!({"type": "terminal.write", "id": "../../etc", "data": "x"}).to_string(), "bad_message"),
        (json!({"type": "terminal.start", "cols": 0, "rows": 24}).to_string(), "invalid_field"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 5000}).to_string(), "invalid_field"),
        (json!({"type": "terminal.resize", "id": id, "cols": 0, "rows": 10}).to_string(), "invalid_field"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "env": {"A=B": "x"}}).to_string(), "invalid_field"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "workspacePath": "../.."}).to_string(), "path_outside_workspace"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "workspacePath": "escape"}).to_string(), "path_outside_workspace"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "workspacePath": "/etc"}).to_string(), "path_outside_workspace"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "workspacePath": "missing"}).to_string(), "invalid_field"),
        (json!({"type": "terminal.start", "cols": 80, "rows": 24, "shell": "/nonexistent/shell"}).to_string(), "spawn_failed"),
        (json!({"type": "terminal.write", "id": "nosuch", "data": "x"}).to_string(), "no_such_session"),
        (json!({"type": "session.attach", "id": "nosuch"}).to_string(), "no_such_session"),
        (json!({"type": "session.stop", "id": "nosuch"}).to_string(), "no_such_session"),
        (json!({"type": "session.attach", "id": id, "since": 1u64 << 40}).to_string(), "invalid_field"),
        (json!({"type": "claude.start"}).to_string(), "claude_unavailable"),
        (json!({"type": "claude.send", "id": "c1", "input": "hi"}).to_string(), "no_such_session"),
        (json!({"type": "terminal.write", "id": id, "data": "x".repeat(9000)}).to_string(), "too_large"),
    ];
    for (msg, code) in &cases {
        c.send_text(msg.clone()).await;
        let e = c.wait_type("error").await;
        assert_eq!(e["code"], *code, "{msg:.80} -> {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        // An error about a named session says which one.
        let sent: Value = serde_json::from_str(msg).unwrap_or_default();
        if *code == "no_such_session" {
            assert_eq!(e["id"], sent["id"], "{msg:.80} -> {e}");
        }
    }
    // binary frames: undecodable, wrong kind, unknown session, too large
    c.send_binary(vec![1]).await;
    c.wait_error("bad_frame").await;
    c.send_binary(vec![9, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0])
        .await;
    c.wait_error("bad_frame").await;
    let mut out_frame = Vec::new();
    dispatch_api::frame::encode_header_into(
        dispatch_api::FrameKind::Output,
        &id,
        0,
        &mut out_frame,
    );
    c.send_binary(out_frame).await;
    c.wait_error("bad_frame").await;
    let mut f = Vec::new();
    dispatch_api::frame::encode_header_into(dispatch_api::FrameKind::Input, "nosuch", 0, &mut f);
    c.send_binary(f).await;
    c.wait_error("no_such_session").await;
    c.send_binary(vec![3; 9000]).await;
    c.wait_error("too_large").await;

    // input rate: 1000 B/s with bursts of 4 KiB
    let chunk = "#".repeat(3000);
    c.write(&id, &chunk).await;
    c.write(&id, &chunk).await;
    let e = c.wait_error("rate_limited").await;
    assert_eq!(e["id"], id.as_str());

    // session limit: 2 may run
    let id2 = c.start(json!({"shell": "/bin/sh"})).await;
    c.send(json!({"type": "terminal.start", "cols": 80, "rows": 24, "shell": "/bin/sh"}))
        .await;
    c.wait_error("session_limit").await;

    // nothing of the above disturbed the sessions or the connection
    c.write(&id2, "\u{15}echo still-$((1+1))-ok\n").await;
    c.wait_output(&id2, "still-2-ok").await;
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(list["sessions"][0]["cwd"], "sub");
    // and the errors are counted
    let (_, metrics) = http_get(&agent.addr, "/metrics", None).await;
    assert!(
        metrics.contains("dispatch_agent_errors_total{code=\"bad_message\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let agent = Agent::start(&[]);
    for path in ["/ws", "/sessions", "/activity"] {
        let (status, body) = http_get(&agent.addr, path, None).await;
        assert_eq!(status, 401, "{path}");
        assert!(body.contains("unauthorized"), "{body}");
        let (status, _) = http_get(&agent.addr, path, Some("wrong-token")).await;
        assert_eq!(status, 401, "{path}");
    }
    let err = Client::connect(&agent.addr, None)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("401"), "{err}");
    let err = Client::connect(&agent.addr, Some("nope"))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("401"), "{err}");
    // the open routes
    let (status, body) = http_get(&agent.addr, "/healthz", None).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(&agent.addr, "/readyz", None).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    assert!(v["claude"]["available"].is_boolean());
    let (status, _) = http_get(&agent.addr, "/metrics", None).await;
    assert_eq!(status, 200);
    // and with the token
    let (status, body) = http_get(&agent.addr, "/activity", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["runningSessions"], 0);
    // no session was created by any of that
    let (_, body) = http_get(&agent.addr, "/sessions", Some(TOKEN)).await;
    assert_eq!(body.trim(), "[]");
}

#[tokio::test]
async fn clients_are_pinged_and_one_that_never_answers_is_dropped() {
    let agent = Agent::start(&["--ping-interval", "1"]);
    // A client that answers (tungstenite pongs as it reads) stays connected
    // past three intervals.
    let mut c = agent.connect().await;
    c.wait_until(|c| c.pings >= 4).await;
    c.send(json!({"type": "session.list"})).await;
    c.wait_type("session.list").await;

    // One that completes the handshake and then never answers is dropped.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&agent.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n",
        agent.addr
    );
    raw.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        raw.read_to_end(&mut got),
    )
    .await
    .expect("the agent dropped the silent client")
    .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Its pings were there to answer: frames with opcode 0x9.
    assert!(got.windows(2).any(|w| w == [0x89, 0x00]), "no ping seen");
}
