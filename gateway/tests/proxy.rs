//! The WebSocket proxy: frames pass unchanged both ways, and a dying agent
//! gives the client a clear close, a restarted agent, and resumable output.

mod common;

use common::*;
use std::time::{Duration, Instant};

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

/// Reads on until the close frame; its code and reason.
async fn next_close(ws: &mut Ws) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
    loop {
        match next(ws).await {
            Some(Message::Close(f)) => return f,
            Some(_) => {}
            None => panic!("the connection ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn pings_pass_through_and_a_gateway_shutdown_closes_with_1001() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "ctl").await;
    let mut ws = gw.ws(&c, "ctl").await.unwrap();
    next_json(&mut ws, "hello").await;
    // The agent answers the ping; the gateway only relays both frames.
    ws.send(Message::Ping(b"are-you-there".to_vec().into()))
        .await
        .unwrap();
    loop {
        match next(&mut ws).await {
            Some(Message::Pong(p)) => {
                assert_eq!(&p[..], b"are-you-there");
                break;
            }
            Some(_) => {}
            None => panic!("no pong"),
        }
    }

    let stopped = tokio::spawn(gw.stop());
    let close = next_close(&mut ws).await;
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    while next(&mut ws).await.is_some() {}
    assert!(stopped.await.unwrap().success());
}

#[tokio::test]
async fn a_client_breaking_the_protocol_is_closed_with_1002_and_nothing_else_changes() {
    use tokio::io::AsyncWriteExt;
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "proto").await;
    let mut ws = gw.ws(&c, "proto").await.unwrap();
    next_json(&mut ws, "hello").await;
    // An unmasked text frame: only a server may send one.
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        panic!("plain TCP expected");
    };
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let close = next_close(&mut ws).await;
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Protocol));

    // The workspace and its agent carry on for the next connection.
    let mut again = gw.ws(&c, "proto").await.unwrap();
    next_json(&mut again, "hello").await;
    let id = start_shell(&mut again).await;
    again
        .send(input_frame(&id, b"echo still\"\"-here\n"))
        .await
        .unwrap();
    read_until(&mut again, &id, &mut Output::default(), b"still-here").await;
    // Its start was logged before it ran; the log reader may trail.
    let started = gw.wait_agents_started(1).await;
    assert_eq!(started.len(), 1, "the agent was not restarted");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The offset session `id`'s output has reached, from `session.list` on `ws`.
/// (Attaching to watch it would cost a screen snapshot, which in a debug
/// build falls behind a flood and is taken again on every resync.)
async fn session_offset(ws: &mut Ws, id: &str) -> u64 {
    send_json(ws, serde_json::json!({"type":"session.list"})).await;
    let list = next_json(ws, "session.list").await;
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["offset"].as_u64())
        .expect("the session is listed")
}

#[tokio::test]
async fn a_client_that_does_not_read_stalls_its_stream_not_the_gateways_memory() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "slow").await;
    let mut slow = gw.ws(&c, "slow").await.unwrap();
    next_json(&mut slow, "hello").await;
    let id = start_shell(&mut slow).await;
    let gw_pid = gw.child.id().unwrap();
    let before = rss_kib(gw_pid);
    // Far more than the test waits for: the session must still be running
    // when `slow` reads again (a finished session's tail is sent from disk
    // instead of a resync). Long lines: few scrolls for the agent's screen
    // emulator, which is slow in a debug build.
    slow.send(input_frame(
        &id,
        b"yes $(printf '%0100d' 0) | head -c 4000000000; echo\n",
    ))
    .await
    .unwrap();

    // `slow` reads nothing while the shell writes 48 MiB (several times what
    // the sockets between agent, gateway and client hold, and the ring's
    // 2 MiB), watched from another connection. Nothing announces an offset
    // without streaming it, so the watcher asks every 50 ms.
    let mut watch = gw.ws(&c, "slow").await.unwrap();
    next_json(&mut watch, "hello").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while session_offset(&mut watch, &id).await < 48 << 20 {
        assert!(Instant::now() < deadline, "the shell did not write 48 MiB");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = rss_kib(gw_pid).saturating_sub(before);
    assert!(grown < 16 << 10, "the gateway grew by {grown} KiB");

    // Reading again, the client learns it fell behind and where to go on.
    loop {
        match next(&mut slow).await {
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "session.resync" && v["id"] == id.as_str() {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the connection ended before a session.resync"),
        }
    }
    assert!(gw.stop().await.success());
}

/// Issue 10, defect 5: a message over the agent's hard limit (4 MiB by
/// default) and under the gateway's (16 MiB) gets `too_large` and close 1009
/// from the agent, relayed as such: nothing about a restart, since there is
/// none, and a client that obeyed one would send it again forever.
#[tokio::test]
async fn a_message_over_the_agents_limit_is_too_large_not_a_crash() {
    let gw = Gateway::start().await;
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "big").await;
    let mut ws = gw.ws(&c, "big").await.unwrap();
    next_json(&mut ws, "hello").await;
    let (_, _, pid) = agent_direct(&gw).await;
    let big = format!(
        r#"{{"type":"terminal.write","id":"x","data":"{}"}}"#,
        "a".repeat(5 << 20)
    );
    // The agent may close before it has all of it; what matters is what
    // comes back.
    let _ = ws.send(Message::Text(big.into())).await;
    let mut codes = Vec::new();
    let mut close = None;
    while let Some(m) = next(&mut ws).await {
        match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    codes.push(v["code"].as_str().unwrap_or_default().to_owned());
                }
            }
            Message::Close(f) => close = f,
            _ => {}
        }
    }
    assert_eq!(codes, ["too_large"], "error replies");
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size, "{close:?}");

    // The agent lives on and serves the next connection.
    let mut again = gw.ws(&c, "big").await.unwrap();
    next_json(&mut again, "hello").await;
    assert_eq!(gw.agents_started().len(), 1, "no restart");
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "agent {pid} alive"
    );
    let metrics = gw.req("GET", "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("dispatch_gateway_agent_restarts_total 0"),
        "{metrics}"
    );
}
