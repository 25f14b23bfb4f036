//! The WebSocket proxy: frames pass unchanged both ways, and a dying agent
//! gives the client a clear close, a restarted agent, and resumable output.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The running agent's URL and token, read the way only a test may: the URL
/// from the gateway's log, the token from the agent's environment in /proc.
async fn agent_direct(gw: &Gateway) -> (String, String, u32) {
    let (url, pid) = gw
        .wait_agents_started(1)
        .await
        .last()
        .cloned()
        .expect("an agent was started");
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let token = env
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("DISPATCH_AGENT_TOKEN="))
        .expect("agent token in its environment")
        .to_owned();
    (url.replacen("http://", "ws://", 1) + "/ws", token, pid)
}

#[tokio::test]
async fn bytes_in_equal_bytes_out_both_ways() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "bytes").await;
    let mut ws = gw.ws(&c, "bytes").await.unwrap();
    let hello_via_gateway = match next(&mut ws).await {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("first message {other:?}"),
    };
    let id = start_shell(&mut ws).await;
    let mut out = Output::default();

    // Browser -> agent: every byte value, in a binary input frame, reaches
    // the program unchanged (the terminal is raw, so the tty passes them on).
    ws.send(input_frame(&id, b"stty raw -echo; echo RAW\"\"-READY; head -c 256 | od -An -v -tx1 | tr -d ' \\n'; echo; echo OD\"\"-DONE\n"))
        .await
        .unwrap();
    read_until(&mut ws, &id, &mut out, b"RAW-READY").await;
    let all: Vec<u8> = (0..=255u8).collect();
    ws.send(input_frame(&id, &all)).await.unwrap();
    read_until(&mut ws, &id, &mut out, b"OD-DONE").await;
    let hex: String = all.iter().map(|b| format!("{b:02x}")).collect();
    assert!(contains(&out.bytes, hex.as_bytes()), "od saw other bytes");

    // Text frames too: terminal.write with multi-byte UTF-8 arrives intact.
    let text = "héllo-wörld-✓-🦀";
    send_json(
        &mut ws,
        serde_json::json!({"type":"terminal.write","id":id,"data":format!("stty sane; printf '%s\\n' '{text}' | od -An -v -tx1 | tr -d ' \\n'; echo; echo TX\"\"-DONE\n")}),
    )
    .await;
    read_until(&mut ws, &id, &mut out, b"TX-DONE").await;
    let text_hex: String = text
        .bytes()
        .chain([b'\n'])
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(contains(&out.bytes, text_hex.as_bytes()));

    // Agent -> browser: a large binary output, through the gateway, equals the
    // agent's own record of the stream byte for byte.
    ws.send(input_frame(
        &id,
        b"head -c 3000000 /dev/urandom; echo; echo BIG\"\"-DONE\n",
    ))
    .await
    .unwrap();
    read_until(&mut ws, &id, &mut out, b"BIG-DONE").await;
    assert!(out.bytes.len() > 3_000_000);
    assert_eq!(out.start, Some(0));

    let (url, token, _) = agent_direct(&gw).await;
    let auth = format!("Bearer {token}");
    let mut direct = ws_connect(&url, &[("authorization", &auth)]).await.unwrap();
    let hello_direct = match next(&mut direct).await {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("first message {other:?}"),
    };
    assert_eq!(
        hello_via_gateway, hello_direct,
        "text frames pass unchanged"
    );
    send_json(
        &mut direct,
        serde_json::json!({"type":"session.attach","id":id,"since":0}),
    )
    .await;
    let mut replay = Output::default();
    read_until(&mut direct, &id, &mut replay, b"BIG-DONE").await;
    let n = out.bytes.len().min(replay.bytes.len());
    assert!(n > 3_000_000);
    assert!(out.bytes[..n] == replay.bytes[..n], "the streams differ");

    let metrics = gw.req("GET", "/metrics", &[], "").await.body;
    let to_client: f64 = metrics
        .lines()
        .find(|l| l.starts_with("dispatch_gateway_proxied_bytes_total{direction=\"to_client\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(to_client > 3_000_000.0, "{metrics}");
    assert!(
        metrics.contains("dispatch_gateway_ws_connections_open 1"),
        "{metrics}"
    );

    // A close from the client reaches the agent and the handshake completes.
    ws.send(Message::Close(None)).await.unwrap();
    while next(&mut ws).await.is_some() {}
}

#[tokio::test]
async fn a_killed_agent_is_restarted_and_the_client_resumes() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "crash").await;
    let mut ws = gw.ws(&c, "crash").await.unwrap();
    next_json(&mut ws, "hello").await;
    let id = start_shell(&mut ws).await;
    let mut seen = Output::default();
    ws.send(input_frame(&id, b"seq 1 20000; echo BEFORE\"\"-KILL\n"))
        .await
        .unwrap();
    read_until(&mut ws, &id, &mut seen, b"BEFORE-KILL").await;

    let (_, _, pid) = agent_direct(&gw).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // The client is told plainly, then the connection closes with 1012.
    let mut error = None;
    let mut close = None;
    while let Some(m) = next(&mut ws).await {
        match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    error = Some(v);
                }
            }
            Message::Close(f) => close = f,
            _ => {}
        }
    }
    let error = error.expect("an error message before the close");
    assert_eq!(error["code"], "unavailable");
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Restart);

    // Reconnecting waits for the restarted agent.
    let mut ws = gw.ws(&c, "crash").await.unwrap();
    next_json(&mut ws, "hello").await;
    let started = gw.wait_agents_started(2).await;
    assert_eq!(started.len(), 2, "one restart");
    assert_ne!(started[1].1, pid);

    // Resume from where the client stopped: nothing it saw is missing, and
    // the replay from 0 matches what it saw byte for byte.
    let end = seen.end();
    send_json(
        &mut ws,
        serde_json::json!({"type":"session.attach","id":id,"since":end}),
    )
    .await;
    let attached = next_json(&mut ws, "session.attached").await;
    assert!(attached["lostBefore"].is_null(), "{attached}");
    assert!(attached["offset"].as_u64().unwrap() <= end, "{attached}");
    assert!(
        attached["info"]["offset"].as_u64().unwrap() >= end,
        "{attached}"
    );
    send_json(
        &mut ws,
        serde_json::json!({"type":"session.attach","id":id,"since":0}),
    )
    .await;
    // Frames of the first attachment may come before the second one starts.
    let attached = next_json(&mut ws, "session.attached").await;
    assert_eq!(attached["offset"], 0, "{attached}");
    let mut replay = Output::default();
    read_until(&mut ws, &id, &mut replay, b"BEFORE-KILL").await;
    assert_eq!(&replay.bytes[..seen.bytes.len()], &seen.bytes[..]);

    // The restarted agent runs new sessions.
    let id2 = start_shell(&mut ws).await;
    let mut out = Output::default();
    ws.send(input_frame(&id2, b"echo AFTER\"\"-RESTART\n"))
        .await
        .unwrap();
    read_until(&mut ws, &id2, &mut out, b"AFTER-RESTART").await;

    let metrics = gw.req("GET", "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("dispatch_gateway_agent_restarts_total 1"),
        "{metrics}"
    );
    // And the gateway stops its agent when it exits.
    let pid2 = started[1].1;
    assert_eq!(gw.stop().await.code(), Some(0));
    let stat = std::fs::read_to_string(format!("/proc/{pid2}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "agent still running: {stat}"
    );
}
