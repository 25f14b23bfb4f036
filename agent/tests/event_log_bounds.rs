//! The event log in `agent.db` stays bounded whatever clients do: details
//! are clipped, each connection logs a bounded share of each kind, old rows
//! are pruned, and connections past `--max-connections` are refused.

mod common;

use std::path::Path;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn db_bytes(ws: &Path) -> u64 {
    ["agent.db", "agent.db-wal", "agent.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(ws.join(".dispatch").join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// The bound this test states for `agent.db` (with its WAL).
const DB_BOUND: u64 = 8 << 20;
const ROWS: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_and_huge_messages_leave_agent_db_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let mut agent = Agent::start_in(&ws, &["--event-log-rows", &ROWS.to_string()]);
    let mut c = agent.connect().await;
    let id = c.start(json!({"shell": "/bin/sh"})).await;

    // 20,000 attaches over 20 connections, 1,000 each, pipelined; a
    // `session.list` after each batch says the agent has handled them.
    for _ in 0..20 {
        let mut conn = agent.connect().await;
        for _ in 0..1000 {
            conn.send(json!({"type": "session.attach", "id": id, "since": 0}))
                .await;
        }
        conn.send(json!({"type": "session.list"})).await;
        conn.discard_until_type("session.list").await;
    }

    // 300 messages of an unknown type of 900 KiB each, over 3 connections.
    let huge = "x".repeat(900 * 1024);
    for _ in 0..3 {
        let mut conn = agent.connect().await;
        for _ in 0..100 {
            conn.send(json!({"type": huge, "id": "y".repeat(100)}))
                .await;
            let e = conn.discard_until_type("error").await;
            assert_eq!(e["code"], "unknown_type");
            let echoed = e.to_string().len();
            assert!(echoed < 1024, "the error echoes {echoed} bytes");
        }
    }

    // SIGTERM: the agent stops its sessions and lets the database thread
    // finish what was queued before it exits.
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    let size = db_bytes(&ws);
    let conn = rusqlite::Connection::open(ws.join(".dispatch/agent.db")).unwrap();
    let (rows, longest): (i64, Option<i64>) = conn
        .query_row(
            "SELECT COUNT(*), MAX(LENGTH(detail)) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    eprintln!("agent.db with WAL: {size} bytes, {rows} event rows, longest detail {longest:?}");
    assert!(size < DB_BOUND, "agent.db holds {size} bytes");
    // Pruned every ROWS/8 inserts, so at most that much over.
    assert!(rows as u64 <= ROWS + ROWS / 8, "{rows} event rows");
    assert!(longest.unwrap_or(0) <= 256, "a detail of {longest:?} bytes");
    let attaches: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'attach'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        attaches <= 20 * 100,
        "{attaches} attach rows from 20 connections"
    );
}

#[tokio::test]
async fn a_connection_past_the_limit_is_told_why_and_closed() {
    let agent = Agent::start(&["--max-connections", "2"]);
    let _a = agent.connect().await;
    let mut b = agent.connect().await;
    let mut third = Client::raw(&agent.addr).await;
    let first = third.next().await.unwrap().unwrap();
    let Message::Text(t) = first else {
        panic!("expected the reason, got {first:?}")
    };
    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("2 connections"),
        "{v}"
    );
    match third.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1013),
        other => panic!("expected a close, got {other:?}"),
    }
    // The first two carry on, and a slot freed is a slot for the next (once
    // the agent has seen the close, which it answers).
    b.send(json!({"type": "session.list"})).await;
    b.wait_type("session.list").await;
    b.close().await;
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let mut next = Client::raw(&agent.addr).await;
        let first = next.next().await.unwrap().unwrap();
        if first.to_text().unwrap().contains("\"hello\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the freed slot was never given out"
        );
    }
}
