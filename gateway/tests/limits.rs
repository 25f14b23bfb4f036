//! Issue 10, defect 4: what an outsider's idle or half-sent connections
//! may hold. Timeouts close them, each address has a cap, and the gateway
//! raises its own open-files limit so that many sockets do not starve
//! `/healthz`. Sockets come from several loopback addresses (127.0.0.0/8 is
//! all loopback) to stand for several clients.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use futures_util::SinkExt;

/// A connection to the gateway from loopback address 127.0.0.`last`.
async fn connect_from(gw: &Gateway, last: u8) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
        0,
    ))
    .unwrap();
    sock.connect(gw.host.parse().unwrap()).await.unwrap()
}

/// Everything the gateway sends until it closes the connection.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let r = tokio::time::timeout(STEP, s.read_to_end(&mut got))
        .await
        .expect("the gateway closed the connection in time");
    if let Err(e) = r {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn healthz_answers_within_100ms_while_2000_idle_sockets_are_open() {
    let hard = raise_nofile();
    assert!(
        hard > 2_200,
        "this test needs a hard open-files limit above 2200, not {hard}"
    );
    // Started under the usual soft limit of 1024: the gateway raises it.
    let gw = Gateway::start_with(Opts {
        nofile_soft: Some(1024),
        extra: vec!["--header-read-timeout".into(), "600".into()],
        ..Opts::default()
    })
    .await;
    let mut idle = Vec::with_capacity(2000);
    for i in 0..2000u32 {
        idle.push(connect_from(&gw, 2 + (i % 8) as u8).await);
    }
    // Connections are accepted in order, so this one comes after them all.
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = gw.req("GET", "/healthz", &[], "").await;
        took.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    took.sort();
    eprintln!("/healthz with 2000 idle sockets open took {took:?}");
    assert!(
        took[2] < Duration::from_millis(100),
        "/healthz took {took:?}"
    );
    let fds = open_fds(gw.child.id().unwrap());
    assert!(
        fds > 2000,
        "the gateway holds the idle sockets: {fds} descriptors"
    );
    drop(idle);
}

#[tokio::test]
async fn silent_and_half_sent_requests_are_closed_after_the_timeouts() {
    let gw = Gateway::start_with(Opts {
        extra: ["--header-read-timeout", "1", "--body-read-timeout", "1"]
            .map(String::from)
            .to_vec(),
        ..Opts::default()
    })
    .await;
    let t = Instant::now();
    let mut silent = connect_from(&gw, 2).await;
    assert_eq!(read_until_closed(&mut silent).await, "");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed by the timeout"
    );

    let mut half_head = connect_from(&gw, 2).await;
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut half_head).await;

    let mut half_body = connect_from(&gw, 2).await;
    half_body
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"key\":",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut half_body).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A kept-alive connection is answered, then closed once idle.
    let mut kept = connect_from(&gw, 2).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // An upgraded WebSocket is not an idle request: it outlives them.
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "idle").await;
    let mut ws = gw.ws(&c, "idle").await.unwrap();
    next_json(&mut ws, "hello").await;
    // Deliberately longer than both timeouts (nothing to wait for).
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(Message::Ping(b"still".to_vec().into()))
        .await
        .unwrap();
    loop {
        match next(&mut ws).await {
            Some(Message::Pong(p)) => break assert_eq!(&p[..], b"still"),
            Some(_) => {}
            None => panic!("the WebSocket was closed"),
        }
    }
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_websockets_included() {
    let gw = Gateway::start_with(Opts {
        // Long enough that the held sockets are not closed as idle meanwhile.
        extra: [
            "--max-connections-per-address",
            "8",
            "--header-read-timeout",
            "600",
        ]
        .map(String::from)
        .to_vec(),
        ..Opts::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from(&gw, 2).await);
    }
    let mut over = connect_from(&gw, 2).await;
    let answer = read_until_closed(&mut over).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many open connections"), "{answer}");
    // Other addresses are not affected.
    assert_eq!(gw.req("GET", "/healthz", &[], "").await.status, 200);
    let metrics = gw.req("GET", "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("dispatch_gateway_connections_refused_total 1"),
        "{metrics}"
    );

    // Upgraded WebSockets keep their place.
    let c = gw.login(KEY).await;
    gw.create_workspace(&c, "cap").await;
    let origin = gw.origin();
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let tcp = connect_from(&gw, 3).await;
        let mut req = format!("ws://{}/api/workspaces/cap/ws", gw.host)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", c.parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        loop {
            if let Message::Text(t) =
                tokio::time::timeout(STEP, futures_util::StreamExt::next(&mut ws))
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap()
                && t.contains("\"hello\"")
            {
                break;
            }
        }
        sockets.push(ws);
    }
    let mut over = connect_from(&gw, 3).await;
    let answer = read_until_closed(&mut over).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);
}
