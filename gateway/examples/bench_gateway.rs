//! Benchmark: the path through the gateway against the path straight to the
//! agent, in one run, printing ratios. Run it with `scripts/bench-gateway.sh`
//! (release builds, raised `ulimit -n`). Figures:
//! - output throughput of live terminal output (`cat` of a big file in a
//!   session, as a terminal produces it), through / direct, as the median of
//!   back-to-back pairs of runs, with the CPU the agent and gateway used;
//! - output throughput of a replay of finished output from the agent's ring and
//!   disk log (in the page cache; far above what a terminal produces: an upper
//!   bound on the proxy's cost);
//! - echo latency p50 (one byte in, its echo out), through - direct;
//! - gateway RSS per idle proxied WebSocket with N open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use dispatch_api::{Frame, FrameKind, SessionId};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const KEY: &str = "bench-key-0123456789abcdef";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Option<String>) {
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tx
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), cookie)
}

async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Ws {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap();
    ws
}

async fn next_json(ws: &mut Ws, ty: &str) -> serde_json::Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == ty {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended waiting for {ty}: {other:?}"),
        }
    }
}

async fn start_shell(ws: &mut Ws) -> SessionId {
    // session.created is also announced for other connections' sessions:
    // ours carries our ref.
    let r = format!(
        "bench-{}",
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let m = serde_json::json!({"type":"terminal.start","shell":"/bin/sh","cols":200,"rows":50,"clientRef":r});
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    loop {
        let v = next_json(ws, "session.created").await;
        if v["clientRef"] == r.as_str() {
            return SessionId::new(v["id"].as_str().unwrap()).unwrap();
        }
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn input(id: &SessionId, data: &[u8]) -> Message {
    Message::Binary(Frame::new(FrameKind::Input, id, 0, data).encode().into())
}

/// Reads output frames of `id` until `needle` is at the end of what was read;
/// returns the bytes counted.
async fn read_until(ws: &mut Ws, id: &SessionId, needle: &[u8]) -> usize {
    let mut tail: Vec<u8> = Vec::new();
    let mut n = 0;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(&b).unwrap();
                if std::env::var_os("BENCH_DEBUG").is_some() {
                    eprintln!(
                        "frame {:?} {} {} {:?}",
                        f.kind,
                        f.id,
                        f.offset,
                        String::from_utf8_lossy(&f.payload[..f.payload.len().min(80)])
                    );
                }
                if f.id == id.as_str() && f.kind == FrameKind::Output {
                    n += f.payload.len();
                    tail.extend_from_slice(f.payload);
                    if tail.windows(needle.len()).any(|w| w == needle) {
                        return n;
                    }
                    let keep = tail.len().saturating_sub(needle.len());
                    tail.drain(..keep);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
}

/// Fills a session with `bytes` of output (not attached meanwhile, so the
/// agent never has to skip ahead for us) and returns its id and final offset.
async fn make_output(ws: &mut Ws, bytes: usize) -> (SessionId, u64) {
    let id = start_shell(ws).await;
    let detach = serde_json::json!({"type":"session.detach","id":id.as_str()});
    ws.send(Message::Text(detach.to_string().into()))
        .await
        .unwrap();
    let cmd = format!(
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {bytes}; exit\n"
    );
    ws.send(input(&id, cmd.as_bytes())).await.unwrap();
    // Poll the session list until the shell has exited (poll with a deadline).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = serde_json::json!({"type":"session.list"});
        ws.send(Message::Text(list.to_string().into()))
            .await
            .unwrap();
        let v = next_json(ws, "session.list").await;
        let s = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            .cloned()
            .unwrap();
        if s["ended"].is_i64() {
            let end = s["offset"].as_u64().unwrap();
            assert!(end >= bytes as u64, "{s}");
            assert_eq!(s["oldestOffset"].as_u64(), Some(0), "all output kept: {s}");
            return (id, end);
        }
        assert!(Instant::now() < deadline, "output took too long");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replays a finished session's whole output; bytes/s as the client sees it.
async fn replay_rate(ws: &mut Ws, id: &SessionId, end: u64) -> f64 {
    let t = Instant::now();
    let m = serde_json::json!({"type":"session.attach","id":id.as_str(),"since":0});
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    let mut got = 0u64;
    while got < end {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(&b).unwrap();
                if f.id == id.as_str() && f.kind == FrameKind::Output {
                    got = got.max(f.offset + f.payload.len() as u64);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    let rate = end as f64 / t.elapsed().as_secs_f64();
    let m = serde_json::json!({"type":"session.detach","id":id.as_str()});
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    rate
}

/// Writes a file of `bytes` in 80-column lines, like a log a terminal shows.
fn make_file(path: &Path, bytes: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let line: Vec<u8> = (0..79)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .chain([b'\n'])
        .collect();
    let mut n = 0;
    while n < bytes {
        f.write_all(&line).unwrap();
        n += line.len();
    }
    f.flush().unwrap();
}

/// Live terminal output: `cat` of `file` in a fresh session on a fresh
/// connection, received to the session's end. Returns bytes/s (output bytes
/// received over the time from the command to `session.ended`) and the number
/// of resyncs (the agent skipped ahead because this client fell behind).
async fn live_rate(ws: &mut Ws, file: &Path) -> (f64, u32) {
    let id = start_shell(ws).await;
    let t = Instant::now();
    ws.send(input(
        &id,
        format!("exec cat {}\n", file.display()).as_bytes(),
    ))
    .await
    .unwrap();
    let (mut got, mut resyncs) = (0u64, 0);
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let f = Frame::decode(&b).unwrap();
                if f.id == id.as_str() && f.kind == FrameKind::Output {
                    got += f.payload.len() as u64;
                }
            }
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id.as_str() {
                    match v["type"].as_str() {
                        Some("session.resync") => resyncs += 1,
                        Some("session.ended") => break,
                        _ => {}
                    }
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    (got as f64 / t.elapsed().as_secs_f64(), resyncs)
}

/// Echo round trips through `cat` in a raw terminal; sorted latencies.
async fn echo_latencies(ws: &mut Ws, id: &SessionId, n: usize) -> Vec<Duration> {
    ws.send(input(id, b"stty raw -echo; echo RAW\"\"-READY; cat\n"))
        .await
        .unwrap();
    read_until(ws, id, b"RAW-READY").await;
    eprintln!("bench: raw terminal ready");
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let c = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        ws.send(input(id, &c)).await.unwrap();
        read_until(ws, id, &c).await;
        if i >= 50 {
            out.push(t.elapsed());
        }
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU seconds (user + system) a process has used; Linux reports them in
/// USER_HZ ticks, which are 1/100 s on every architecture's ABI.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The median of via/direct over rounds run back to back: each pair shares
/// the machine's conditions of the moment, so a shared machine's swings
/// (which move single runs by +-15% here) cancel out, where a best-of-N
/// ratio follows whichever side had the luckiest run.
fn paired_median_ratio(via: &[f64], direct: &[f64]) -> f64 {
    let mut r: Vec<f64> = via.iter().zip(direct).map(|(v, d)| v / d).collect();
    r.sort_by(f64::total_cmp);
    match r.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => r[n / 2],
        n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() {
    let bin_dir = PathBuf::from(std::env::var("BENCH_BIN_DIR").expect("BENCH_BIN_DIR"));
    let tp_bytes = env_num("BENCH_THROUGHPUT_BYTES", 128 << 20);
    let rounds = env_num("BENCH_ROUNDS", 7);
    let live_bytes = env_num("BENCH_LIVE_BYTES", 64 << 20);
    let live_rounds = env_num("BENCH_LIVE_ROUNDS", 16);
    let echoes = env_num("BENCH_ECHOES", 2000);
    let conns = env_num("BENCH_CONNECTIONS", 1000);

    let data = tempfile::tempdir().unwrap();
    let mut gw = tokio::process::Command::new(bin_dir.join("dispatch-gateway"))
        .args(["--listen", "127.0.0.1:0", "--agent-bin"])
        .arg(bin_dir.join("dispatch-agent"))
        .arg("--data-dir")
        .arg(data.path())
        // BENCH_CONNECTIONS sockets from one address: not what the cap is for.
        .args(["--max-connections-per-address", "0"])
        .env("DISPATCH_KEY", KEY)
        // The agents inherit it: keep all of the replayed output on disk
        // (the default keeps 64 MiB).
        .env(
            "DISPATCH_RETENTION_BYTES",
            (2 * tp_bytes).max(64 << 20).to_string(),
        )
        // The agents inherit it too: BENCH_CONNECTIONS idle connections
        // to one agent (its default serves 64).
        .env(
            "DISPATCH_MAX_CONNECTIONS",
            (conns + 16).min(100_000).to_string(),
        )
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or("warn,dispatch_gateway::backend=info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let gw_pid = gw.id().unwrap();
    let mut out = BufReader::new(gw.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(gw.stderr.take().unwrap()).lines();
    let host = loop {
        let l = out.next_line().await.unwrap().unwrap();
        if let Some(b) = l.strip_prefix("DISPATCH_GATEWAY_LISTENING http://") {
            break b.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    let json = [("content-type", "application/json")];
    let (s, body, cookie) = http(
        &host,
        "POST",
        "/api/login",
        &json,
        &format!(r#"{{"key":"{KEY}"}}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let cookie = cookie.unwrap();
    let origin = format!("http://{host}");
    let auth = [
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("content-type", "application/json"),
    ];
    let (s, body, _) = http(
        &host,
        "POST",
        "/api/workspaces",
        &auth,
        r#"{"name":"bench"}"#,
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let gw_url = format!("ws://{host}/api/workspaces/bench/ws");
    let gw_headers = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
    let mut via = ws_connect(&gw_url, &gw_headers).await;
    next_json(&mut via, "hello").await;

    // The agent's address from the gateway's log, its token from /proc.
    let (agent_url, agent_pid) = loop {
        let l = err.next_line().await.unwrap().unwrap();
        if l.contains("agent running") {
            let url = l
                .split("url=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            let pid: u32 = l
                .split("pid=Some(")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            break (url, pid);
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(l)) = err.next_line().await {
            eprintln!("[gateway] {l}");
        }
    });
    let environ = std::fs::read(format!("/proc/{agent_pid}/environ")).unwrap();
    let token = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("DISPATCH_AGENT_TOKEN="))
        .unwrap()
        .to_owned();
    let direct_url = agent_url.replacen("http://", "ws://", 1) + "/ws";
    let bearer = format!("Bearer {token}");
    let mut direct = ws_connect(&direct_url, &[("authorization", bearer.as_str())]).await;
    next_json(&mut direct, "hello").await;

    // Live output throughput: `cat` of a file in a terminal, alternating
    // direct then via the gateway, in pairs (the machine is shared).
    let big = data.path().join("big.txt");
    make_file(&big, live_bytes);
    let (mut live_v, mut live_d, mut live_v_resyncs, mut live_d_resyncs) =
        (Vec::new(), Vec::new(), 0, 0);
    // CPU seconds over all live rounds: [agent direct, agent via, gateway via].
    let mut live_cpu = [0.0f64; 3];
    for r in 0..live_rounds {
        eprintln!("bench: live output round {r}");
        let mut d = ws_connect(&direct_url, &[("authorization", bearer.as_str())]).await;
        next_json(&mut d, "hello").await;
        let agent0 = cpu_secs(agent_pid);
        let (rate, rs) = live_rate(&mut d, &big).await;
        live_cpu[0] += cpu_secs(agent_pid) - agent0;
        live_d.push(rate);
        live_d_resyncs += rs;
        let mut v = ws_connect(&gw_url, &gw_headers).await;
        next_json(&mut v, "hello").await;
        let (agent0, gw0) = (cpu_secs(agent_pid), cpu_secs(gw_pid));
        let (rate, rs) = live_rate(&mut v, &big).await;
        live_cpu[1] += cpu_secs(agent_pid) - agent0;
        live_cpu[2] += cpu_secs(gw_pid) - gw0;
        live_v.push(rate);
        live_v_resyncs += rs;
    }

    // Replay throughput: the same finished output replayed from the agent's
    // log on each path, in back-to-back pairs.
    eprintln!("bench: making {} MiB of output", tp_bytes >> 20);
    let (out_id, out_end) = make_output(&mut direct, tp_bytes).await;
    let (mut tv, mut td) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        eprintln!("bench: replay round {r}");
        let mut d = ws_connect(&direct_url, &[("authorization", bearer.as_str())]).await;
        next_json(&mut d, "hello").await;
        td.push(replay_rate(&mut d, &out_id, out_end).await);
        let mut v = ws_connect(&gw_url, &gw_headers).await;
        next_json(&mut v, "hello").await;
        tv.push(replay_rate(&mut v, &out_id, out_end).await);
    }
    eprintln!("bench: echo latency");

    // Echo latency in fresh raw terminals.
    let via_echo_id = start_shell(&mut via).await;
    let direct_echo_id = start_shell(&mut direct).await;
    let lv = echo_latencies(&mut via, &via_echo_id, echoes).await;
    let ld = echo_latencies(&mut direct, &direct_echo_id, echoes).await;

    eprintln!("bench: {conns} idle connections");
    // Idle connections: RSS growth of the gateway per proxied WebSocket.
    let before = rss_kib(gw_pid);
    let mut idle = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut ws = ws_connect(&gw_url, &gw_headers).await;
        next_json(&mut ws, "hello").await;
        idle.push(ws);
    }
    let after = rss_kib(gw_pid);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / conns as f64;

    let mib = |b: f64| b / (1024.0 * 1024.0);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("dispatch gateway benchmark (through the gateway vs straight to the agent)");
    let mbs = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.1}", r / 1e6))
            .collect::<Vec<_>>()
    };
    println!(
        "output throughput, live terminal (cat of {} MiB in a session, {live_rounds} alternating pairs of runs): ratio {:.3} (median of the pairs' via/direct; target >= 0.95); best runs direct {:.1} MB/s, via gateway {:.1} MB/s, ratio {:.3}",
        live_bytes >> 20,
        paired_median_ratio(&live_v, &live_d),
        best(&live_d) / 1e6,
        best(&live_v) / 1e6,
        best(&live_v) / best(&live_d)
    );
    println!(
        "  runs MB/s: direct {:?}, via {:?}; resyncs direct {live_d_resyncs}, via {live_v_resyncs}",
        mbs(&live_d),
        mbs(&live_v)
    );
    let per_round = |cpu: f64| cpu / live_rounds.max(1) as f64;
    println!(
        "  CPU per round: agent direct {:.2} s, agent via {:.2} s, gateway {:.2} s ({:.1} ms per 100 MB proxied)",
        per_round(live_cpu[0]),
        per_round(live_cpu[1]),
        per_round(live_cpu[2]),
        per_round(live_cpu[2]) * 1e3 * 1e8 / live_bytes as f64
    );
    println!(
        "output throughput, replay of finished output from the agent's log ({} MiB, not a terminal's rate; {rounds} alternating pairs of runs): ratio {:.3} (median of the pairs); best runs direct {:.1} MiB/s, via gateway {:.1} MiB/s, ratio {:.3}",
        out_end >> 20,
        paired_median_ratio(&tv, &td),
        mib(best(&td)),
        mib(best(&tv)),
        best(&tv) / best(&td)
    );
    println!(
        "  runs MiB/s: direct {:?}, via {:?}",
        td.iter()
            .map(|r| format!("{:.1}", mib(*r)))
            .collect::<Vec<_>>(),
        tv.iter()
            .map(|r| format!("{:.1}", mib(*r)))
            .collect::<Vec<_>>()
    );
    let (pd, pv) = (pct(&ld, 0.5), pct(&lv, 0.5));
    println!(
        "echo latency ({echoes} round trips): p50 direct {:.0} us, via gateway {:.0} us, added {:.0} us (target <= 100); p99 direct {:.0} us, via {:.0} us",
        us(pd),
        us(pv),
        us(pv) - us(pd),
        us(pct(&ld, 0.99)),
        us(pct(&lv, 0.99))
    );
    println!(
        "idle proxied websockets: {conns} open, gateway RSS {before} KiB -> {after} KiB, {:.1} KiB per connection (target <= 32)",
        per_conn / 1024.0
    );
    drop(idle);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), gw.wait()).await;
}
