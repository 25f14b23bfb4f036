//! A workspace directory swapped for another one (from the user's own
//! terminal: `mv ws ws.old && ln -s ../bob/bob-ws ws`) is refused at the
//! next start, before anything of the other workspace is read or changed.

mod common;

use common::*;
use serde_json::json;

fn running_sessions(ws: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(ws.join(".dispatch/agent.db")).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM sessions WHERE ended IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_swapped_workspace_is_refused_and_the_other_workspace_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let alice = root.join("alice/ws");
    let bob = root.join("bob/bob-ws");
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(&bob).unwrap();

    // Bob's agent runs a shell.
    let bob_agent = Agent::start_in(&bob, &["--workspace-id", "bob/bob-ws"]);
    let mut c = bob_agent.connect().await;
    let id = c.start(json!({})).await;
    c.write(&id, "echo bob-$((6*7))\n").await;
    c.wait_output(&id, "bob-42").await;
    eventually_blocking(|| running_sessions(&bob) == 1);

    // Alice's agent ran once, recording her workspace; then it stops.
    let mut alice_agent = Agent::start_in(&alice, &["--workspace-id", "alice/ws"]);
    alice_agent.signal(libc::SIGTERM);
    assert!(alice_agent.wait_exit().success());

    // From her terminal: the swap.
    std::fs::rename(&alice, root.join("alice/ws.old")).unwrap();
    std::os::unix::fs::symlink("../bob/bob-ws", &alice).unwrap();
    let said = start_refused(&alice, &["--workspace-id", "alice/ws"]);
    assert!(said.contains("is a symbolic link"), "{said}");

    // Reached another way (the link higher up, say): the state says whose it is.
    let said = start_refused(&bob, &["--workspace-id", "alice/ws"]);
    assert!(
        said.contains(r#"holds the state of workspace "bob/bob-ws", not of "alice/ws""#),
        "{said}"
    );

    // Her state directory swapped for his.
    std::fs::remove_file(&alice).unwrap();
    std::fs::rename(root.join("alice/ws.old"), &alice).unwrap();
    std::fs::rename(alice.join(".dispatch"), alice.join("dispatch.old")).unwrap();
    std::os::unix::fs::symlink("../../bob/bob-ws/.dispatch", alice.join(".dispatch")).unwrap();
    let said = start_refused(&alice, &["--workspace-id", "alice/ws"]);
    assert!(said.contains(".dispatch is a symbolic link"), "{said}");

    // Bob's session was never marked ended by Alice's agent, and runs on.
    assert_eq!(running_sessions(&bob), 1);
    c.write(&id, "echo still-$((6*7))\n").await;
    c.wait_output(&id, "still-42").await;

    // Put back, her workspace starts again.
    std::fs::remove_file(alice.join(".dispatch")).unwrap();
    std::fs::rename(alice.join("dispatch.old"), alice.join(".dispatch")).unwrap();
    let _alice_again = Agent::start_in(&alice, &["--workspace-id", "alice/ws"]);
}

/// Polls a condition on files the agent writes from its database thread.
fn eventually_blocking(mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(std::time::Instant::now() < end, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
