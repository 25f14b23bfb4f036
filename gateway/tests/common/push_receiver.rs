//! The push receiver of tests/push/receiver.py (Python's http_ece and
//! cryptography: an RFC 8291 / 8292 implementation that is not ours),
//! started per test on loopback; its JSON lines as they come.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The venv scripts/setup.d/35-push-python.sh makes.
pub fn python() -> PathBuf {
    let cache = std::env::var_os("DISPATCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("dispatch")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/dispatch")
        });
    let py = cache.join("push-venv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run scripts/setup.d/35-push-python.sh (the push tests need \
         Python's http_ece and cryptography)",
        py.display()
    );
    py
}

pub struct Receiver {
    _child: Child,
    /// `http://127.0.0.1:PORT/push/`; a subscription's endpoint adds a name.
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    lines: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/push/receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the push receiver");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                eprintln!("[receiver] {line}");
                let v: serde_json::Value = serde_json::from_str(&line).expect("receiver JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .expect("the receiver started in time")
            .expect("the receiver exited before it started");
        Receiver {
            _child: child,
            endpoint: first["endpoint"].as_str().unwrap().to_owned(),
            p256dh: first["p256dh"].as_str().unwrap().to_owned(),
            auth: first["auth"].as_str().unwrap().to_owned(),
            lines,
        }
    }

    /// `PushSubscription.toJSON()` for an endpoint named `name` here, with prefs.
    pub fn subscription(&self, name: &str, prefs: serde_json::Value) -> String {
        serde_json::json!({
            "endpoint": format!("{}{name}", self.endpoint),
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
            "prefs": prefs,
        })
        .to_string()
    }

    /// The next push the receiver saw.
    pub async fn next(&mut self, within: Duration) -> serde_json::Value {
        tokio::time::timeout(within, self.lines.recv())
            .await
            .expect("a push arrived in time")
            .expect("the receiver is running")
    }

    /// Nothing more arrives for `quiet`.
    pub async fn expect_nothing(&mut self, quiet: Duration) {
        if let Ok(Some(v)) = tokio::time::timeout(quiet, self.lines.recv()).await {
            panic!("unexpected push: {v}");
        }
    }
}
