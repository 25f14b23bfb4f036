//! Launching the Claude Code CLI: its command line and environment (pure,
//! tested), the lines written to its stdin, and the spawn itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use dispatch_api::protocol::PermissionMode;
use serde_json::{Value, json};

/// Variables of the agent's own that the CLI (and every tool it runs) must
/// not see.
const WITHHELD_ENV: &[&str] = &["DISPATCH_AGENT_TOKEN", "DISPATCH_AGENT_TOKEN_FILE"];

/// Variables that give the CLI credentials.
pub const CREDENTIAL_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_AUTH_TOKEN",
];

/// Which conversation the process carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A new one with this id (`--session-id`), so it is known before the
    /// CLI says anything.
    New(String),
    /// Continue a past one (`--resume=<id>`); it keeps its id.
    Resume(String),
}

impl Conversation {
    pub fn id(&self) -> &str {
        match self {
            Conversation::New(id) | Conversation::Resume(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub bin: PathBuf,
    pub cwd: PathBuf,
    /// `CLAUDE_CONFIG_DIR`: inside the workspace, so transcripts persist with it.
    pub config_dir: PathBuf,
    pub conversation: Conversation,
    pub model: Option<String>,
    pub permission_mode: Option<PermissionMode>,
    /// The Dispatch session, exported to the CLI's tools as `DISPATCH_SESSION_ID`.
    pub session_id: String,
}

pub fn args(spec: &LaunchSpec) -> Vec<String> {
    let mut a: Vec<String> = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-prompt-tool",
        "stdio",
        // Echo the user's messages, so the event log holds both sides.
        "--replay-user-messages",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    match &spec.conversation {
        Conversation::New(id) => {
            a.push("--session-id".into());
            a.push(id.clone());
        }
        Conversation::Resume(id) => a.push(format!("--resume={id}")),
    }
    if let Some(m) = &spec.model {
        a.push("--model".into());
        a.push(m.clone());
    }
    if let Some(p) = spec.permission_mode {
        a.push("--permission-mode".into());
        a.push(p.as_cli_arg().into());
    }
    a
}

/// The CLI's environment: the agent's own (so PATH, HOME, credentials and
/// `ANTHROPIC_BASE_URL` pass through) minus the agent's secrets, plus the
/// config dir inside the workspace and no non-essential network traffic.
pub fn env<I: IntoIterator<Item = (String, String)>>(
    spec: &LaunchSpec,
    agent_env: I,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = agent_env
        .into_iter()
        .filter(|(k, _)| !WITHHELD_ENV.contains(&k.as_str()))
        .collect();
    env.insert(
        "CLAUDE_CONFIG_DIR".into(),
        spec.config_dir.to_string_lossy().into_owned(),
    );
    env.entry("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into())
        .or_insert_with(|| "1".into());
    env.insert("DISPATCH_SESSION_ID".into(), spec.session_id.clone());
    env
}

/// Whether the CLI has some way to authenticate: a credential in the
/// environment, or a login stored in its config dir (an account login's
/// `.credentials.json`, or an API key the CLI keeps in `.claude.json`), made
/// with `claude` in any terminal of the workspace.
pub fn has_credentials(env: &BTreeMap<String, String>, config_dir: &Path) -> bool {
    CREDENTIAL_ENV
        .iter()
        .any(|k| env.get(*k).is_some_and(|v| !v.trim().is_empty()))
        || config_dir.join(".credentials.json").is_file()
        || stored_api_key(&config_dir.join(".claude.json"))
}

/// Largest `.claude.json` read for a stored key (the CLI's own state file).
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

fn stored_api_key(path: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut text = String::new();
    if f.take(MAX_CONFIG_BYTES).read_to_string(&mut text).is_err() {
        return false;
    }
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("primaryApiKey")?
                .as_str()
                .map(|k| !k.trim().is_empty())
        })
        .unwrap_or(false)
}

/// One user turn on stdin.
pub fn user_message(text: &str) -> Value {
    json!({"type": "user", "message": {"role": "user", "content": text}})
}

/// Stops the running turn; the CLI answers with a `control_response`.
pub fn interrupt_request(request_id: &str) -> Value {
    json!({"type": "control_request", "request_id": request_id,
           "request": {"subtype": "interrupt"}})
}

/// Switches the running CLI's permission mode (its `set_permission_mode`
/// control request; the success response carries the mode now in force).
pub fn set_permission_mode_request(request_id: &str, mode: PermissionMode) -> Value {
    json!({"type": "control_request", "request_id": request_id,
           "request": {"subtype": "set_permission_mode", "mode": mode.as_cli_arg()}})
}

/// Switches the running CLI's model for the next turns.
pub fn set_model_request(request_id: &str, model: &str) -> Value {
    json!({"type": "control_request", "request_id": request_id,
           "request": {"subtype": "set_model", "model": model}})
}

/// The answer to a control request Dispatch does not handle, so the CLI
/// does not wait for one forever.
pub fn unsupported_response(request_id: &str, subtype: &str) -> Value {
    json!({"type": "control_response",
           "response": {"subtype": "error", "request_id": request_id,
                        "error": format!("Dispatch does not handle control requests of subtype {subtype:?}")}})
}

/// Serialised as one stdin line.
pub fn line(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// `bin` as a path to run: as given when it names a path, else looked up
/// on PATH. None when there is no such executable file.
pub fn resolve_bin(bin: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if bin.is_empty() {
        return None;
    }
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var?)
        .map(|d| d.join(bin))
        .find(|p| executable(p))
}

/// Starts the CLI in its own session (and so its own process group), with
/// all three stdio streams piped.
pub fn spawn(
    spec: &LaunchSpec,
    env: &BTreeMap<String, String>,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&spec.bin);
    cmd.args(args(spec))
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(conv: Conversation) -> LaunchSpec {
        LaunchSpec {
            bin: "/bin/claude".into(),
            cwd: "/ws".into(),
            config_dir: "/ws/.dispatch/claude".into(),
            conversation: conv,
            model: None,
            permission_mode: None,
            session_id: "c1".into(),
        }
    }

    #[test]
    fn command_line_for_new_and_resumed_conversations() {
        let a = args(&spec(Conversation::New("u-1".into())));
        assert_eq!(
            a[..10],
            [
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--permission-prompt-tool",
                "stdio",
                "--replay-user-messages"
            ]
        );
        assert_eq!(a[10..], ["--session-id", "u-1"]);
        let mut s = spec(Conversation::Resume("abc".into()));
        s.model = Some("claude-x".into());
        s.permission_mode = Some(PermissionMode::AcceptEdits);
        let a = args(&s);
        assert_eq!(
            a[10..],
            [
                "--resume=abc",
                "--model",
                "claude-x",
                "--permission-mode",
                "acceptEdits"
            ]
        );
    }

    #[test]
    fn environment_passes_credentials_and_withholds_the_agent_token() {
        let agent = [
            ("PATH", "/usr/bin"),
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("DISPATCH_AGENT_TOKEN", "secret"),
            ("DISPATCH_AGENT_TOKEN_FILE", "/t"),
            ("CLAUDE_CONFIG_DIR", "/elsewhere"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let e = env(&spec(Conversation::New("u".into())), agent);
        assert_eq!(e["ANTHROPIC_API_KEY"], "k");
        assert_eq!(e["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
        assert_eq!(e["CLAUDE_CONFIG_DIR"], "/ws/.dispatch/claude");
        assert_eq!(e["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
        assert_eq!(e["DISPATCH_SESSION_ID"], "c1");
        assert!(!e.contains_key("DISPATCH_AGENT_TOKEN"));
        assert!(!e.contains_key("DISPATCH_AGENT_TOKEN_FILE"));
    }

    #[test]
    fn credentials_from_env_or_a_stored_login() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = BTreeMap::new();
        assert!(!has_credentials(&e, tmp.path()));
        e.insert("ANTHROPIC_API_KEY".to_owned(), "  ".to_owned());
        assert!(!has_credentials(&e, tmp.path()));
        e.insert("CLAUDE_CODE_OAUTH_TOKEN".to_owned(), "t".to_owned());
        assert!(has_credentials(&e, tmp.path()));
        std::fs::write(tmp.path().join(".credentials.json"), "{}").unwrap();
        assert!(has_credentials(&BTreeMap::new(), tmp.path()));

        // An API key stored by the CLI's login in .claude.json counts; its other state does not.
        let other = tempfile::tempdir().unwrap();
        let cfg = other.path().join(".claude.json");
        std::fs::write(&cfg, r#"{"numStartups": 3}"#).unwrap();
        assert!(!has_credentials(&BTreeMap::new(), other.path()));
        std::fs::write(&cfg, "{not json").unwrap();
        assert!(!has_credentials(&BTreeMap::new(), other.path()));
        std::fs::write(&cfg, r#"{"primaryApiKey": "sk-ant-x"}"#).unwrap();
        assert!(has_credentials(&BTreeMap::new(), other.path()));
    }

    #[test]
    fn stdin_lines() {
        assert_eq!(
            line(&user_message("hi\nthere")),
            b"{\"message\":{\"content\":\"hi\\nthere\",\"role\":\"user\"},\"type\":\"user\"}\n"
        );
        let i = interrupt_request("int-1");
        assert_eq!(i["request"]["subtype"], "interrupt");
        let u = unsupported_response("r", "hook_callback");
        assert_eq!(u["response"]["subtype"], "error");
        assert_eq!(u["response"]["request_id"], "r");
    }

    #[test]
    fn resolves_the_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("claude");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        assert_eq!(
            resolve_bin("claude", Some(tmp.path().as_os_str())),
            None,
            "not executable"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            resolve_bin("claude", Some(tmp.path().as_os_str())),
            Some(exe.clone())
        );
        assert_eq!(resolve_bin(exe.to_str().unwrap(), None), Some(exe));
        assert_eq!(resolve_bin("claude", None), None);
        assert_eq!(resolve_bin("/nonexistent/claude", None), None);
        assert_eq!(resolve_bin("", None), None);
    }
}
