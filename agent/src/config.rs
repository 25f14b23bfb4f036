//! Command-line flags, each also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use dispatch_api::protocol::PermissionMode;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "dispatch-agent",
    version,
    about = "Dispatch workspace agent: PTY and Claude sessions over a WebSocket"
)]
pub struct Config {
    /// Address to listen on. Once bound, one line `DISPATCH_AGENT_LISTENING <ip>:<port>` goes to stdout.
    #[arg(long, env = "DISPATCH_AGENT_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Workspace root (created if missing); agent state lives in `<root>/.dispatch/`.
    #[arg(long, env = "DISPATCH_WORKSPACE")]
    pub workspace: PathBuf,

    /// The workspace this agent is meant to serve (the gateway passes
    /// `<owner>/<name>`). Recorded in `.dispatch/agent.db` on first start; a
    /// later start naming another refuses to run, so a workspace directory
    /// swapped for another one is never served. Without it, no check.
    #[arg(long, env = "DISPATCH_WORKSPACE_ID")]
    pub workspace_id: Option<String>,

    /// Workspace name reported in `hello` (default: the root directory's name).
    #[arg(long, env = "DISPATCH_WORKSPACE_NAME")]
    pub name: Option<String>,

    /// File holding the bearer token clients must present. Without it, the
    /// token is taken from the DISPATCH_AGENT_TOKEN environment variable.
    #[arg(long, env = "DISPATCH_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Bytes of recent output kept in memory per session.
    #[arg(long, env = "DISPATCH_RING_BYTES", default_value_t = 2 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..=1 << 32))]
    pub ring_bytes: u64,

    /// Bytes of output kept on disk per session (older output is deleted).
    #[arg(long, env = "DISPATCH_RETENTION_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub retention_bytes: u64,

    /// Sessions that may run at once in this workspace.
    #[arg(long, env = "DISPATCH_MAX_SESSIONS", default_value_t = 32)]
    pub max_sessions: u32,

    /// Largest WebSocket message accepted from a client, in bytes.
    #[arg(long, env = "DISPATCH_MAX_FRAME_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 << 20))]
    pub max_frame_bytes: u64,

    /// Input bytes per second per session (bursts up to the same amount).
    #[arg(long, env = "DISPATCH_INPUT_RATE", default_value_t = 1024 * 1024)]
    pub input_rate: u64,

    /// Seconds between WebSocket pings to each client (0: none). They keep
    /// idle terminals open through proxies that close quiet connections, and
    /// a client silent for three intervals (no pong, nothing) is dropped.
    #[arg(long, env = "DISPATCH_PING_INTERVAL", default_value_t = 30)]
    pub ping_interval: u64,

    /// The Claude Code CLI, for Claude sessions.
    #[arg(long, env = "DISPATCH_CLAUDE_BIN", default_value = "claude")]
    pub claude_bin: String,

    /// Model for Claude sessions whose `claude.start` names none (the
    /// Workspace's `claude.model` in Kubernetes).
    #[arg(long, env = "DISPATCH_CLAUDE_MODEL", value_parser = parse_model)]
    pub claude_model: Option<String>,

    /// Permission mode for Claude sessions whose `claude.start` names none:
    /// default (or manual), acceptEdits, plan, auto, dontAsk or bypassPermissions.
    #[arg(long, env = "DISPATCH_CLAUDE_PERMISSION_MODE", value_parser = parse_permission_mode)]
    pub claude_permission_mode: Option<PermissionMode>,

    /// Seconds a Claude permission prompt waits for an answer before it is denied.
    #[arg(long, env = "DISPATCH_CLAUDE_PERMISSION_TIMEOUT", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub claude_permission_timeout: u64,

    /// Claude's cost limit for this workspace in US dollars per
    /// `--claude-budget-period` (from the CLI's own cost in its result
    /// events): a warning at 80 %, new turns refused at 100 %. None: no limit.
    #[arg(long, env = "DISPATCH_CLAUDE_BUDGET_USD", value_parser = parse_budget)]
    pub claude_budget_usd: Option<f64>,

    /// Seconds in one budget period (default a day).
    #[arg(long, env = "DISPATCH_CLAUDE_BUDGET_PERIOD", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=366 * 86_400))]
    pub claude_budget_period: u64,

    /// Ended sessions listed after a restart (the newest ones).
    #[arg(long, env = "DISPATCH_KEEP_SESSIONS", default_value_t = 200)]
    pub keep_sessions: u32,

    /// WebSocket connections served at once; one more is refused with a
    /// `rate_limited` error and closed.
    #[arg(long, env = "DISPATCH_MAX_CONNECTIONS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,

    /// Rows kept in the event log of `agent.db` (the newest).
    #[arg(long, env = "DISPATCH_EVENT_LOG_ROWS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub event_log_rows: u64,

    /// Days an event log row is kept.
    #[arg(long, env = "DISPATCH_EVENT_LOG_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub event_log_days: u32,

    /// Event log rows of each kind (attach, error, start, stop) one
    /// connection may add; what it does beyond is not logged.
    #[arg(long, env = "DISPATCH_EVENT_LOG_PER_CONNECTION", default_value_t = 100)]
    pub event_log_per_connection: u32,

    /// Run as the holder: bind the address, start the agent (these same
    /// arguments, without --hold) as a child, keep its terminals' PTYs
    /// across its crashes and restart it. Shells then outlive the agent.
    #[arg(long)]
    pub hold: bool,

    /// (Set by the holder.) The listening socket to serve, inherited.
    #[arg(long, hide = true)]
    pub listen_fd: Option<i32>,

    /// (Set by the holder.) The holder's end of the socket pair, inherited.
    #[arg(long, hide = true)]
    pub holder_fd: Option<i32>,
}

impl Config {
    pub fn event_bounds(&self) -> crate::event_log_bounds::EventBounds {
        crate::event_log_bounds::EventBounds {
            max_rows: self.event_log_rows,
            max_age_ms: i64::from(self.event_log_days) * 24 * 3600 * 1000,
            per_connection: self.event_log_per_connection,
        }
    }
}

pub(crate) const MAX_MODEL_LEN: usize = 100;

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not an amount of US dollars (0 to 1e9)")),
    }
}

/// A Claude model name as the flag and `claude.start`/`claude.configure`
/// accept it: it goes on the CLI's command line, so never an option.
pub(crate) fn valid_model(m: &str) -> bool {
    !m.is_empty()
        && !m.starts_with('-')
        && m.len() <= MAX_MODEL_LEN
        && m.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'[' | b']' | b'@')
        })
}

fn parse_model(s: &str) -> Result<String, String> {
    if valid_model(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a model name (1 to {} characters of letters, digits and -_.:/[]@)",
            MAX_MODEL_LEN
        ))
    }
}

fn parse_permission_mode(s: &str) -> Result<PermissionMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        let all: Vec<&str> = PermissionMode::ALL.iter().map(|m| m.as_cli_arg()).collect();
        format!("{s:?} is not one of {}", all.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from([&["dispatch-agent", "--workspace", "/tmp/w"], args].concat())
    }

    #[test]
    fn claude_defaults_are_checked_when_the_agent_starts() {
        let c = parse(&[
            "--claude-model",
            "claude-x",
            "--claude-permission-mode",
            "acceptEdits",
        ])
        .expect("valid defaults");
        assert_eq!(c.claude_model.as_deref(), Some("claude-x"));
        assert_eq!(c.claude_permission_mode, Some(PermissionMode::AcceptEdits));
        for (given, mode) in [
            ("dontAsk", PermissionMode::DontAsk),
            ("auto", PermissionMode::Auto),
            ("manual", PermissionMode::Default),
        ] {
            let c = parse(&["--claude-permission-mode", given]).expect("a mode the CLI has");
            assert_eq!(c.claude_permission_mode, Some(mode));
        }
        let bad_mode = parse(&["--claude-permission-mode", "yolo"]).expect_err("refused");
        assert!(
            bad_mode.to_string().contains("is not one of default"),
            "{bad_mode}"
        );
        let bad_model = parse(&["--claude-model", "--dangerously-skip-permissions"]);
        assert!(bad_model.is_err());
        let bad_model = parse(&["--claude-model", "a b"]).expect_err("refused");
        assert!(
            bad_model.to_string().contains("is not a model name"),
            "{bad_model}"
        );
    }

    #[test]
    fn model_names() {
        for ok in [
            "claude-sonnet-4-5",
            "opus",
            "claude-3-5-haiku@20241022",
            "us.anthropic.claude:1",
            "sonnet[1m]",
        ] {
            assert!(valid_model(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "--dangerously-skip-permissions",
            "-x",
            "m;rm",
            &"m".repeat(101),
        ] {
            assert!(!valid_model(bad), "{bad}");
        }
    }
}
