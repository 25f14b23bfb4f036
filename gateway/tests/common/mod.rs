//! Test harness: the real `dispatch-gateway` binary with the real
//! `dispatch-agent` beside it, a tiny HTTP/1.1 client and WebSocket helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const KEY: &str = "test-key-0123456789abcdef";
pub const ALICE_KEY: &str = "alice-key-0123456789abcdef";
pub const BOB_KEY: &str = "bob-key-0123456789abcdef";
pub const STEP: Duration = Duration::from_secs(20);

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The agent binary cargo built next to the gateway.
pub fn agent_bin() -> PathBuf {
    let gw = PathBuf::from(env!("CARGO_BIN_EXE_dispatch-gateway"));
    let agent = gw.with_file_name("dispatch-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        agent.display()
    );
    agent
}

pub struct Gateway {
    pub child: Child,
    pub base: String,
    pub host: String,
    pub data: tempfile::TempDir,
    pub login_url: Option<String>,
    /// Lines the gateway wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// How many lines `stderr` holds, to wait on.
    stderr_seen: tokio::sync::watch::Receiver<usize>,
}

pub struct Opts {
    pub env_key: Option<&'static str>,
    pub users: bool,
    pub extra: Vec<String>,
    /// The soft limit on open files the gateway starts with.
    pub nofile_soft: Option<u64>,
    /// More environment for the gateway (and so its agents).
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            env_key: Some(KEY),
            users: false,
            extra: vec![],
            nofile_soft: None,
            env: vec![],
        }
    }
}

/// Raises this process's soft limit on open files to the hard limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Gateway {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-gateway"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--agent-bin")
            .arg(agent_bin())
            .args(&opts.extra)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .env_remove("DISPATCH_KEY")
            .env_remove("DISPATCH_KEY_FILE")
            .env_remove("DISPATCH_USERS_FILE")
            .env("RUST_LOG", "info,dispatch_gateway=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(k) = opts.env_key {
            cmd.env("DISPATCH_KEY", k);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        if let Some(soft) = opts.nofile_soft {
            // SAFETY: one async-signal-safe system call between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    use nix::sys::resource::{Resource, getrlimit, setrlimit};
                    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
                    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)?;
                    Ok(())
                });
            }
        }
        if opts.users {
            let users = data.path().join("users.json");
            std::fs::write(
                &users,
                format!(
                    r#"[{{"user":"alice","key":"{ALICE_KEY}"}},{{"user":"bob","key":"{BOB_KEY}"}}]"#
                ),
            )
            .unwrap();
            cmd.arg("--users-file").arg(users);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, stderr_seen) = tokio::sync::watch::channel(0);
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr_lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                eprintln!("[gateway] {line}");
                let n = {
                    let mut lines = sink.lock().unwrap();
                    lines.push(line);
                    lines.len()
                };
                seen_tx.send_replace(n);
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        let mut login_url = None;
        let deadline = Instant::now() + STEP;
        // A login URL is printed whenever the default user has a key.
        let expect_open = opts.env_key.is_some() || !opts.users;
        while base.is_none() || (expect_open && login_url.is_none()) {
            let line = tokio::time::timeout_at(deadline.into(), out.next_line())
                .await
                .expect("gateway announced itself in time")
                .unwrap()
                .expect("gateway exited before listening");
            if let Some(b) = line.strip_prefix("DISPATCH_GATEWAY_LISTENING ") {
                base = Some(b.to_owned());
            } else if let Some(u) = line.strip_prefix("Open ") {
                login_url = Some(u.to_owned());
            }
        }
        let base = base.unwrap();
        let host = base.trim_start_matches("http://").to_owned();
        Gateway {
            child,
            base,
            host,
            data,
            login_url,
            stderr: stderr_lines,
            stderr_seen,
        }
    }

    pub fn origin(&self) -> String {
        self.base.clone()
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("gateway exits after SIGTERM")
            .unwrap()
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        http(&self.host, method, path, headers, body).await
    }

    /// Logs in with `key`; the cookie header value `dispatch_session=...`.
    pub async fn login(&self, key: &str) -> String {
        let r = self
            .req(
                "POST",
                "/api/login",
                &[("content-type", "application/json")],
                &format!(r#"{{"key":"{key}"}}"#),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        cookie_of(&r)
    }

    /// An authenticated JSON request with a cookie.
    pub async fn api(&self, cookie: &str, method: &str, path: &str, body: &str) -> Resp {
        let origin = self.origin();
        self.req(
            method,
            path,
            &[
                ("cookie", cookie),
                ("content-type", "application/json"),
                ("origin", &origin),
            ],
            body,
        )
        .await
    }

    pub async fn create_workspace(&self, cookie: &str, name: &str) {
        let r = self
            .api(
                cookie,
                "POST",
                "/api/workspaces",
                &format!(r#"{{"name":"{name}"}}"#),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// Opens the workspace's WebSocket through the gateway.
    pub async fn ws(
        &self,
        cookie: &str,
        name: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let origin = self.origin();
        ws_connect(
            &format!("ws://{}/api/workspaces/{name}/ws", self.host),
            &[("cookie", cookie), ("origin", &origin)],
        )
        .await
    }

    /// Waits (on the stderr reader, at most a step) until the lines read so
    /// far satisfy `done`.
    async fn wait_lines(&self, done: impl Fn(&[String]) -> bool) {
        let mut seen = self.stderr_seen.clone();
        let _ =
            tokio::time::timeout(STEP, seen.wait_for(|_| done(&self.stderr.lock().unwrap()))).await;
    }

    /// Waits until a stderr line satisfies `f`; returns it.
    pub async fn wait_stderr(&self, f: impl Fn(&str) -> bool) -> String {
        let find = |lines: &[String]| lines.iter().rev().find(|l| f(l)).cloned();
        self.wait_lines(|lines| find(lines).is_some()).await;
        find(&self.stderr.lock().unwrap()).expect("no matching gateway log line")
    }

    /// Waits until the gateway has logged `n` agent starts (its stderr is read
    /// by another task, so a line can trail what the client already saw).
    pub async fn wait_agents_started(&self, n: usize) -> Vec<(String, u32)> {
        self.wait_lines(|lines| agent_starts(lines).len() >= n)
            .await;
        self.agents_started()
    }

    /// Every `agent running` log line read so far, in order: (url, pid).
    pub fn agents_started(&self) -> Vec<(String, u32)> {
        agent_starts(&self.stderr.lock().unwrap())
    }
}

fn agent_starts(lines: &[String]) -> Vec<(String, u32)> {
    lines
        .iter()
        .filter(|l| l.contains("agent running"))
        .filter_map(|l| {
            let url = l
                .split("url=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_owned();
            let pid = l
                .split("pid=Some(")
                .nth(1)?
                .split(')')
                .next()?
                .parse()
                .ok()?;
            Some((url, pid))
        })
        .collect()
}

pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, Vec<String>>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn cookie_of(r: &Resp) -> String {
    let set = r.header("set-cookie").expect("set-cookie");
    set.split(';').next().unwrap().to_owned()
}

/// One HTTP/1.1 request on a connection of its own, with any body; the
/// response with its body unread.
pub async fn send<B>(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> hyper::Response<hyper::body::Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
    sender.send_request(req.body(body).unwrap()).await.unwrap()
}

pub async fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let body = Full::new(Bytes::from(body.to_owned()));
    let resp = tokio::time::timeout(STEP, send(host, method, path, headers, body))
        .await
        .expect("response in time");
    let status = resp.status().as_u16();
    let mut hm: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in resp.headers() {
        hm.entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap_or("").to_owned());
    }
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers: hm,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn ws_connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status a refused WebSocket handshake got.
pub fn refused_status(e: &tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Next message within the step deadline (None when the stream ended).
pub async fn next(ws: &mut Ws) -> Option<Message> {
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("a message in time")
    {
        Some(Ok(m)) => Some(m),
        Some(Err(_)) | None => None,
    }
}

/// Reads until a JSON text message with this `type`; returns it.
pub async fn next_json(ws: &mut Ws, ty: &str) -> serde_json::Value {
    loop {
        match next(ws).await {
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == ty {
                    return v;
                }
            }
            Some(_) => {}
            None => panic!("stream ended while waiting for {ty}"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Starts `/bin/sh` in a PTY; returns the session id. (`session.created`
/// is also announced for other connections' sessions: ours carries our ref.)
pub async fn start_shell(ws: &mut Ws) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let r = format!("t{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    send_json(
        ws,
        serde_json::json!({"type":"terminal.start","shell":"/bin/sh","cols":120,"rows":40,"clientRef":r}),
    )
    .await;
    loop {
        let created = next_json(ws, "session.created").await;
        if created["clientRef"] == r.as_str() {
            return created["id"].as_str().unwrap().to_owned();
        }
    }
}

pub fn input_frame(id: &str, data: &[u8]) -> Message {
    let sid = dispatch_api::SessionId::new(id).unwrap();
    Message::Binary(
        dispatch_api::Frame::new(dispatch_api::FrameKind::Input, &sid, 0, data)
            .encode()
            .into(),
    )
}

/// Output bytes of session `id` gathered from `ws`, indexed by offset.
#[derive(Default)]
pub struct Output {
    pub start: Option<u64>,
    pub bytes: Vec<u8>,
}

impl Output {
    pub fn end(&self) -> u64 {
        self.start.unwrap_or(0) + self.bytes.len() as u64
    }

    /// Adds a frame's payload at its offset (overlaps are checked, gaps fail).
    pub fn add(&mut self, offset: u64, payload: &[u8]) {
        let start = *self.start.get_or_insert(offset);
        let end = start + self.bytes.len() as u64;
        assert!(
            offset <= end,
            "gap in output: have up to {end}, got frame at {offset}"
        );
        let skip = (end - offset) as usize;
        if skip < payload.len() {
            // Overlapping bytes must agree.
            let overlap = &payload[..skip];
            let have = &self.bytes[(offset - start) as usize..];
            assert_eq!(&have[..overlap.len()], overlap);
            self.bytes.extend_from_slice(&payload[skip..]);
        }
    }
}

/// Reads frames until the output of `id` contains `needle`; JSON messages are ignored.
pub async fn read_until(ws: &mut Ws, id: &str, out: &mut Output, needle: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !contains(&out.bytes, needle) {
        let m = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} did not appear; have {} bytes ending {:?}",
                    String::from_utf8_lossy(needle),
                    out.bytes.len(),
                    String::from_utf8_lossy(&out.bytes[out.bytes.len().saturating_sub(200)..])
                )
            });
        match m {
            Some(Ok(Message::Binary(b))) => {
                let f = dispatch_api::Frame::decode(&b).unwrap();
                if f.id == id && f.kind == dispatch_api::FrameKind::Output {
                    out.add(f.offset, f.payload);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

pub fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}
