//! Local mode starts agents through their holder: a crashed agent is
//! restarted by it, and the workspace's shells live on (issue 10, "shells
//! that outlive the agent").

mod common;

use common::*;
use futures_util::SinkExt;

/// The agent the holder `holder` runs now.
fn agent_of(holder: u32) -> Option<i32> {
    let kids = std::fs::read_to_string(format!("/proc/{holder}/task/{holder}/children")).ok()?;
    kids.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "dispatch-agent")
        })
}

async fn wait_agent(holder: u32, not: Option<i32>) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(p) = agent_of(holder).filter(|p| Some(*p) != not) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no agent under the holder"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crashed_agent_comes_back_with_its_shells_still_running() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "keep").await;
    let mut ws = gw.ws(&c, "keep").await.unwrap();
    next_json(&mut ws, "hello").await;
    let id = start_shell(&mut ws).await;
    let mut seen = Output::default();
    ws.send(input_frame(&id, b"X=kept-$((6*7)); echo SET-$X\n"))
        .await
        .unwrap();
    read_until(&mut ws, &id, &mut seen, b"SET-kept-42").await;

    let (_, holder) = gw.wait_agents_started(1).await[0].clone();
    let agent = wait_agent(holder, None).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while next(&mut ws).await.is_some() {}
    wait_agent(holder, Some(agent)).await;

    // Same shell (its variable is still set), same address, no restart by
    // the gateway.
    let mut ws = gw.ws(&c, "keep").await.unwrap();
    next_json(&mut ws, "hello").await;
    send_json(&mut ws, serde_json::json!({"type": "session.list"})).await;
    let list = next_json(&mut ws, "session.list").await;
    let s = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("listed: {list}"));
    assert!(s["ended"].is_null(), "still running: {s}");
    let end = seen.end();
    send_json(
        &mut ws,
        serde_json::json!({"type": "session.attach", "id": id, "since": end}),
    )
    .await;
    ws.send(input_frame(&id, b"echo STILL-$X\n")).await.unwrap();
    read_until(&mut ws, &id, &mut seen, b"STILL-kept-42").await;
    assert_eq!(
        gw.agents_started().len(),
        1,
        "the holder restarted the agent, not the gateway"
    );
}
