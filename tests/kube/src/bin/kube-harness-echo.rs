//! A stand-in container for the harness's own tests: listens on DISPATCH_AGENT_LISTEN and
//! answers, over plain HTTP/1.1, what a test needs to check that the local node ran it as a
//! Pod would run:
//!   GET /healthz       200
//!   GET /readyz        200, or 503 while the file named by ECHO_READY_FILE (if set) is absent
//!   GET /info          JSON {pid, cwd, args, env}
//!   GET /file/<path>   the file's bytes (absolute path), 404 if unreadable
//!   GET /exit/<code>   replies, then exits with that code
//! Prints `DISPATCH_AGENT_LISTENING <addr>` once bound, like the agent.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn respond(mut s: &TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

fn handle(s: TcpStream) {
    let mut line = String::new();
    let mut r = BufReader::new(&s);
    if r.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers; this server never reads a body.
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    match path.as_str() {
        "/healthz" => respond(&s, "200 OK", b"ok"),
        "/readyz" => {
            let ready = match std::env::var_os("ECHO_READY_FILE") {
                Some(f) => std::path::Path::new(&f).exists(),
                None => true,
            };
            if ready {
                respond(&s, "200 OK", b"ok")
            } else {
                respond(&s, "503 Service Unavailable", b"not ready")
            }
        }
        "/info" => {
            let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let info = serde_json::json!({
                "pid": std::process::id(),
                "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
                "args": std::env::args().skip(1).collect::<Vec<_>>(),
                "env": env,
            });
            respond(&s, "200 OK", info.to_string().as_bytes())
        }
        p if p.starts_with("/file/") => match std::fs::read(&p["/file".len()..]) {
            Ok(b) => respond(&s, "200 OK", &b),
            Err(_) => respond(&s, "404 Not Found", b"no such file"),
        },
        p if p.starts_with("/exit/") => {
            let code: i32 = p["/exit/".len()..].parse().unwrap_or(1);
            respond(&s, "200 OK", b"bye");
            std::process::exit(code);
        }
        _ => respond(&s, "404 Not Found", b"not found"),
    }
}

fn main() {
    let addr = std::env::var("DISPATCH_AGENT_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kube-harness-echo: cannot listen on {addr}: {e}");
            std::process::exit(2);
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    println!("DISPATCH_AGENT_LISTENING {local}");
    for s in listener.incoming().flatten() {
        std::thread::spawn(move || handle(s));
    }
}
