//! The `dispatch-model-server` binary: announces its address, plays the
//! script file, takes more turns over the control route, serves /healthz
//! and /metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn exchange(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_a_script_file_and_control_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("turns.json");
    std::fs::write(&script, r#"{"turns": [{"text": "from the file"}]}"#).unwrap();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_dispatch-model-server"))
            .arg("--script")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("DISPATCH_MODEL_SERVER_LISTENING http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(url.starts_with("127.0.0.1:"), "{url}");

    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let out = exchange(&url, "POST", "/v1/messages?beta=true", body);
    assert!(out.contains(r#""text":"from ""#), "{out}");
    let out = exchange(
        &url,
        "POST",
        "/control/turns",
        r#"[{"error":{"status":500}}]"#,
    );
    assert!(out.contains(r#"{"added":1}"#), "{out}");
    let out = exchange(&url, "POST", "/v1/messages", body);
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");
    let out = exchange(&url, "GET", "/control/requests", "");
    assert!(out.contains(r#""turn":1"#), "{out}");
    assert!(exchange(&url, "GET", "/healthz", "").starts_with("HTTP/1.1 200"));
    let metrics = exchange(&url, "GET", "/metrics", "");
    assert!(
        metrics.contains(r#"model_server_requests_total{route="messages"} 2"#),
        "{metrics}"
    );
}

#[test]
fn a_bad_script_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("turns.json");
    std::fs::write(&script, r#"[{"txet": "typo"}]"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-model-server"))
        .arg("--script")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("turns.json") && err.contains("txet"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-model-server"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "listening beyond loopback is refused"
    );
}
