//! Claude sessions end to end: the real `dispatch-agent` binary runs the real
//! Claude Code CLI, which talks to the scripted model server on loopback
//! (`ANTHROPIC_BASE_URL`); the test speaks the agent's WebSocket protocol.
//!
//! The CLI comes from `DISPATCH_CLAUDE_BIN` or `tools/claude` (installed by
//! `./scripts/setup.sh`). Without it these tests fail: they do not skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, TOKEN, http_get, http_request};
use dispatch_model_server::{ModelServer, Turn};
use serde_json::{Value, json};

/// Turns of the real CLI take a while on a busy 2-core machine.
const TURN_DEADLINE: Duration = Duration::from_secs(90);

fn claude_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DISPATCH_CLAUDE_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "DISPATCH_CLAUDE_BIN={} is not a file: point it at the Claude Code CLI",
            p.display()
        );
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/claude/node_modules/.bin/claude");
    assert!(
        p.exists(),
        "the Claude Code CLI is not installed at {}: run ./scripts/setup.sh (it installs tools/claude) \
         or set DISPATCH_CLAUDE_BIN",
        p.display()
    );
    p.canonicalize().unwrap()
}

struct ClaudeAgent {
    child: Child,
    addr: String,
    workspace: PathBuf,
}

impl Drop for ClaudeAgent {
    /// SIGTERM first, so the agent stops its CLIs instead of orphaning them.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for the agent (and so the CLI): only loopback, a dummy key.
fn model_env(server: &ModelServer) -> Vec<(String, String)> {
    [
        ("ANTHROPIC_BASE_URL", server.base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key".to_owned()),
        // One answer per request, so a scripted error is not retried for minutes.
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

fn start_agent(
    workspace: &Path,
    bin: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> ClaudeAgent {
    let mut cmd = common::agent_command(workspace, args, "warn");
    cmd.arg("--claude-bin").arg(bin).stderr(Stdio::inherit());
    for k in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CONFIG_DIR",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().unwrap();
    let addr = common::listening_address(&mut child);
    ClaudeAgent {
        child,
        addr,
        workspace: workspace.canonicalize().unwrap(),
    }
}

impl ClaudeAgent {
    async fn connect(&self) -> Client {
        Client::connect(&self.addr, Some(TOKEN)).await.unwrap()
    }

    /// SIGTERM, then wait for the agent to exit.
    fn terminate(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "agent did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Everything one client has seen of one Claude session.
#[derive(Default)]
struct Pane {
    events: Vec<Value>,
}

impl Pane {
    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["type"] == kind)
    }

    /// The first tool result the CLI fed back to the model.
    fn first_tool_result(&self) -> Value {
        self.of_type("user")
            .filter_map(|e| e["raw"]["message"]["content"].as_array())
            .flatten()
            .find(|b| b["type"] == "tool_result")
            .expect("a tool_result event")
            .clone()
    }

    fn results(&self) -> usize {
        self.of_type("result").count()
    }

    /// Text streamed as `text_delta`s, in order.
    fn streamed_text(&self) -> String {
        self.of_type("stream_event")
            .filter(|e| e["raw"]["event"]["delta"]["type"] == "text_delta")
            .filter_map(|e| e["raw"]["event"]["delta"]["text"].as_str())
            .collect()
    }
}

/// Reads messages until `done(pane)`, filing this session's events; other
/// messages stay queued in the client.
async fn collect_until(
    c: &mut Client,
    id: &str,
    pane: &mut Pane,
    mut done: impl FnMut(&Pane) -> bool,
) {
    let end = Instant::now() + TURN_DEADLINE;
    while !done(pane) {
        assert!(
            Instant::now() < end,
            "timed out; events so far: {:#}",
            Value::from(pane.events.clone())
        );
        let m = tokio::time::timeout(
            TURN_DEADLINE,
            c.wait_json(|v| v["type"] == "message.delta" && v["id"] == id),
        )
        .await
        .expect("no message.delta in time");
        for e in m["events"].as_array().unwrap() {
            if let Some(last) = pane.events.last() {
                assert_eq!(
                    e["seq"].as_u64(),
                    Some(last["seq"].as_u64().unwrap() + 1),
                    "events in order, no gaps"
                );
            }
            pane.events.push(e.clone());
        }
    }
}

/// A fresh workspace directory in `tmp`, canonical (as the CLI reports paths).
fn workspace_in(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    ws.canonicalize().unwrap()
}

async fn start_claude(c: &mut Client, extra: Value) -> String {
    let mut m = json!({"type": "claude.start"});
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    c.send(m).await;
    let v = c
        .wait_json(|v| v["type"] == "session.created" || v["type"] == "error")
        .await;
    assert_eq!(v["type"], "session.created", "{v}");
    assert_eq!(v["info"]["type"], "claude");
    let id = v["id"].as_str().unwrap().to_owned();
    let a = c
        .wait_json(|v| v["type"] == "session.attached" && v["id"] == id.as_str())
        .await;
    assert_eq!(a["offset"], 0);
    id
}

async fn send_prompt(c: &mut Client, id: &str, text: &str) {
    c.send(json!({"type": "claude.send", "id": id, "input": text}))
        .await;
}

/// Runs one prompt to its `result` event and returns that event.
async fn turn(c: &mut Client, id: &str, pane: &mut Pane, prompt: &str) -> Value {
    let before = pane.results();
    send_prompt(c, id, prompt).await;
    collect_until(c, id, pane, |p| p.results() > before).await;
    pane.of_type("result").last().unwrap().clone()
}

#[tokio::test]
async fn plain_text_streams_as_deltas_and_replays_on_attach() {
    let bin = claude_bin();
    let answer = "Hello from the scripted model, streamed in pieces.";
    let server = ModelServer::start_local(vec![Turn::text(answer)])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = start_agent(&tmp.path().join("ws"), &bin, &model_env(&server), &[]);

    let (status, body) = http_get(&agent.addr, "/readyz", None).await;
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["claude"]["available"], true, "{ready}");

    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    let result = turn(&mut c, &id, &mut pane, "Say hello, please").await;

    assert_eq!(pane.events[0]["seq"], 0);
    assert_eq!(pane.streamed_text(), answer);
    let deltas = pane
        .of_type("stream_event")
        .filter(|e| e["subtype"] == "content_block_delta")
        .count();
    assert!(
        deltas >= 5,
        "the answer arrived as several deltas, got {deltas}"
    );
    let init = pane
        .of_type("system")
        .find(|e| e["subtype"] == "init")
        .expect("a system/init event");
    let conversation = init["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(init["raw"]["cwd"], agent.workspace.to_str().unwrap());
    // The user's own message is in the stream too.
    assert!(
        pane.of_type("user")
            .any(|e| e["raw"]["message"]["content"] == "Say hello, please"),
        "the prompt is echoed"
    );
    let assistant = pane.of_type("assistant").last().unwrap();
    assert_eq!(assistant["raw"]["message"]["content"][0]["text"], answer);
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["sessionId"], conversation.as_str());
    assert_eq!(result["raw"]["is_error"], false);
    assert_eq!(result["raw"]["result"], answer);
    assert!(result["raw"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(result["raw"]["total_cost_usd"].is_number());

    let reqs = server.message_requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].uri.starts_with("/v1/messages"));
    assert_eq!(reqs[0].body["stream"], true);
    assert!(
        reqs[0]
            .message_texts()
            .iter()
            .any(|t| t == "Say hello, please")
    );
    assert!(server.unexpected().is_empty(), "{:?}", server.unexpected());

    // A second client (a reload) attaching from 0 sees the same events.
    let mut c2 = agent.connect().await;
    c2.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let a = c2
        .wait_json(|v| v["type"] == "session.attached" && v["id"] == id.as_str())
        .await;
    assert_eq!(a["offset"], 0);
    assert_eq!(a["mode"], "replay");
    let mut replay = Pane::default();
    collect_until(&mut c2, &id, &mut replay, |p| {
        p.events.len() >= pane.events.len()
    })
    .await;
    assert_eq!(replay.events[..pane.events.len()], pane.events[..]);

    // Attaching from the middle gives exactly the rest.
    let mid = pane.events.len() as u64 / 2;
    c2.send(json!({"type": "session.attach", "id": id, "since": mid}))
        .await;
    let a = c2
        .wait_json(|v| v["type"] == "session.attached" && v["id"] == id.as_str())
        .await;
    assert_eq!(a["offset"], mid);
    let d = c2
        .wait_json(|v| v["type"] == "message.delta" && v["id"] == id.as_str())
        .await;
    assert_eq!(d["events"][0]["seq"], mid);

    // The session list and /activity know it.
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    let me = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["type"], "claude");
    assert_eq!(
        me["title"], "Say hello, please",
        "named after the first prompt"
    );
    assert!(me["offset"].as_u64().unwrap() >= pane.events.len() as u64);

    // Stop: stdin closes, the CLI ends, everyone attached hears of it.
    c.send(json!({"type": "session.stop", "id": id})).await;
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    assert_eq!(ended["reason"], "stopped", "{ended}");
    c.send(json!({"type": "claude.send", "id": id, "input": "more"}))
        .await;
    c.wait_error("session_ended").await;
}

#[tokio::test]
async fn bash_tool_use_asks_permission_allowed_then_denied() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let allowed = ws.join("allowed.txt");
    let denied = ws.join("denied.txt");
    let remembered = [ws.join("r1.txt"), ws.join("r2.txt")];
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", allowed.display())),
        Turn::text("Created it."),
        Turn::bash(format!("touch {}", denied.display())),
        Turn::text("Understood, I did not create it."),
        Turn::bash(format!("touch {}", remembered[0].display())),
        Turn::text("One."),
        Turn::bash(format!("touch {}", remembered[1].display())),
        Turn::text("Two."),
    ])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut a = agent.connect().await;
    let id = start_claude(&mut a, json!({})).await;
    // A second client watches the same session.
    let mut b = agent.connect().await;
    b.send(json!({"type": "session.attach", "id": id})).await;
    b.wait_json(|v| v["type"] == "session.attached").await;

    // Allowed: the first answer wins, the tool really runs.
    let mut pane = Pane::default();
    send_prompt(&mut a, &id, "Create allowed.txt").await;
    collect_until(&mut a, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 1
    })
    .await;
    let req = pane.of_type("control_request").next().unwrap().clone();
    assert_eq!(req["subtype"], "can_use_tool");
    assert_eq!(req["raw"]["request"]["tool_name"], "Bash");
    assert_eq!(
        req["raw"]["request"]["input"]["command"],
        format!("touch {}", allowed.display())
    );
    let rid = req["requestId"].as_str().unwrap().to_owned();
    assert!(!allowed.exists(), "nothing runs before the answer");
    let (_, activity) = http_get(&agent.addr, "/activity", Some(TOKEN)).await;
    let activity: Value = serde_json::from_str(&activity).unwrap();
    assert_eq!(activity["claudeTurnRunning"], true, "{activity}");
    let mut b_pane = Pane::default();
    collect_until(&mut b, &id, &mut b_pane, |p| {
        p.of_type("control_request").count() == 1
    })
    .await;
    assert_eq!(
        b_pane.of_type("control_request").next().unwrap()["requestId"],
        rid.as_str()
    );

    a.send(json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": true}))
        .await;
    let resolved = a.wait_type("claude.permission.resolved").await;
    assert_eq!(
        (
            resolved["requestId"].as_str(),
            resolved["allowed"].as_bool()
        ),
        (Some(rid.as_str()), Some(true))
    );
    // The other client learns it is settled, and is too late to answer.
    let resolved_b = b.wait_type("claude.permission.resolved").await;
    assert_eq!(resolved_b["reason"], "answered");
    b.send(json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": false}))
        .await;
    b.wait_error("no_such_request").await;

    collect_until(&mut a, &id, &mut pane, |p| p.results() == 1).await;
    assert!(allowed.exists(), "the allowed Bash command ran");
    let (_, activity) = http_get(&agent.addr, "/activity", Some(TOKEN)).await;
    let activity: Value = serde_json::from_str(&activity).unwrap();
    assert_eq!(activity["claudeTurnRunning"], false, "{activity}");
    let tool_result = pane.first_tool_result();
    assert_eq!(tool_result["is_error"], false, "{tool_result}");

    // Denied: the command does not run; the model is told why.
    send_prompt(&mut a, &id, "Create denied.txt").await;
    collect_until(&mut a, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 2
    })
    .await;
    let rid2 = pane.of_type("control_request").nth(1).unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    a.send(
        json!({"type": "claude.permission", "id": id, "requestId": rid2, "allow": false,
                  "message": "Not in this workspace, thanks."}),
    )
    .await;
    let resolved = a.wait_type("claude.permission.resolved").await;
    assert_eq!(resolved["allowed"], false);
    collect_until(&mut a, &id, &mut pane, |p| p.results() == 2).await;
    assert!(!denied.exists(), "the denied Bash command did not run");

    // "Allow for this session": the next Bash call is allowed without asking.
    send_prompt(&mut a, &id, "Create r1.txt").await;
    collect_until(&mut a, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 3
    })
    .await;
    let rid3 = pane.of_type("control_request").nth(2).unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    a.send(json!({"type": "claude.permission", "id": id, "requestId": rid3, "allow": true, "remember": true}))
        .await;
    collect_until(&mut a, &id, &mut pane, |p| p.results() == 3).await;
    send_prompt(&mut a, &id, "Create r2.txt").await;
    collect_until(&mut a, &id, &mut pane, |p| p.results() == 4).await;
    let auto = a
        .wait_json(|v| v["type"] == "claude.permission.resolved" && v["reason"] == "remembered")
        .await;
    assert_eq!(auto["allowed"], true);
    assert!(
        remembered.iter().all(|f| f.exists()),
        "both remembered-tool commands ran"
    );

    let reqs = server.message_requests();
    assert_eq!(reqs.len(), 8);
    let last = reqs[3].message_texts();
    assert!(
        last.iter()
            .any(|t| t.contains("Not in this workspace, thanks.")),
        "the denial reached the model: {last:?}"
    );
    // Unknown request ids are refused plainly.
    a.send(json!({"type": "claude.permission", "id": id, "requestId": "nope", "allow": true}))
        .await;
    a.wait_error("no_such_request").await;
}

#[tokio::test]
async fn multi_turn_history_and_resume_after_the_agent_restarts() {
    let bin = claude_bin();
    let server = ModelServer::start_local(vec![
        Turn::text("First answer."),
        Turn::text("Second answer."),
        Turn::text("Third answer, after the restart."),
    ])
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    let env = model_env(&server);
    let mut agent = start_agent(&ws, &bin, &env, &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({"workspacePath": "app"})).await;
    let mut pane = Pane::default();
    turn(&mut c, &id, &mut pane, "First prompt").await;
    turn(&mut c, &id, &mut pane, "Second prompt").await;
    let conversation = pane
        .of_type("system")
        .find(|e| e["subtype"] == "init")
        .unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Multi-turn: the second request carries the first exchange.
    let reqs = server.message_requests();
    assert_eq!(reqs.len(), 2);
    let texts = reqs[1].message_texts();
    for t in ["First prompt", "First answer.", "Second prompt"] {
        assert!(texts.iter().any(|x| x.contains(t)), "{t:?} in {texts:?}");
    }
    drop(c);

    agent.terminate();
    let mut agent = start_agent(&ws, &bin, &env, &[]);
    let mut c = agent.connect().await;

    // The agent's SQLite recorded the session and its conversation.
    {
        let db = rusqlite::Connection::open(ws.join(".dispatch/agent.db")).unwrap();
        let (kind, conv): (String, String) = db
            .query_row(
                "SELECT s.type, c.conversation_id FROM sessions s JOIN claude_sessions c ON c.session_id = s.id WHERE s.id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (kind.as_str(), conv.as_str()),
            ("claude", conversation.as_str())
        );
    }

    // History, from the CLI's own transcripts.
    c.send(json!({"type": "claude.history"})).await;
    let h = c.wait_type("claude.history").await;
    let conv = h["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == conversation.as_str())
        .unwrap_or_else(|| panic!("{conversation} in {h}"))
        .clone();
    assert_eq!(conv["cwd"], "app");
    assert!(conv["messages"].as_u64().unwrap() >= 4, "{conv}");
    assert!(conv["title"].as_str().unwrap().contains("prompt"), "{conv}");
    c.send(json!({"type": "claude.load", "conversationId": conversation}))
        .await;
    let t = c.wait_type("claude.transcript").await;
    let entries = t["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "user" && e["message"]["content"] == "First prompt")
    );
    assert!(entries.iter().any(|e| e["type"] == "assistant"));
    c.send(json!({"type": "claude.load", "conversationId": "no-such-conversation"}))
        .await;
    c.wait_error("no_such_session").await;

    // The old session is listed as ended and still replays its events.
    c.send(json!({"type": "session.attach", "id": id, "since": 0}))
        .await;
    let mut old = Pane::default();
    collect_until(&mut c, &id, &mut old, |p| {
        p.events.len() >= pane.events.len()
    })
    .await;
    assert_eq!(old.events[..pane.events.len()], pane.events[..]);
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    assert!(ended["reason"].is_string(), "{ended}");

    // Resume: the next request carries the whole earlier conversation.
    let id2 = start_claude(&mut c, json!({"resume": conversation})).await;
    let mut pane2 = Pane::default();
    // Two CLIs must not write one transcript.
    c.send(json!({"type": "claude.start", "resume": conversation}))
        .await;
    let e = c.wait_error("already_exists").await;
    assert!(e["message"].as_str().unwrap().contains(&id2), "{e}");
    let result = turn(&mut c, &id2, &mut pane2, "Third prompt").await;
    assert_eq!(result["sessionId"], conversation.as_str());
    assert_eq!(pane2.streamed_text(), "Third answer, after the restart.");
    let reqs = server.message_requests();
    assert_eq!(reqs.len(), 3);
    let texts = reqs[2].message_texts();
    for t in [
        "First prompt",
        "First answer.",
        "Second prompt",
        "Second answer.",
        "Third prompt",
    ] {
        assert!(texts.iter().any(|x| x.contains(t)), "{t:?} in {texts:?}");
    }
    c.send(json!({"type": "session.list"})).await;
    let list = c.wait_type("session.list").await;
    let s2 = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id2.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        s2["cwd"], "app",
        "resumed in the conversation's own directory"
    );

    c.send(json!({"type": "claude.start", "resume": "no-such-conversation"}))
        .await;
    c.wait_error("no_such_session").await;
    c.send(json!({"type": "claude.start", "resume": "../../etc/passwd"}))
        .await;
    c.wait_error("invalid_field").await;
    agent.terminate();
}

#[tokio::test]
async fn api_errors_reach_the_client() {
    let bin = claude_bin();
    let server = ModelServer::start_local(vec![
        Turn::error(529),
        Turn::error(500),
        Turn::text("Recovered."),
        Turn::stream_error("Half an answer", 529),
        Turn::text("Second try worked."),
    ])
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = start_agent(&tmp.path().join("ws"), &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    // Model and permission mode reach the CLI.
    let id = start_claude(
        &mut c,
        json!({"model": "claude-scripted-model", "permissionMode": "acceptEdits"}),
    )
    .await;
    let mut pane = Pane::default();

    for status in [529, 500] {
        let result = turn(&mut c, &id, &mut pane, "Anyone there?").await;
        assert_eq!(result["raw"]["is_error"], true, "{result}");
        assert_eq!(result["raw"]["api_error_status"], status, "{result}");
        let text = result["raw"]["result"].as_str().unwrap();
        assert!(text.contains(&status.to_string()), "{text}");
        let assistant = pane.of_type("assistant").last().unwrap();
        assert!(
            assistant["raw"]["error"].is_string(),
            "the assistant event names the error: {assistant}"
        );
    }
    // The session carries on after errors.
    let result = turn(&mut c, &id, &mut pane, "Try again").await;
    assert_eq!(result["raw"]["is_error"], false);
    assert_eq!(result["raw"]["result"], "Recovered.");
    // Failing mid-answer: the CLI retries on its own without streaming
    // (whatever the retry setting); a client sees the broken-off deltas, then
    // the complete `assistant` message of the retry.
    let before = pane.events.len();
    let result = turn(&mut c, &id, &mut pane, "Once more").await;
    let streamed: String = pane.events[before..]
        .iter()
        .filter_map(|e| e["raw"]["event"]["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "Half an answer");
    let assistant = pane.of_type("assistant").last().unwrap();
    assert_eq!(
        assistant["raw"]["message"]["content"][0]["text"],
        "Second try worked."
    );
    assert_eq!(result["raw"]["is_error"], false, "{result}");
    assert_eq!(result["raw"]["result"], "Second try worked.");
    let reqs = server.message_requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[3].body["stream"], true);
    assert_eq!(reqs[4].body["stream"], false, "the retry does not stream");
    assert!(
        reqs.iter()
            .all(|r| r.body["model"] == "claude-scripted-model")
    );
    let init = pane
        .of_type("system")
        .find(|e| e["subtype"] == "init")
        .unwrap();
    assert_eq!(init["raw"]["permissionMode"], "acceptEdits");
    assert_eq!(init["raw"]["model"], "claude-scripted-model");
}

#[tokio::test]
async fn the_agents_defaults_apply_when_a_session_names_no_model_or_mode() {
    // What the operator sets from a Workspace's `claude` settings.
    let bin = claude_bin();
    let server = ModelServer::start_local(vec![Turn::text("Planned.")])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut env = model_env(&server);
    env.push((
        "DISPATCH_CLAUDE_MODEL".into(),
        "claude-workspace-default".into(),
    ));
    env.push(("DISPATCH_CLAUDE_PERMISSION_MODE".into(), "plan".into()));
    let agent = start_agent(&tmp.path().join("ws"), &bin, &env, &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    let result = turn(&mut c, &id, &mut pane, "What would you do?").await;
    assert_eq!(result["raw"]["result"], "Planned.", "{result}");
    let init = pane
        .of_type("system")
        .find(|e| e["subtype"] == "init")
        .unwrap();
    assert_eq!(init["raw"]["permissionMode"], "plan");
    assert_eq!(init["raw"]["model"], "claude-workspace-default");
    let reqs = server.message_requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.body["model"] == "claude-workspace-default")
    );
}

#[tokio::test]
async fn the_permission_mode_and_model_change_in_a_running_session() {
    let bin = claude_bin();
    let server = ModelServer::start_local(vec![Turn::text("First."), Turn::text("Second.")])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = start_agent(&tmp.path().join("ws"), &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({"model": "claude-first"})).await;
    let mut pane = Pane::default();
    turn(&mut c, &id, &mut pane, "One").await;
    c.send(json!({"type": "claude.configure", "id": id, "permissionMode": "plan", "model": "claude-second"}))
        .await;
    // The CLI confirms the new mode through its control protocol.
    collect_until(&mut c, &id, &mut pane, |p| {
        p.of_type("control_response")
            .any(|e| e["raw"]["response"]["response"]["mode"] == "plan")
    })
    .await;
    turn(&mut c, &id, &mut pane, "Two").await;
    let reqs = server.message_requests();
    assert_eq!(reqs.first().unwrap().body["model"], "claude-first");
    assert_eq!(reqs.last().unwrap().body["model"], "claude-second");
    // Bad input is refused and changes nothing.
    c.send(json!({"type": "claude.configure", "id": id, "model": "--bad"}))
        .await;
    c.wait_error("invalid_field").await;
    c.send(json!({"type": "claude.configure", "id": id, "permissionMode": "sideways"}))
        .await;
    c.wait_error("bad_message").await;
}

#[tokio::test]
async fn interrupt_withdraws_a_pending_permission_prompt() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let target = ws.join("never.txt");
    let long = "word ".repeat(200);
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", target.display())),
        // Slow enough that the interrupt lands mid-stream.
        Turn::text(long.clone()).with_delay_ms(50),
        Turn::text("Still here."),
    ])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    send_prompt(&mut c, &id, "Make a file").await;
    collect_until(&mut c, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 1
    })
    .await;
    let rid = pane.of_type("control_request").next().unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(json!({"type": "claude.interrupt", "id": id})).await;
    let resolved = c.wait_type("claude.permission.resolved").await;
    assert_eq!(resolved["requestId"], rid.as_str());
    assert_eq!(resolved["reason"], "cancelled");
    assert_eq!(resolved["allowed"], false);
    collect_until(&mut c, &id, &mut pane, |p| p.results() == 1).await;
    assert!(
        pane.of_type("control_cancel_request")
            .any(|e| e["requestId"] == rid.as_str())
    );
    assert!(!target.exists());
    c.send(json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": true}))
        .await;
    c.wait_error("no_such_request").await;

    // Interrupting a streaming answer ends the turn early; the session goes on.
    let before = pane.events.len();
    send_prompt(&mut c, &id, "Talk a lot").await;
    collect_until(&mut c, &id, &mut pane, |p| {
        p.events[before..]
            .iter()
            .any(|e| e["raw"]["event"]["delta"]["type"] == "text_delta")
    })
    .await;
    c.send(json!({"type": "claude.interrupt", "id": id})).await;
    collect_until(&mut c, &id, &mut pane, |p| p.results() == 2).await;
    let streamed: String = pane.events[before..]
        .iter()
        .filter_map(|e| e["raw"]["event"]["delta"]["text"].as_str())
        .collect();
    assert!(
        !streamed.is_empty() && streamed.len() < long.len(),
        "stopped part-way: {} of {} bytes",
        streamed.len(),
        long.len()
    );
    assert!(
        pane.events[before..]
            .iter()
            .any(|e| e["type"] == "control_response"),
        "the CLI acknowledged the interrupt"
    );
    let result = turn(&mut c, &id, &mut pane, "Are you there?").await;
    assert_eq!(result["raw"]["result"], "Still here.");
}

#[tokio::test]
async fn a_permission_prompt_nobody_answers_is_denied_after_the_timeout() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let target = ws.join("late.txt");
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", target.display())),
        Turn::text("Fine."),
    ])
    .await
    .unwrap();
    let agent = start_agent(
        &ws,
        &bin,
        &model_env(&server),
        &["--claude-permission-timeout", "1"],
    );
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    send_prompt(&mut c, &id, "Make a file").await;
    let resolved = c.wait_type("claude.permission.resolved").await;
    assert_eq!(
        (resolved["allowed"].as_bool(), resolved["reason"].as_str()),
        (Some(false), Some("timeout"))
    );
    collect_until(&mut c, &id, &mut pane, |p| p.results() == 1).await;
    assert!(!target.exists());
}

#[tokio::test]
async fn a_crashed_cli_ends_the_session_with_the_reason() {
    let bin = claude_bin();
    let server = ModelServer::start_local(vec![Turn::text("Hi.")])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = start_agent(&tmp.path().join("ws"), &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    turn(&mut c, &id, &mut pane, "Hello").await;
    // The CLI is the agent's child whose DISPATCH_SESSION_ID is this session.
    let pid = cli_pid(agent.child.id() as i32, &id).expect("the CLI process");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.starts_with("crashed: killed by SIGKILL"), "{reason}");
    c.send(json!({"type": "claude.send", "id": id, "input": "still there?"}))
        .await;
    c.wait_error("session_ended").await;
}

fn cli_pid(agent_pid: i32, session: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(agent_pid) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let want = format!("DISPATCH_SESSION_ID={session}");
        if environ.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[tokio::test]
async fn missing_cli_no_credentials_and_refused_modes_are_plain_errors() {
    // CLI missing: /readyz says so and claude.start is claude_unavailable.
    let tmp = tempfile::tempdir().unwrap();
    let server = ModelServer::start_local(vec![]).await.unwrap();
    let agent = start_agent(
        &tmp.path().join("ws1"),
        Path::new("/nonexistent/claude"),
        &model_env(&server),
        &[],
    );
    let mut c = agent.connect().await;
    c.send(json!({"type": "claude.start"})).await;
    let e = c.wait_error("claude_unavailable").await;
    assert!(e["message"].as_str().unwrap().contains("not found"), "{e}");
    let (_, body) = http_get(&agent.addr, "/readyz", None).await;
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["claude"]["available"], false, "{ready}");
    assert!(
        ready["claude"]["reason"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{ready}"
    );
    drop(agent);

    // No credentials: a clear claude_unavailable, nothing started.
    let bin = claude_bin();
    let no_key: Vec<(String, String)> = model_env(&server)
        .into_iter()
        .filter(|(k, _)| k != "ANTHROPIC_API_KEY")
        .collect();
    let agent = start_agent(&tmp.path().join("ws2"), &bin, &no_key, &[]);
    let mut c = agent.connect().await;
    c.send(json!({"type": "claude.start"})).await;
    let e = c.wait_error("claude_unavailable").await;
    assert!(
        e["message"].as_str().unwrap().contains("credentials"),
        "{e}"
    );
    c.send(json!({"type": "session.list"})).await;
    assert_eq!(c.wait_type("session.list").await["sessions"], json!([]));
    drop(agent);

    // Bad fields and refused modes.
    let agent = start_agent(&tmp.path().join("ws3"), &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    for (msg, code) in [
        (
            json!({"type": "claude.start", "permissionMode": "bogus"}),
            "bad_message",
        ),
        (
            json!({"type": "claude.start", "model": "--dangerously-skip-permissions"}),
            "invalid_field",
        ),
        (
            json!({"type": "claude.start", "workspacePath": "../.."}),
            "path_outside_workspace",
        ),
        (
            json!({"type": "claude.send", "id": "nosuch", "input": "x"}),
            "no_such_session",
        ),
        (
            json!({"type": "claude.interrupt", "id": "nosuch"}),
            "no_such_session",
        ),
    ] {
        c.send(msg.clone()).await;
        let e = c.wait_type("error").await;
        assert_eq!(e["code"], code, "{msg} -> {e}");
    }
    let running_as_root = unsafe { libc::geteuid() } == 0;
    c.send(json!({"type": "claude.start", "permissionMode": "bypassPermissions"}))
        .await;
    if running_as_root {
        let e = c.wait_error("forbidden").await;
        assert!(e["message"].as_str().unwrap().contains("root"), "{e}");
    } else {
        let v = c.wait_type("session.created").await;
        assert_eq!(v["info"]["type"], "claude");
    }
    // A terminal id is not a Claude session.
    let tid = c.start(json!({"shell": "/bin/sh"})).await;
    c.send(json!({"type": "claude.send", "id": tid, "input": "x"}))
        .await;
    c.wait_error("wrong_session_type").await;
}

#[tokio::test]
async fn an_allowed_prompt_may_run_edited_input() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let (asked, edited) = (ws.join("asked.txt"), ws.join("edited.txt"));
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", asked.display())),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    send_prompt(&mut c, &id, "Make a file").await;
    collect_until(&mut c, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 1
    })
    .await;
    let rid = pane.of_type("control_request").next().unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(
        json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": true,
                  "updatedInput": {"command": format!("touch {}", edited.display()),
                                   "description": "edited by the user"}}),
    )
    .await;
    collect_until(&mut c, &id, &mut pane, |p| p.results() == 1).await;
    assert!(edited.exists(), "the edited command ran");
    assert!(!asked.exists(), "the original command did not");
    // A non-object replacement input is refused and settles nothing.
    c.send(
        json!({"type": "claude.permission", "id": id, "requestId": "x", "allow": true,
                  "updatedInput": "rm -rf /"}),
    )
    .await;
    c.wait_error("invalid_field").await;
}

/// Live processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && !common::is_gone(pid) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn stop_ends_the_cli_and_the_tools_it_runs() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // A duration no other process here uses, to find the tool's process.
    let marker = format!("sleep {}", 300 + std::process::id() % 97);
    // (`touch` first: a bare `sleep` counts as harmless and runs unasked.)
    let started = ws.canonicalize().unwrap().join("started");
    let server = ModelServer::start_local(vec![Turn::bash(format!(
        "touch {} && {marker}",
        started.display()
    ))])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    send_prompt(&mut c, &id, "Wait a while").await;
    collect_until(&mut c, &id, &mut pane, |p| {
        p.of_type("control_request").count() == 1
    })
    .await;
    let rid = pane.of_type("control_request").next().unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": true}))
        .await;
    let cli = cli_pid(agent.child.id() as i32, &id).expect("the CLI process");
    common::eventually("the tool's sleep to start", || {
        !processes_with(&marker).is_empty()
    })
    .await;

    c.send(json!({"type": "session.stop", "id": id})).await;
    let ended = c
        .wait_json(|v| v["type"] == "session.ended" && v["id"] == id.as_str())
        .await;
    assert_eq!(ended["reason"], "stopped", "{ended}");
    assert!(common::is_gone(cli), "the CLI is gone");
    common::eventually("the tool's sleep to be gone", || {
        processes_with(&marker).is_empty()
    })
    .await;
}

#[tokio::test]
async fn in_dont_ask_mode_a_tool_use_is_refused_without_a_prompt() {
    // The CLI's mode for unattended runs: what is not allowed beforehand is
    // refused, and nobody is asked.
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let target = ws.join("unasked.txt");
    let server = ModelServer::start_local(vec![
        Turn::bash(format!("touch {}", target.display())),
        Turn::text("It was refused."),
    ])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({"permissionMode": "dontAsk"})).await;
    let mut pane = Pane::default();
    let result = turn(&mut c, &id, &mut pane, "Create unasked.txt").await;
    assert_eq!(result["raw"]["result"], "It was refused.", "{result}");
    let init = pane
        .of_type("system")
        .find(|e| e["subtype"] == "init")
        .unwrap();
    assert_eq!(init["raw"]["permissionMode"], "dontAsk");
    assert_eq!(
        pane.of_type("control_request").count(),
        0,
        "nobody was asked"
    );
    assert!(!target.exists(), "the command did not run");
    let tool_result = pane.first_tool_result();
    assert_eq!(tool_result["is_error"], true, "{tool_result}");
}

/// `method path` on the agent with its token and a JSON body: (status, JSON).
async fn agent_json(addr: &str, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_request(addr, method, path, Some(TOKEN), "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// One real CLI turn writes, edits (Write, Read, Edit tools) and deletes
/// (Bash): the turn's changes list all three with one diff, and undo puts
/// each file back exactly (content and mode), refusing first while a changed
/// file was changed again; the user's own git is never touched.
#[tokio::test]
async fn a_turns_changes_are_listed_and_undone_exactly() {
    use std::os::unix::fs::PermissionsExt;
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    std::fs::write(ws.join("edit.txt"), "line one\nold line\n").unwrap();
    std::fs::write(ws.join("gone.sh"), "#!/bin/sh\necho bye\n").unwrap();
    std::fs::set_permissions(ws.join("gone.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(ws.join("other.txt"), "not the turn's\n").unwrap();
    // The user's own repository, with a staged change.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&ws)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "edit.txt"]);
    let user_index = std::fs::read(ws.join(".git/index")).unwrap();

    let (new_p, edit_p, gone_p) = (ws.join("new.txt"), ws.join("edit.txt"), ws.join("gone.sh"));
    let server = ModelServer::start_local(vec![
        Turn::tool_use(
            "Write",
            json!({"file_path": new_p, "content": "brand new\n"}),
        ),
        Turn::tool_use("Read", json!({"file_path": edit_p})),
        Turn::tool_use(
            "Edit",
            json!({"file_path": edit_p, "old_string": "old line", "new_string": "new line"}),
        ),
        Turn::bash(format!("rm {}", gone_p.display())),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;

    // The turn, allowing every tool it asks for.
    let mut pane = Pane::default();
    send_prompt(&mut c, &id, "Write, edit and delete").await;
    let mut answered = 0;
    while pane.results() == 0 {
        collect_until(&mut c, &id, &mut pane, |p| {
            p.results() > 0 || p.of_type("control_request").count() > answered
        })
        .await;
        let asks: Vec<Value> = pane
            .of_type("control_request")
            .skip(answered)
            .cloned()
            .collect();
        for req in asks {
            let rid = req["requestId"].as_str().unwrap().to_owned();
            c.send(json!({"type": "claude.permission", "id": id, "requestId": rid, "allow": true}))
                .await;
            answered += 1;
        }
    }
    assert_eq!(std::fs::read_to_string(&new_p).unwrap(), "brand new\n");
    assert_eq!(
        std::fs::read_to_string(&edit_p).unwrap(),
        "line one\nnew line\n"
    );
    assert!(!gone_p.exists());

    // The turn's changes: three files, one diff.
    let (status, turns) = agent_json(&agent.addr, "GET", &format!("/claude/{id}/turns")).await;
    assert_eq!(status, 200, "{turns}");
    assert_eq!(turns, json!({"turns": [{"turn": 1, "complete": true}]}));
    let (status, ch) =
        agent_json(&agent.addr, "GET", &format!("/claude/{id}/turns/1/changes")).await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(
        ch["files"],
        json!([
            {"path": "edit.txt", "status": "modified"},
            {"path": "gone.sh", "status": "deleted"},
            {"path": "new.txt", "status": "added"},
        ])
    );
    let diff = ch["diff"].as_str().unwrap();
    for needle in ["-old line", "+new line", "+brand new", "-echo bye"] {
        assert!(diff.contains(needle), "{needle:?} in {diff}");
    }

    // Changed again after the turn: undo refuses, and changes nothing.
    std::fs::write(&edit_p, "someone else's\n").unwrap();
    std::fs::write(ws.join("other.txt"), "changed by the user\n").unwrap();
    let (status, r) = agent_json(&agent.addr, "POST", &format!("/claude/{id}/turns/1/undo")).await;
    assert_eq!((status, r["code"].as_str()), (409, Some("conflict")), "{r}");
    assert!(r["message"].as_str().unwrap().contains("edit.txt"), "{r}");
    assert!(new_p.exists());
    // Put back as the turn left it: undo restores each file exactly.
    std::fs::write(&edit_p, "line one\nnew line\n").unwrap();
    let (status, r) = agent_json(&agent.addr, "POST", &format!("/claude/{id}/turns/1/undo")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["removed"], json!(["new.txt"]));
    assert!(!new_p.exists());
    assert_eq!(
        std::fs::read_to_string(&edit_p).unwrap(),
        "line one\nold line\n"
    );
    assert_eq!(
        std::fs::read_to_string(&gone_p).unwrap(),
        "#!/bin/sh\necho bye\n"
    );
    let mode = std::fs::metadata(&gone_p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    // What the turn did not touch stays as the user left it.
    assert_eq!(
        std::fs::read_to_string(ws.join("other.txt")).unwrap(),
        "changed by the user\n"
    );
    // The user's git: same index, no stash, no new refs.
    assert_eq!(std::fs::read(ws.join(".git/index")).unwrap(), user_index);
    assert_eq!(git(&["stash", "list"]), "");
    assert_eq!(git(&["for-each-ref"]), "");
    // Unknown turns and sessions.
    let (status, _) =
        agent_json(&agent.addr, "GET", &format!("/claude/{id}/turns/9/changes")).await;
    assert_eq!(status, 404);
    let (status, _) = agent_json(&agent.addr, "GET", "/claude/bad%20id/turns").await;
    assert_eq!(status, 400);
}

/// A minimal HTTP/1.1 POST with a JSON body: (status, body).
async fn http_post(addr: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    http_request(addr, "POST", path, token, body).await
}

async fn claude_status(addr: &str, query: &str) -> Value {
    let (code, body) = http_get(addr, &format!("/claude/status{query}"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Long-polls the status until `pred` holds.
async fn status_until(addr: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + TURN_DEADLINE;
    let mut st = claude_status(addr, "").await;
    while !pred(&st) {
        assert!(Instant::now() < end, "timed out waiting for {what}: {st:#}");
        let v = st["version"].as_u64().unwrap();
        st = claude_status(addr, &format!("?since={v}&wait=30")).await;
    }
    st
}

#[tokio::test]
async fn the_status_lists_pending_requests_and_rest_answers_them() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let target = ws.join("via-rest.txt");
    let heavy = dispatch_model_server::Usage {
        input_tokens: 100_000,
        output_tokens: 1_000,
    };
    let server = ModelServer::start_local(vec![
        Turn {
            usage: Some(heavy),
            ..Turn::bash(format!("touch {}", target.display()))
        },
        Turn {
            usage: Some(heavy),
            ..Turn::text("Made it.")
        },
    ])
    .await
    .unwrap();
    let agent = start_agent(
        &ws,
        &bin,
        &model_env(&server),
        &["--claude-permission-timeout", "300"],
    );
    // Without the token: nothing.
    let (code, _) = http_get(&agent.addr, "/claude/status", None).await;
    assert_eq!(code, 401);
    let (code, _) = http_post(
        &agent.addr,
        "/claude/sessions/c1/permissions/r1",
        None,
        "{}",
    )
    .await;
    assert_eq!(code, 401);

    let st = claude_status(&agent.addr, "").await;
    assert_eq!(st["state"], "Idle", "{st}");
    assert_eq!(st["pendingCount"], 0);
    // Nothing changes: the long poll waits, then answers the same version.
    let v0 = st["version"].as_u64().unwrap();
    let t = Instant::now();
    let same = claude_status(&agent.addr, &format!("?since={v0}&wait=1")).await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(same["version"].as_u64(), Some(v0));

    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    send_prompt(&mut c, &id, "Make a file").await;
    let st = status_until(&agent.addr, "a pending request", |s| s["pendingCount"] == 1).await;
    assert!(st["version"].as_u64().unwrap() > v0);
    assert_eq!(st["state"], "AwaitingApproval", "{st}");
    let p = &st["pending"][0];
    assert_eq!(p["session"], id.as_str());
    assert_eq!(p["tool"], "Bash");
    assert_eq!(p["input"]["command"], format!("touch {}", target.display()));
    let raised = p["raised"].as_i64().unwrap();
    assert_eq!(p["deadline"].as_i64().unwrap() - raised, 300_000, "{p}");
    let s = &st["sessions"][0];
    assert_eq!(
        (s["id"].as_str(), s["state"].as_str()),
        (Some(id.as_str()), Some("AwaitingApproval"))
    );
    let rid = p["requestId"].as_str().unwrap().to_owned();
    assert!(!target.exists());

    // Bad answers change nothing.
    let path = format!("/claude/sessions/{id}/permissions/{rid}");
    for (body, code) in [
        ("not json", 400),
        (r#"{"allow":true,"surprise":1}"#, 400),
        (
            &format!(r#"{{"allow":false,"message":"{}"}}"#, "x".repeat(2001)),
            400,
        ),
    ] {
        let (got, text) = http_post(&agent.addr, &path, Some(TOKEN), body).await;
        assert_eq!(got, code, "{body:.40}: {text}");
    }
    let (got, text) = http_post(
        &agent.addr,
        &format!("/claude/sessions/{id}/permissions/nope"),
        Some(TOKEN),
        r#"{"allow":true}"#,
    )
    .await;
    assert_eq!(got, 404, "{text}");
    assert!(text.contains("no_such_request"), "{text}");
    let (got, _) = http_post(
        &agent.addr,
        &format!("/claude/sessions/zz9/permissions/{rid}"),
        Some(TOKEN),
        r#"{"allow":true}"#,
    )
    .await;
    assert_eq!(got, 404);
    assert_eq!(claude_status(&agent.addr, "").await["pendingCount"], 1);

    // Allowed over REST: the pane hears it, the tool runs, the second answer is late.
    let (got, text) = http_post(&agent.addr, &path, Some(TOKEN), r#"{"allow":true}"#).await;
    assert_eq!(got, 204, "{text}");
    let resolved = c.wait_type("claude.permission.resolved").await;
    assert_eq!(
        (resolved["allowed"].as_bool(), resolved["reason"].as_str()),
        (Some(true), Some("answered"))
    );
    let (got, _) = http_post(&agent.addr, &path, Some(TOKEN), r#"{"allow":false}"#).await;
    assert_eq!(got, 404);
    let mut pane = Pane::default();
    collect_until(&mut c, &id, &mut pane, |p| p.results() == 1).await;
    assert!(target.exists(), "the command allowed over REST ran");
    let result = pane.of_type("result").next().unwrap().clone();
    let cost = result["raw"]["total_cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0, "{result}");

    let st = status_until(&agent.addr, "the turn counted", |s| {
        s["sessions"][0]["turns"] == 1 && s["state"] == "Idle"
    })
    .await;
    assert_eq!(st["pendingCount"], 0);
    assert_eq!(st["sessions"][0]["costUsd"].as_f64(), Some(cost));
    assert_eq!(st["costUsd"].as_f64(), Some(cost));
    assert!(st["lastTurnTime"].as_i64().unwrap() >= raised);
    let r = &st["resolved"][0];
    assert_eq!(
        (
            r["requestId"].as_str(),
            r["allowed"].as_bool(),
            r["reason"].as_str()
        ),
        (Some(rid.as_str()), Some(true), Some("answered"))
    );
}

#[tokio::test]
async fn a_budget_warns_at_80_percent_and_refuses_new_turns_at_100() {
    let bin = claude_bin();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace_in(&tmp);
    let usage = dispatch_model_server::Usage {
        input_tokens: 200_000,
        output_tokens: 2_000,
    };
    let turn = |t: &str| Turn {
        usage: Some(usage),
        ..Turn::text(t)
    };
    let server = ModelServer::start_local(vec![turn("One."), turn("Two."), turn("Three.")])
        .await
        .unwrap();
    // What one such turn costs, by the CLI's own reckoning (no limit yet).
    let mut agent = start_agent(&ws, &bin, &model_env(&server), &[]);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    let one = turn_cost(&turn_result(&mut c, &id, &mut pane, "first").await);
    assert!(one > 0.0);
    agent.terminate();

    // A limit 10 % above one turn: the next turn crosses 80 %, the one after
    // 100 %, and then new turns are refused; the ledger outlives a restart.
    let limit = format!("{}", one * 1.1);
    let args = ["--claude-budget-usd", limit.as_str()];
    let agent = start_agent(&ws, &bin, &model_env(&server), &args);
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    let mut pane = Pane::default();
    turn_result(&mut c, &id, &mut pane, "second").await;
    let warning = wait_notice(&mut c, &id, &mut pane, 1).await;
    assert_eq!(warning["raw"]["level"], "warning", "{warning}");
    let st = claude_status(&agent.addr, "").await;
    assert_eq!(st["budget"]["level"], "warning", "{st}");
    turn_result(&mut c, &id, &mut pane, "third").await;
    let exhausted = wait_notice(&mut c, &id, &mut pane, 2).await;
    assert_eq!(exhausted["raw"]["level"], "exhausted", "{exhausted}");
    assert!(
        exhausted["raw"]["text"]
            .as_str()
            .unwrap()
            .contains("used up")
    );
    send_prompt(&mut c, &id, "fourth").await;
    let refused = c.wait_error("budget_exhausted").await;
    assert!(
        refused["message"].as_str().unwrap().contains("budget"),
        "{refused}"
    );
    assert_eq!(server.remaining_turns(), 0);
    assert_eq!(
        server.message_requests().len(),
        3,
        "the refused turn never reached the model"
    );
    drop(c);
    drop(agent);
    let agent = start_agent(&ws, &bin, &model_env(&server), &args);
    let st = claude_status(&agent.addr, "").await;
    assert_eq!(st["budget"]["level"], "exhausted", "{st}");
    let mut c = agent.connect().await;
    let id = start_claude(&mut c, json!({})).await;
    send_prompt(&mut c, &id, "fifth").await;
    c.wait_error("budget_exhausted").await;
}

fn turn_cost(result: &Value) -> f64 {
    result["raw"]["total_cost_usd"].as_f64().unwrap()
}

async fn turn_result(c: &mut Client, id: &str, pane: &mut Pane, prompt: &str) -> Value {
    turn(c, id, pane, prompt).await
}

/// Waits for the `n`th `dispatch/budget` event of the session.
async fn wait_notice(c: &mut Client, id: &str, pane: &mut Pane, n: usize) -> Value {
    let notices = |p: &Pane| {
        p.of_type("dispatch")
            .filter(|e| e["subtype"] == "budget")
            .count()
    };
    collect_until(c, id, pane, |p| notices(p) >= n).await;
    pane.of_type("dispatch")
        .filter(|e| e["subtype"] == "budget")
        .nth(n - 1)
        .unwrap()
        .clone()
}
