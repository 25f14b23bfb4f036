//! A test client for the real `dispatch-agent` binary: starts it on a temp
//! workspace, speaks the WebSocket protocol with tokio-tungstenite, and keeps
//! each session's output stream, checking that frame offsets are contiguous.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dispatch_api::frame::{Frame, FrameKind};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const TOKEN: &str = "test-token-0123456789";
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub workspace: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Agent {
    /// Starts the agent on a fresh temp workspace.
    pub fn start(args: &[&str]) -> Agent {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let mut a = Agent::start_in(&ws, args);
        a._tmp = Some(tmp);
        a
    }

    /// Starts the agent on `workspace` (kept by the caller).
    pub fn start_in(workspace: &Path, args: &[&str]) -> Agent {
        let (child, addr) = spawn_listening(workspace, args, "warn", Stdio::inherit());
        Agent {
            child,
            addr,
            workspace: workspace.to_owned(),
            _tmp: None,
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.addr, Some(TOKEN)).await.unwrap()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit, up to the deadline.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "agent did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `dispatch-agent --workspace <workspace> <args>` with the test token and
/// `RUST_LOG=<log>`, its stdout piped (the LISTENING line comes there).
pub fn agent_command(workspace: &Path, args: &[&str], log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"));
    cmd.arg("--workspace")
        .arg(workspace)
        .args(args)
        .env("DISPATCH_AGENT_TOKEN", TOKEN)
        .env("RUST_LOG", log)
        .stdout(Stdio::piped());
    cmd
}

/// The address an agent just spawned by [`agent_command`] listens on (its
/// first line); panics on any other first line.
pub fn listening_address(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("DISPATCH_AGENT_LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

/// Spawns the agent (see [`agent_command`]); returns it once it printed the
/// address it listens on, with that address.
pub fn spawn_listening(
    workspace: &Path,
    args: &[&str],
    log: &str,
    stderr: Stdio,
) -> (Child, String) {
    let mut child = agent_command(workspace, args, log)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let addr = listening_address(&mut child);
    (child, addr)
}

/// Runs the agent on `workspace` expecting it to refuse to start: returns
/// what it said on stderr. Panics if it starts listening instead.
pub fn start_refused(workspace: &Path, args: &[&str]) -> String {
    let mut child = agent_command(workspace, args, "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        panic!("the agent started on {}: {line}", workspace.display());
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the agent exited with success");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds or the deadline passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, token, "").await
}

/// A minimal HTTP/1.1 request with a JSON body (may be empty): (status, body).
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    // chunked bodies: good enough for JSON tests to strip chunk sizes
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[derive(Default, Debug)]
pub struct Stream {
    /// Offset of `bytes[0]`.
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Offset the next output frame must have.
    pub next: Option<u64>,
    pub snapshots: Vec<(u64, Vec<u8>)>,
    pub resyncs: u32,
    /// Earlier output read with `session.read`: (offset, bytes).
    pub ranges: Vec<(u64, Vec<u8>)>,
}

impl Stream {
    pub fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub json: VecDeque<Value>,
    pub streams: HashMap<String, Stream>,
    /// WebSocket pings received (tungstenite answers each as it reads on).
    pub pings: u32,
}

impl Client {
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        let mut c = Client {
            ws,
            json: VecDeque::new(),
            streams: HashMap::new(),
            pings: 0,
        };
        let hello = c.wait_json(|v| v["type"] == "hello").await;
        assert_eq!(hello["protocol"], 1);
        Ok(c)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: String) {
        self.ws.send(Message::Text(t.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::Binary(b.into())).await.unwrap();
    }

    /// Reads one message and files it; panics after the deadline.
    pub async fn pump(&mut self) {
        let msg = tokio::time::timeout(DEADLINE, self.ws.next())
            .await
            .expect("no message from the agent before the deadline")
            .expect("connection closed")
            .expect("websocket error");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                match v["type"].as_str() {
                    Some("session.attached") => {
                        let off = v["offset"].as_u64().unwrap();
                        let s = self.streams.entry(id).or_default();
                        *s = Stream {
                            base: off,
                            next: Some(off),
                            ..Stream::default()
                        };
                    }
                    Some("session.resync") => {
                        let s = self.streams.entry(id).or_default();
                        s.resyncs += 1;
                        s.next = None;
                    }
                    _ => {}
                }
                self.json.push_back(v);
            }
            Message::Binary(b) => {
                let f = Frame::decode(&b).expect("agent sent a bad frame");
                let s = self.streams.entry(f.id.to_owned()).or_default();
                match f.kind {
                    FrameKind::Output => {
                        if let Some(n) = s.next {
                            assert_eq!(f.offset, n, "gap or duplicate in session {}", f.id);
                        } else {
                            s.base = f.offset;
                            s.bytes.clear();
                        }
                        s.bytes.extend_from_slice(f.payload);
                        s.next = Some(f.offset + f.payload.len() as u64);
                    }
                    FrameKind::Snapshot => {
                        s.snapshots.push((f.offset, f.payload.to_vec()));
                        s.base = f.offset;
                        s.bytes.clear();
                        s.next = Some(f.offset);
                    }
                    FrameKind::Range => s.ranges.push((f.offset, f.payload.to_vec())),
                    FrameKind::Input => panic!("agent sent an input frame"),
                }
            }
            Message::Close(_) => panic!("agent closed the connection"),
            Message::Ping(_) => self.pings += 1,
            _ => {}
        }
    }

    /// The first JSON message (queued or arriving) matching `pred`, removed
    /// from the queue.
    pub async fn wait_json(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            if let Some(i) = self.json.iter().position(&pred) {
                return self.json.remove(i).unwrap();
            }
            self.pump().await;
        }
    }

    /// The JSON messages up to and including the first of type `t`; panics
    /// on a close.
    pub async fn collect_until_type(&mut self, t: &str) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no message from the agent before the deadline")
                .expect("connection closed")
                .expect("websocket error");
            match msg {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap();
                    let done = v["type"] == t;
                    got.push(v);
                    if done {
                        return got;
                    }
                }
                Message::Close(f) => panic!("the agent closed the connection: {f:?}"),
                _ => {}
            }
        }
    }

    /// Reads and drops everything up to the first JSON message of type `t`,
    /// which it returns: for tests that send thousands of requests.
    pub async fn discard_until_type(&mut self, t: &str) -> Value {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no message from the agent before the deadline")
                .expect("connection closed")
                .expect("websocket error");
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["type"] == t {
                    return v;
                }
            }
        }
    }

    /// Closes the connection and waits for the agent's answering close.
    pub async fn close(&mut self) {
        self.ws.close(None).await.unwrap();
        while let Some(Ok(m)) = self.ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    }

    /// The raw WebSocket, for tests that expect what `Client` panics on.
    pub async fn raw(
        addr: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    pub async fn wait_type(&mut self, t: &str) -> Value {
        self.wait_json(|v| v["type"] == t).await
    }

    pub async fn wait_error(&mut self, code: &str) -> Value {
        let v = self.wait_type("error").await;
        assert_eq!(v["code"], code, "{v}");
        v
    }

    /// Waits until the session's output (or, after a resync, its latest
    /// snapshot) contains `needle`; returns the output as text. Only new bytes
    /// are searched each time, so long streams stay cheap.
    pub async fn wait_output(&mut self, id: &str, needle: &str) -> String {
        let n = needle.len();
        let mut searched: Option<(u64, usize)> = None; // (stream base, bytes searched)
        loop {
            if let Some(s) = self.streams.get(id) {
                let from = match searched {
                    Some((base, done)) if base == s.base => done.saturating_sub(n),
                    _ => 0,
                };
                let found = s.bytes.len() >= from + n
                    && s.bytes[from..].windows(n).any(|w| w == needle.as_bytes());
                searched = Some((s.base, s.bytes.len()));
                // after a resync the text may be in the snapshot
                let in_snapshot = s.snapshots.last().is_some_and(|(off, snap)| {
                    *off == s.base && String::from_utf8_lossy(snap).contains(needle)
                });
                if found || in_snapshot {
                    return s.text();
                }
            }
            self.pump().await;
        }
    }

    /// Output in which the last `key` is followed by digits and a line end
    /// (so not the echo of the command that prints it).
    pub async fn wait_until_digits(&mut self, id: &str, mut out: String, key: &str) -> String {
        loop {
            if let Some(i) = out.rfind(key)
                && out[i + key.len()..].contains('\n')
                && number_after(&out, key).is_some()
            {
                return out;
            }
            self.pump().await;
            out = self.streams.get(id).map(|s| s.text()).unwrap_or_default();
        }
    }

    pub async fn wait_until(&mut self, mut cond: impl FnMut(&Client) -> bool) {
        while !cond(self) {
            self.pump().await;
        }
    }

    pub fn stream(&self, id: &str) -> &Stream {
        &self.streams[id]
    }

    /// Starts a terminal and returns its id (the starter is attached from 0).
    pub async fn start(&mut self, extra: Value) -> String {
        static REFS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let r = format!(
            "start-{}",
            REFS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut m = json!({"type": "terminal.start", "cols": 80, "rows": 24, "clientRef": r});
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        self.send(m).await;
        // Other clients' sessions are announced too: ours carries our ref.
        let v = self
            .wait_json(|v| {
                (v["type"] == "session.created" || v["type"] == "error")
                    && v["clientRef"] == r.as_str()
            })
            .await;
        assert_eq!(v["type"], "session.created", "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let a = self
            .wait_json(|v| v["type"] == "session.attached" && v["id"] == id.as_str())
            .await;
        assert_eq!(a["mode"], "replay");
        assert_eq!(a["offset"], 0);
        id
    }

    pub async fn write(&mut self, id: &str, data: &str) {
        self.send(json!({"type": "terminal.write", "id": id, "data": data}))
            .await;
    }
}

pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                == Some("Z")
        }
        Err(_) => true,
    }
}

/// The value after `key=` in `text`, up to the next non-digit.
pub fn number_after(text: &str, key: &str) -> Option<i32> {
    let i = text.rfind(key)? + key.len();
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
