//! Benchmark of the agent against the raw PTY, in one run (see
//! `scripts/bench-agent.sh`). Prints figures and ratios:
//! - throughput: `cat` of a big file read from a PTY by a minimal reader, vs the
//!   same through the agent's WebSocket to this client;
//! - keystroke echo latency, single bytes, p50/p99: the PTY's own echo vs the
//!   agent's, idle and while another session floods;
//! - idle RSS of the agent and the time from exec to a 200 from `/readyz`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dispatch_api::frame::{Frame, FrameKind, encode_header_into};
use futures_util::{SinkExt, StreamExt};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "bench-token-0123456789";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    agent_bin: PathBuf,
    size_mib: usize,
    rounds: usize,
    /// Run the agent under its holder (`--hold`): the path local mode takes.
    hold: bool,
}

fn args() -> Args {
    let mut a = Args {
        agent_bin: PathBuf::from("dispatch-agent"),
        size_mib: 256,
        rounds: 1000,
        hold: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        if v[i] == "--hold" {
            a.hold = true;
            i += 1;
            continue;
        }
        assert!(i + 1 < v.len(), "{} needs a value", v[i]);
        match v[i].as_str() {
            "--agent-bin" => a.agent_bin = PathBuf::from(&v[i + 1]),
            "--size-mib" => a.size_mib = v[i + 1].parse().expect("--size-mib N"),
            "--rounds" => a.rounds = v[i + 1].parse().expect("--rounds N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn make_file(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let line: Vec<u8> = (0..79)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .chain([b'\n'])
        .collect();
    let total = mib << 20;
    let mut n = 0;
    while n < total {
        f.write_all(&line).unwrap();
        n += line.len();
    }
    f.flush().unwrap();
}

fn pty_size() -> PtySize {
    PtySize {
        rows: 24,
        cols: 80,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// MB/s of `cat file` read from a PTY by a plain blocking reader.
fn pty_floor(file: &Path) -> (u64, Duration) {
    let pair = native_pty_system().openpty(pty_size()).unwrap();
    let mut cmd = CommandBuilder::new("cat");
    cmd.arg(file);
    let t0 = Instant::now();
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut r = pair.master.try_clone_reader().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    let dt = t0.elapsed();
    let _ = child.wait();
    (total, dt)
}

/// Round trips of one byte through the PTY's own echo (canonical mode, `cat` reading).
fn pty_echo(rounds: usize) -> Vec<Duration> {
    let pair = native_pty_system().openpty(pty_size()).unwrap();
    let mut child = pair
        .slave
        .spawn_command(CommandBuilder::new("cat"))
        .unwrap();
    drop(pair.slave);
    let mut r = pair.master.try_clone_reader().unwrap();
    let mut w = pair.master.take_writer().unwrap();
    let mut out = Vec::with_capacity(rounds);
    let mut b = [0u8; 16];
    for i in 0..rounds {
        let c = b'a' + (i % 26) as u8;
        let t = Instant::now();
        w.write_all(&[c]).unwrap();
        w.flush().unwrap();
        let n = r.read(&mut b).unwrap();
        out.push(t.elapsed());
        assert!(n >= 1 && b[0] == c);
    }
    let _ = child.kill();
    out
}

/// What one wake-up costs on this machine, the unit the echo figures are made
/// of: a byte's round trip between two threads over two pipes (each trip
/// wakes the other thread once and this one once), both threads on `cpus.0`
/// and `cpus.1`. A pause before each trip lets the other CPU go idle, as it is
/// between keystrokes. `None` when the threads cannot be placed there.
fn wake_round_trip(rounds: usize, cpus: (usize, usize)) -> Option<Vec<Duration>> {
    fn pin(cpu: usize) -> bool {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
        // sched_setaffinity get a pointer to it and its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    let (to_r, mut to_w) = std::io::pipe().ok()?;
    let (mut back_r, back_w) = std::io::pipe().ok()?;
    let echo = std::thread::spawn(move || {
        let (mut r, mut w) = (to_r, back_w);
        if !pin(cpus.1) {
            return false;
        }
        let mut b = [0u8; 1];
        while r.read_exact(&mut b).is_ok() {
            if w.write_all(&b).is_err() {
                break;
            }
        }
        true
    });
    let placed = std::thread::scope(|s| {
        s.spawn(|| {
            if !pin(cpus.0) {
                return None;
            }
            let mut out = Vec::with_capacity(rounds);
            let mut b = [0u8; 1];
            for _ in 0..rounds {
                std::thread::sleep(Duration::from_micros(200));
                let t = Instant::now();
                to_w.write_all(b"x").ok()?;
                back_r.read_exact(&mut b).ok()?;
                out.push(t.elapsed());
            }
            Some(out)
        })
        .join()
        .ok()
        .flatten()
    });
    drop(to_w);
    let echoed = echo.join().unwrap_or(false);
    placed.filter(|_| echoed)
}

/// `yes` in a PTY of its own, drained by a plain reader thread: the same
/// flood as the agent's, with nothing of the agent in its way.
struct PtyFlood {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reader: std::thread::JoinHandle<()>,
}

impl PtyFlood {
    fn start() -> Self {
        let pair = native_pty_system().openpty(pty_size()).unwrap();
        let mut cmd = CommandBuilder::new("yes");
        cmd.arg("flood flood flood flood flood flood flood flood flood");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut r = pair.master.try_clone_reader().unwrap();
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = bytes.clone();
        let reader = std::thread::spawn(move || {
            let _master = pair.master;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        PtyFlood {
            child,
            bytes,
            reader,
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
    }
}

struct Agent {
    child: Child,
    addr: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether agents are started under their holder (`--hold`).
static HOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn start_agent(bin: &Path, ws: &Path, extra: &[&str]) -> (Agent, Instant) {
    let t0 = Instant::now();
    let hold = HOLD.load(std::sync::atomic::Ordering::Relaxed);
    let mut child = Command::new(bin)
        .args(hold.then_some("--hold"))
        .arg("--workspace")
        .arg(ws)
        .args(extra)
        .env("DISPATCH_AGENT_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("DISPATCH_AGENT_LISTENING ")
        .unwrap()
        .to_owned();
    (Agent { child, addr }, t0)
}

async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
}

async fn connect(addr: &str) -> Ws {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .unwrap();
    ws
}

async fn next_json(ws: &mut Ws, ty: &str) -> Value {
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "error", "{v}");
        }
    }
}

async fn start(ws: &mut Ws, shell: &str) -> String {
    ws.send(Message::Text(
        json!({"type":"terminal.start","cols":80,"rows":24,"shell":shell})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let v = next_json(ws, "session.created").await;
    next_json(ws, "session.attached").await;
    v["id"].as_str().unwrap().to_owned()
}

fn input(id: &str, bytes: &[u8]) -> Message {
    let mut f = Vec::new();
    encode_header_into(FrameKind::Input, id, 0, &mut f);
    f.extend_from_slice(bytes);
    Message::Binary(f.into())
}

/// Output bytes of `cat file` through the agent, to the end of the session.
async fn agent_throughput(addr: &str, file: &Path) -> (u64, Duration, u32) {
    let mut ws = connect(addr).await;
    let id = start(&mut ws, "/bin/sh").await;
    let t0 = Instant::now();
    ws.send(input(
        &id,
        format!("exec cat {}\n", file.display()).as_bytes(),
    ))
    .await
    .unwrap();
    let mut total = 0u64;
    let mut resyncs = 0;
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) => {
                let f = Frame::decode(&b).unwrap();
                if f.kind == FrameKind::Output {
                    total += f.payload.len() as u64;
                }
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "session.resync" {
                    resyncs += 1;
                }
                if v["type"] == "session.ended" {
                    break;
                }
            }
            _ => {}
        }
    }
    (total, t0.elapsed(), resyncs)
}

/// Round trips of one byte: input frame out, the echoed output frame back.
async fn agent_echo(ws: &mut Ws, id: &str, rounds: usize) -> Vec<Duration> {
    agent_echo_counting(ws, id, rounds).await.0
}

/// As [`agent_echo`], also counting other sessions' output bytes seen.
async fn agent_echo_counting(ws: &mut Ws, id: &str, rounds: usize) -> (Vec<Duration>, u64) {
    let mut other = 0u64;
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let c = b'a' + (i % 26) as u8;
        let t = Instant::now();
        ws.send(input(id, &[c])).await.unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    let f = Frame::decode(&b).unwrap();
                    if f.id == id && f.kind == FrameKind::Output {
                        assert_eq!(f.payload[0], c);
                        break;
                    }
                    other += f.payload.len() as u64;
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
        out.push(t.elapsed());
    }
    (out, other)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The agent's RSS (KiB) when `pid` is the process the bench started: under
/// a holder, the holder's child that serves (its command line has
/// `--holder-fd`), not the holder.
fn rss_kib(pid: u32) -> u64 {
    let pid = if HOLD.load(std::sync::atomic::Ordering::Relaxed) {
        served_by(pid).unwrap_or(pid)
    } else {
        pid
    };
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The holder's child that runs the agent.
fn served_by(holder: u32) -> Option<u32> {
    let kids = std::fs::read_to_string(format!("/proc/{holder}/task/{holder}/children")).ok()?;
    kids.split_whitespace()
        .filter_map(|k| k.parse::<u32>().ok())
        .find(|k| {
            std::fs::read(format!("/proc/{k}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a.starts_with(b"--holder-fd")))
        })
}

/// WebSockets opened at once for the memory figures.
const CONNECTIONS: usize = 500;

/// The agent's RSS (KiB) idle, with `n` WebSockets open (each has had its
/// `hello`), and a moment after they all closed, on an agent of its own.
async fn rss_around_connections(bin: &Path, ws: &Path, n: usize) -> (u64, u64, u64) {
    let (agent, _) = start_agent(bin, ws, &["--max-connections", "1000"]);
    while http_status(&agent.addr, "/readyz").await != Some(200) {}
    let pid = agent.child.id();
    let before = rss_kib(pid);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(&agent.addr).await;
        next_json(&mut ws, "hello").await;
        conns.push(ws);
    }
    let open = rss_kib(pid);
    for mut ws in conns {
        let _ = ws.close(None).await;
        // Until the agent's side is closed too.
        while let Some(Ok(_)) = ws.next().await {}
    }
    // The agent gives back its memory after the last connection has gone:
    // a moment for it to notice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (before, open, rss_kib(pid))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.txt");
    make_file(&file, a.size_mib);
    HOLD.store(a.hold, std::sync::atomic::Ordering::Relaxed);
    println!(
        "dispatch-agent benchmark ({} MiB file, {} echo rounds{})",
        a.size_mib,
        a.rounds,
        if a.hold { ", under the holder" } else { "" }
    );

    // exec -> /readyz, median of 10, fresh workspace each time
    let mut ready = Vec::new();
    for i in 0..10 {
        let ws = tmp.path().join(format!("ready{i}"));
        let (agent, t0) = start_agent(&a.agent_bin, &ws, &[]);
        loop {
            if http_status(&agent.addr, "/readyz").await == Some(200) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        ready.push(t0.elapsed());
    }
    let ready_p50 = pct(&mut ready, 0.5);

    // A 16 MiB ring (default 2 MiB), so that a scheduling hiccup of the client
    // on a busy machine does not turn into a resync that skips bytes.
    let (agent, _) = start_agent(
        &a.agent_bin,
        &tmp.path().join("ws"),
        &["--ring-bytes", "16777216"],
    );
    // settle, then idle RSS with no session
    while http_status(&agent.addr, "/readyz").await != Some(200) {}
    let rss_idle = rss_kib(agent.child.id());
    // One idle shell session, on an agent of its own with default settings.
    let rss_one_session = {
        let (one, _) = start_agent(&a.agent_bin, &tmp.path().join("one"), &[]);
        let mut ws = connect(&one.addr).await;
        let _id = start(&mut ws, "/bin/sh").await;
        // the shell's prompt
        loop {
            if let Some(Ok(Message::Binary(_))) = ws.next().await {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss_kib(one.child.id())
    };

    let (rss_conns_before, rss_conns_open, rss_conns_closed) =
        rss_around_connections(&a.agent_bin, &tmp.path().join("conns"), CONNECTIONS).await;

    // throughput: alternate runs (the machine is shared), best of each
    let mut floor_runs = Vec::new();
    let mut agent_runs = Vec::new();
    let mut resyncs = 0;
    for _ in 0..2 {
        let (b, t) = pty_floor(&file);
        floor_runs.push(b as f64 / t.as_secs_f64() / 1e6);
        let (b, t, r) = agent_throughput(&agent.addr, &file).await;
        agent_runs.push(b as f64 / t.as_secs_f64() / 1e6);
        resyncs += r;
    }
    let floor_mbs = floor_runs.iter().cloned().fold(0.0, f64::max);
    let agent_mbs = agent_runs.iter().cloned().fold(0.0, f64::max);

    // echo latency
    let mut raw = pty_echo(a.rounds);
    // The PTY's own echo while another PTY floods: the floor under the same load.
    let flood = PtyFlood::start();
    std::thread::sleep(Duration::from_millis(300)); // let the flood get going
    let (before, t_raw_flood) = (flood.bytes(), Instant::now());
    let mut raw_flood = pty_echo(a.rounds);
    let raw_flood_mbs = (flood.bytes() - before) as f64 / t_raw_flood.elapsed().as_secs_f64() / 1e6;
    flood.stop();
    let mut ws = connect(&agent.addr).await;
    let id = start(&mut ws, "/bin/cat").await;
    let _ = agent_echo(&mut ws, &id, 50).await; // warm up
    let mut idle = agent_echo(&mut ws, &id, a.rounds).await;
    let rss_after = rss_kib(agent.child.id());

    // flood in another session, drained by another connection
    let mut fws = connect(&agent.addr).await;
    let fid = start(&mut fws, "/bin/sh").await;
    fws.send(input(
        &fid,
        b"exec yes 'flood flood flood flood flood flood flood flood flood'\n",
    ))
    .await
    .unwrap();
    let drained = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = drained.clone();
    let drain = tokio::spawn(async move {
        while let Some(Ok(m)) = fws.next().await {
            if let Message::Binary(b) = m {
                counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // let the flood get going
    let before = drained.load(std::sync::atomic::Ordering::Relaxed);
    let t_other = Instant::now();
    let mut flood_other = agent_echo(&mut ws, &id, a.rounds).await;
    let t_other = t_other.elapsed();
    let flood_other_bytes = drained.load(std::sync::atomic::Ordering::Relaxed) - before;
    drain.abort();
    // and the same flood attached on the echo's own connection
    ws.send(Message::Text(
        json!({"type":"session.attach","id":fid}).to_string().into(),
    ))
    .await
    .unwrap();
    // Wait until the flood's frames flow on this connection (after the
    // snapshot) before measuring.
    let mut flowing = 0u64;
    while flowing < 4 << 20 {
        if let Some(Ok(Message::Binary(b))) = ws.next().await {
            let f = Frame::decode(&b).unwrap();
            if f.kind == FrameKind::Output && f.id == fid {
                flowing += f.payload.len() as u64;
            }
        }
    }
    let t_same = Instant::now();
    let (mut flood_same, flood_same_bytes) = agent_echo_counting(&mut ws, &id, a.rounds).await;
    let t_same = t_same.elapsed();

    let wakes = [(0, 0), (0, 1)].map(|cpus| wake_round_trip(a.rounds, cpus));

    let (raw50, raw99) = (pct(&mut raw, 0.5), pct(&mut raw, 0.99));
    let (rf50, rf99) = (pct(&mut raw_flood, 0.5), pct(&mut raw_flood, 0.99));
    let (i50, i99) = (pct(&mut idle, 0.5), pct(&mut idle, 0.99));
    let (o50, o99) = (pct(&mut flood_other, 0.5), pct(&mut flood_other, 0.99));
    let (s50, s99) = (pct(&mut flood_same, 0.5), pct(&mut flood_same, 0.99));

    println!();
    println!("throughput (cat of {} MiB through a PTY)", a.size_mib);
    println!("  PTY floor, minimal reader   {floor_mbs:8.1} MB/s  (best of runs {floor_runs:.1?})");
    println!(
        "  agent WebSocket to client   {agent_mbs:8.1} MB/s  (best of runs {agent_runs:.1?}; {resyncs} resyncs)"
    );
    println!(
        "  ratio agent/floor           {:8.2}x   (target >= 0.8x)",
        agent_mbs / floor_mbs
    );
    println!("echo latency, {} single-byte round trips", a.rounds);
    println!(
        "  PTY own echo                p50 {:7.1} us  p99 {:7.1} us",
        us(raw50),
        us(raw99)
    );
    println!(
        "  PTY own echo, flood in      p50 {:7.1} us  p99 {:7.1} us  (another PTY's flood read meanwhile: {raw_flood_mbs:.1} MB/s)",
        us(rf50),
        us(rf99)
    );
    println!(
        "  agent, idle                 p50 {:7.1} us  p99 {:7.1} us",
        us(i50),
        us(i99)
    );
    println!(
        "  agent, flood on other conn  p50 {:7.1} us  p99 {:7.1} us  (flood delivered meanwhile: {:.1} MB/s)",
        us(o50),
        us(o99),
        flood_other_bytes as f64 / t_other.as_secs_f64() / 1e6
    );
    println!(
        "  agent, flood on same conn   p50 {:7.1} us  p99 {:7.1} us  (flood delivered meanwhile: {:.1} MB/s)",
        us(s50),
        us(s99),
        flood_same_bytes as f64 / t_same.as_secs_f64() / 1e6
    );
    println!(
        "  idle p50 - PTY p50          {:7.1} us   (target <= 200 us)",
        us(i50) - us(raw50)
    );
    println!(
        "  idle p99                    {:7.1} us   (target <= 2000 us)",
        us(i99)
    );
    println!(
        "  flood p99 / idle p99        {:7.2}x (other conn), {:.2}x (same conn)   (target <= 2x)",
        us(o99) / us(i99),
        us(s99) / us(i99)
    );
    println!(
        "  agent over the PTY, idle    p50 {:+7.1} us  p99 {:+7.1} us",
        us(i50) - us(raw50),
        us(i99) - us(raw99)
    );
    println!(
        "  agent over the PTY, flood   p50 {:+7.1} us  p99 {:+7.1} us   (each against the PTY's echo under its own flood; other conn)",
        us(o50) - us(rf50),
        us(o99) - us(rf99)
    );
    println!("this machine's wake-ups (what the figures above are made of)");
    for (what, w) in ["one CPU  ", "two CPUs "].iter().zip(wakes) {
        match w {
            Some(mut w) => println!(
                "  thread round trip, {what}  p50 {:7.1} us  p99 {:7.1} us   (two wake-ups over pipes, the other CPU idle before each)",
                us(pct(&mut w, 0.5)),
                us(pct(&mut w, 0.99))
            ),
            None => println!(
                "  thread round trip, {what}  (not measured: the threads cannot be placed on those CPUs)"
            ),
        }
    }
    println!("memory and start");
    println!(
        "  idle RSS, no session        {:7.1} MiB  (target <= 15 MiB)",
        rss_idle as f64 / 1024.0
    );
    println!(
        "  RSS with one idle session   {:7.1} MiB",
        rss_one_session as f64 / 1024.0
    );
    println!(
        "  RSS after the 256 MiB runs   {:7.1} MiB  (16 MiB ring; one idle session left)",
        rss_after as f64 / 1024.0
    );
    println!(
        "  RSS, {CONNECTIONS} WebSockets         {:7.1} MiB before, {:.1} MiB open, {:.1} MiB after they closed",
        rss_conns_before as f64 / 1024.0,
        rss_conns_open as f64 / 1024.0,
        rss_conns_closed as f64 / 1024.0
    );
    println!(
        "  exec to /readyz 200, p50    {:7.1} ms   (target <= 50 ms; of 10 starts on fresh workspaces)",
        ready_p50.as_secs_f64() * 1e3
    );
}
