//! PTY sessions through the real agent binary: start, echo, exit codes,
//! resize, stop, several clients, lossless attach, screen snapshots.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn start_echo_and_exit_code() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id, "echo hel''lo-from-sh\n").await;
    c.wait_output(&id, "hello-from-sh").await;
    // binary input frames work as well as terminal.write
    let mut frame = Vec::new();
    dispatch_api::frame::encode_header_into(dispatch_api::FrameKind::Input, &id, 0, &mut frame);
    frame.extend_from_slice(b"exit 7\n");
    c.send_binary(frame).await;
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    assert_eq!(ended["exitCode"], 7, "{ended}");
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    let s = &list["sessions"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["exitCode"], 7);
    assert!(s["ended"].is_i64());
    assert_eq!(s["offset"], c.stream(&id).end());
    // An ended session's output stays readable, from the start.
    let mut late = agent.connect().await;
    late.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let ended = late.wait_type("session.ended").await;
    assert_eq!(ended["exitCode"], 7);
    assert_eq!(late.stream(&id).bytes, c.stream(&id).bytes);
}

#[tokio::test]
async fn resize_is_seen_by_stty_size() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let id = c
        .start(json!({"shell": "/bin/sh", "cols": 80, "rows": 24}))
        .await;
    c.write(&id, "stty size; echo SIZE-DONE-1\n").await;
    c.wait_output(&id, "24 80\r\n").await;
    c.send(json!({"type": "terminal.resize", "id": id, "cols": 132, "rows": 40}))
        .await;
    c.write(&id, "stty size\n").await;
    c.wait_output(&id, "40 132\r\n").await;
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    assert_eq!(list["sessions"][0]["cols"], 132);
    assert_eq!(list["sessions"][0]["rows"], 40);
}

#[tokio::test]
async fn stop_kills_grandchildren() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let shell = if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let id = c.start(json!({"shell": shell})).await;
    // A background job (its own process group under a job-control shell), a
    // nohup'd one that ignores SIGHUP, and one two levels down.
    c.write(&id, "sleep 1001 & echo BG1=$!\n").await;
    c.write(&id, "nohup sleep 1002 >/dev/null 2>&1 & echo BG2=$!\n")
        .await;
    c.write(&id, "sh -c 'sleep 1003 & echo BG3=$!; wait' &\n")
        .await;
    let mut out = String::new();
    for k in ["BG1=", "BG2=", "BG3="] {
        out = c.wait_until_digits(&id, out, k).await;
    }
    let pids: Vec<i32> = ["BG1=", "BG2=", "BG3="]
        .iter()
        .map(|k| number_after(&out, k).unwrap_or_else(|| panic!("no {k} in {out:?}")))
        .collect();
    for p in &pids {
        assert!(!is_gone(*p), "pid {p} should be running before stop");
    }
    c.send(json!({"type": "session.stop", "id": id})).await;
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    assert_eq!(ended["reason"], "stopped", "{ended}");
    eventually("background processes to be gone", || {
        pids.iter().all(|p| is_gone(*p))
    })
    .await;
    // stopping an ended session is an error, and nothing else happens
    c.send(json!({"type": "session.stop", "id": id})).await;
    c.wait_error("session_ended").await;
}

#[tokio::test]
async fn simultaneous_starts_on_two_connections_each_get_their_own_reply() {
    let agent = Agent::start(&[]);
    let mut a = agent.connect().await;
    let mut b = agent.connect().await;
    let start = |r: &str| json!({"type": "terminal.start", "cols": 80, "rows": 24, "clientRef": r});
    a.send(start("mine")).await;
    b.send(start("mine")).await;
    let reply_a = a
        .wait_json(|v| v["type"] == "session.created" && v["clientRef"] == "mine")
        .await;
    let reply_b = b
        .wait_json(|v| v["type"] == "session.created" && v["clientRef"] == "mine")
        .await;
    assert_ne!(reply_a["id"], reply_b["id"]);
    // Each hears of the other's session, without a ref to mistake it for its own.
    let heard_a = a
        .wait_json(|v| v["type"] == "session.created" && v["id"] == reply_b["id"])
        .await;
    assert!(heard_a.get("clientRef").is_none(), "{heard_a}");
    let heard_b = b
        .wait_json(|v| v["type"] == "session.created" && v["id"] == reply_a["id"])
        .await;
    assert!(heard_b.get("clientRef").is_none(), "{heard_b}");

    // A refused start says which request it refuses.
    a.send(json!({"type": "terminal.start", "cols": 80, "rows": 24, "workspacePath": "../up", "clientRef": "bad-path"}))
        .await;
    let e = a.wait_error("path_outside_workspace").await;
    assert_eq!(e["clientRef"], "bad-path");
    // So does the reply to a Claude start (an error where the CLI is missing).
    a.send(json!({"type": "claude.start", "clientRef": "claude-1"}))
        .await;
    let r = a.wait_json(|v| v["clientRef"] == "claude-1").await;
    assert!(
        r["type"] == "error" || r["type"] == "session.created",
        "{r}"
    );
}

#[tokio::test]
async fn two_clients_on_one_session() {
    let agent = Agent::start(&[]);
    let mut a = agent.connect().await;
    let mut b = agent.connect().await;
    let id = a.start(json!({"shell": "/bin/sh"})).await;
    // b learns of the session from the broadcast and attaches from 0
    let created = b.wait_type("session.created").await;
    assert_eq!(created["id"], id.as_str());
    b.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let att = b.wait_type("session.attached").await;
    assert_eq!(att["mode"], "replay");
    a.write(&id, "echo from-a-$((40+2))\n").await;
    a.wait_output(&id, "from-a-42").await;
    b.wait_output(&id, "from-a-42").await;
    b.write(&id, "echo from-b-$((50+5))\n").await;
    b.wait_output(&id, "from-b-55").await;
    a.wait_output(&id, "from-b-55").await;
    // same stream, byte for byte, over the range both have
    let (sa, sb) = (a.stream(&id), b.stream(&id));
    let end = sa.end().min(sb.end());
    assert_eq!(sa.base, 0);
    assert_eq!(sb.base, 0);
    assert_eq!(sa.bytes[..end as usize], sb.bytes[..end as usize]);
    a.send(json!({"type": "session.list"})).await;
    let list = a.wait_type("session.list").await;
    assert_eq!(list["sessions"][0]["attached"], 2);
}

#[tokio::test]
async fn attach_from_offset_under_busy_producer_gets_exactly_the_missed_bytes() {
    // b asks for offset 1000 once more than the 1 MiB ring was produced, so
    // its replay starts from the on-disk log.
    let agent = Agent::start(&["--ring-bytes", "1048576"]);
    let mut a = agent.connect().await;
    let id = a.start(json!({"shell": "/bin/sh"})).await;
    a.write(
        &id,
        "i=0; while [ $i -lt 400 ]; do seq $((i*1000)) $((i*1000+999)); sleep 0.01; i=$((i+1)); done; echo PRODUCER-$((1+1))-DONE\n",
    )
    .await;
    a.wait_until(|c| c.streams.get(&id).is_some_and(|s| s.end() > 1_200_000))
        .await;
    // `a` keeps reading in its own task, so that it never falls behind.
    let ida = id.clone();
    let a_task = tokio::spawn(async move {
        a.wait_output(&ida, "PRODUCER-2-DONE\r\n").await;
        a
    });
    // b connects while the producer is still going and asks from offset 1000
    let mut b = agent.connect().await;
    b.send(json!({"type": "session.attach", "id": id, "since": 1000}))
        .await;
    let att = b.wait_json(|v| v["type"] == "session.attached").await;
    assert_eq!(att["offset"], 1000);
    assert!(att.get("lostBefore").is_none(), "{att}");
    let producing_at_attach = att["info"]["offset"].as_u64().unwrap();
    let a = a_task.await.unwrap();
    let end = a.stream(&id).end();
    assert!(
        producing_at_attach < end,
        "the producer was still busy when b attached"
    );
    b.wait_until(|c| c.streams.get(&id).is_some_and(|s| s.end() >= end))
        .await;
    let (sa, sb) = (a.stream(&id), b.stream(&id));
    assert_eq!(sa.resyncs, 0);
    assert_eq!(sb.resyncs, 0);
    assert_eq!(sb.base, 1000);
    assert_eq!(
        &sb.bytes[..(end - 1000) as usize],
        &sa.bytes[1000..end as usize]
    );

    // Asking for bytes older than anything kept says so plainly.
    let agent2 = Agent::start(&["--ring-bytes", "65536", "--retention-bytes", "100000"]);
    let mut c = agent2.connect().await;
    let id2 = c.start(json!({"shell": "/bin/sh"})).await;
    c.write(&id2, "seq 1 100000; echo SEQ-$((1+1))-DONE\n")
        .await;
    c.wait_output(&id2, "SEQ-2-DONE\r\n").await;
    let mut d = agent2.connect().await;
    d.send(json!({"type": "session.attach", "id": id2, "since": 0}))
        .await;
    let att = d.wait_type("session.attached").await;
    let lost = att["lostBefore"].as_u64().expect("lostBefore is set");
    assert!(lost > 0);
    assert_eq!(att["offset"], lost);
    let end = c.stream(&id2).end();
    d.wait_until(|cl| cl.streams.get(&id2).is_some_and(|s| s.end() >= end))
        .await;
    // byte for byte over the range the starter kept (it may itself have been
    // resynced, the ring being small)
    let (sc, sd) = (c.stream(&id2), d.stream(&id2));
    let from = lost.max(sc.base);
    assert_eq!(
        sd.bytes[(from - lost) as usize..(end - lost) as usize],
        sc.bytes[(from - sc.base) as usize..(end - sc.base) as usize]
    );
}

#[tokio::test]
async fn fresh_attach_sees_the_alternate_screen() {
    let agent = Agent::start(&[]);
    let mut a = agent.connect().await;
    let id = a
        .start(json!({"shell": "/bin/sh", "cols": 60, "rows": 20}))
        .await;
    a.write(&id, "echo PRIMARY-$((1))-LINE\n").await;
    a.wait_output(&id, "PRIMARY-1-LINE\r\n").await;
    a.write(
        &id,
        "printf '\\033[?1049h\\033[2J\\033[HALT-SCREEN-TEXT\\033[7;11HMA\\122K'; printf '\\033[?1h'; sleep 1000\n",
    )
    .await;
    a.wait_output(&id, "MARK").await;
    let mut b = agent.connect().await;
    b.send(json!({"type": "session.attach", "id": id})).await;
    let att = b.wait_type("session.attached").await;
    assert_eq!(att["mode"], "snapshot");
    b.wait_until(|c| c.streams.get(&id).is_some_and(|s| !s.snapshots.is_empty()))
        .await;
    let (offset, snap) = b.stream(&id).snapshots[0].clone();
    assert_eq!(att["offset"], offset);
    let mut p = vt100::Parser::new(
        std::num::NonZeroU16::new(20).unwrap(),
        std::num::NonZeroU16::new(60).unwrap(),
        0,
    );
    p.process(&snap);
    let s = p.screen();
    assert!(s.alternate_screen(), "snapshot is on the alternate screen");
    let text = s.contents();
    assert!(text.contains("ALT-SCREEN-TEXT"), "{text:?}");
    assert!(text.contains("MARK"));
    assert!(!text.contains("PRIMARY-1-LINE"), "{text:?}");
    assert_eq!(s.cursor_position(), (6, 14));
    assert!(s.application_cursor());
    // live output continues from the snapshot's offset
    a.write(&id, "x").await;
    b.send(json!({"type": "session.stop", "id": id})).await;
    b.wait_json(|v| v["type"] == "session.ended").await;
    assert!(b.stream(&id).end() >= offset);
}

#[tokio::test]
async fn slow_client_is_resynced_not_buffered() {
    let agent = Agent::start(&["--ring-bytes", "65536"]);
    let mut a = agent.connect().await;
    let id = a.start(json!({"shell": "/bin/sh"})).await;
    let mut slow = agent.connect().await;
    slow.send(json!({"type": "session.attach", "id": id})).await;
    slow.wait_type("session.attached").await;
    // `slow` reads nothing while the session produces far more than the ring
    // and the sockets' buffers hold.
    a.write(&id, "seq 1 2500000; echo FLOOD-$((1+1))-DONE\n")
        .await;
    // (a itself may be resynced: the ring is small; then the marker may
    // arrive inside a snapshot)
    a.wait_output(&id, "FLOOD-2-DONE").await;
    let end = a.stream(&id).end();
    slow.wait_until(|c| c.streams.get(&id).is_some_and(|s| s.end() >= end))
        .await;
    let (sa, ss) = (a.stream(&id), slow.stream(&id));
    assert!(
        ss.resyncs >= 1,
        "a client that fell behind the ring is resynced"
    );
    assert!(ss.snapshots.len() >= 2);
    // after the resync the stream is exact again
    assert_eq!(ss.end(), end);
    let from = sa.base.max(ss.base);
    assert_eq!(
        &ss.bytes[(from - ss.base) as usize..(end - ss.base) as usize],
        &sa.bytes[(from - sa.base) as usize..(end - sa.base) as usize]
    );
}

#[tokio::test]
async fn fresh_attach_during_a_flood_gets_the_screen_then_live_output() {
    let agent = Agent::start(&[]);
    let mut a = agent.connect().await;
    let id = a.start(json!({"shell": "/bin/sh"})).await;
    a.write(&id, "exec yes flood-line\n").await;
    a.wait_output(&id, "flood-line\r\nflood-line\r\n").await;
    // `a` stops reading (and is resynced later); b attaches fresh meanwhile
    let mut b = agent.connect().await;
    b.send(json!({"type": "session.attach", "id": id})).await;
    let att = b.wait_type("session.attached").await;
    assert_eq!(att["mode"], "snapshot");
    let offset = att["offset"].as_u64().unwrap();
    b.wait_until(|c| {
        c.streams
            .get(&id)
            .is_some_and(|s| !s.snapshots.is_empty() && s.end() > offset + 200_000)
    })
    .await;
    let snap = &b.stream(&id).snapshots[0].1;
    assert!(String::from_utf8_lossy(snap).contains("flood-line"));
    b.send(json!({"type": "session.stop", "id": id})).await;
    b.wait_json(|v| v["type"] == "session.ended").await;
}

#[tokio::test]
async fn reattaching_during_a_flood_never_mixes_in_the_old_attachment() {
    let agent = Agent::start(&[]);
    let mut a = agent.connect().await;
    let id = a.start(json!({"shell": "/bin/sh"})).await;
    a.write(&id, "exec yes flood-line\n").await;
    a.wait_output(&id, "flood-line\r\nflood-line\r\n").await;
    // Each attach replaces the connection's attachment. The client checks
    // that every output frame after a `session.attached` continues exactly
    // from its offset, so a late frame of the replaced attachment fails it.
    for _ in 0..40 {
        let since = a.stream(&id).end();
        a.send(json!({"type": "session.attach", "id": id, "since": since}))
            .await;
        let att = a.wait_json(|v| v["type"] == "session.attached").await;
        assert_eq!(att["offset"], since, "{att}");
        a.wait_until(|c| c.stream(&id).end() > since + 20_000).await;
    }
    a.send(json!({"type": "session.stop", "id": id})).await;
    a.wait_json(|v| v["type"] == "session.ended").await;
}
