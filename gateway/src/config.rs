//! Command-line flags and their environment variables, as fixed in the
//! contracts (each flag also reads an env var).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// One agent process per workspace on this machine.
    Local,
    /// `Workspace` resources in a cluster namespace, run by the operator.
    Kubernetes,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "dispatch-gateway",
    version,
    // A flag given twice (run-local.sh's default, then the user's) keeps the last.
    args_override_self = true,
    about = "Dispatch gateway: login, workspaces, WebSocket proxy to agents, web UI"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "DISPATCH_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    #[arg(long, env = "DISPATCH_BACKEND", value_enum, default_value = "local")]
    pub backend: BackendKind,

    /// Holds gateway.db, the generated access key, the session signing key and
    /// the workspaces. Default: $XDG_DATA_HOME/dispatch (~/.local/share/dispatch).
    #[arg(long, env = "DISPATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// File holding the access key of the default user `me` (the literal key
    /// may be given in env DISPATCH_KEY instead).
    #[arg(long, env = "DISPATCH_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// JSON `[{"user":"alice","key":"..."}]` for several users (keys >= 16 chars).
    #[arg(long, env = "DISPATCH_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// The web UI's build (web/dist), served at `/`.
    #[arg(long, env = "DISPATCH_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// The agent binary. Default: `dispatch-agent` next to this executable, else on PATH.
    #[arg(long, env = "DISPATCH_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,

    /// Mark the session cookie Secure even when the request did not come over
    /// TLS (set this behind a TLS-terminating proxy that sends no X-Forwarded-Proto).
    #[arg(long, env = "DISPATCH_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Proxies in front of the gateway (an ingress controller's addresses):
    /// comma-separated CIDR ranges or addresses. For requests from these, the
    /// client address (for the login rate limit and logs) is taken from
    /// X-Forwarded-For. Default: none, so that header is ignored.
    #[arg(long, env = "DISPATCH_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = crate::client_addr::parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// How long a login lasts, in seconds.
    #[arg(long, env = "DISPATCH_SESSION_TTL", default_value_t = 7 * 24 * 3600)]
    pub session_ttl: u64,

    /// File holding the key that signs login tokens (at least 32 bytes).
    /// Replicas that share it accept each other's logins. Default: a key
    /// generated once in the data dir (`session-key`).
    #[arg(long, env = "DISPATCH_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Kubernetes backend: the namespace of the Workspace resources. Default:
    /// the namespace of the gateway's service account, else `default`.
    #[arg(long, env = "DISPATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Kubernetes backend: YAML file of the Workspace spec that workspaces
    /// made from the UI get (`owner` is filled in per user). Default: an empty
    /// spec (the operator's defaults).
    #[arg(long, env = "DISPATCH_WORKSPACE_TEMPLATE")]
    pub workspace_template: Option<PathBuf>,

    /// Kubernetes backend: a ConfigMap (in --namespace) through which the
    /// replicas share logouts. Without it a logout holds on this replica only.
    #[arg(long, env = "DISPATCH_REVOCATIONS_CONFIGMAP")]
    pub revocations_configmap: Option<String>,

    /// Failed logins allowed in a burst from one client address before 429.
    #[arg(long, env = "DISPATCH_LOGIN_BURST", default_value_t = 5)]
    pub login_burst: u32,

    /// Failed logins per minute one client address regains after a burst.
    #[arg(long, env = "DISPATCH_LOGIN_PER_MINUTE", default_value_t = 5)]
    pub login_per_minute: u32,

    /// Seconds a connection has to send a request's headers; also how long
    /// an idle keep-alive connection is kept.
    #[arg(long, env = "DISPATCH_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,

    /// Longest pause, in seconds, while a request body is sent.
    #[arg(long, env = "DISPATCH_BODY_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,

    /// Open connections (WebSockets included) one client address may have;
    /// more are refused with 503. An IPv6 /64 is one address; trusted
    /// proxies are not capped. 0: no cap. Default, local backend: 1024,
    /// twice what a browser can open at all (Chrome: 256 sockets + 255
    /// WebSockets per profile), so in local mode, where every tab is
    /// 127.0.0.1, two browsers with many tabs fit. Kubernetes backend: no
    /// cap, since the gateway's peers are the ingress controller's pods
    /// (its NetworkPolicy admits nothing else), each speaking for many
    /// clients: limit connections per client in the ingress.
    #[arg(long, env = "DISPATCH_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,

    /// Web Push: file holding the VAPID private key (PKCS#8, PEM or
    /// base64url). Default: one generated once in the data dir (`vapid-key`).
    /// Replicas must share one (a Secret), since browsers subscribe to its
    /// public key.
    #[arg(long, env = "DISPATCH_VAPID_KEY_FILE")]
    pub vapid_key_file: Option<PathBuf>,

    /// Web Push: the contact push services see in the VAPID JWT (`sub`), a
    /// `mailto:` or `https:` URL.
    #[arg(
        long,
        env = "DISPATCH_VAPID_SUBJECT",
        default_value = "mailto:admin@dispatch.invalid"
    )]
    pub vapid_subject: String,

    /// Web Push: the longest a notification's Allow / Deny stays usable, in
    /// seconds (shorter when the agent denies the request sooner).
    #[arg(long, env = "DISPATCH_PUSH_ACTION_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub push_action_ttl: u64,

    /// Web Push: seconds before a waiting request is denied (the agent's
    /// --claude-permission-timeout) at which its user is reminded. 0: never.
    #[arg(long, env = "DISPATCH_PUSH_REMINDER_BEFORE", default_value_t = 120)]
    pub push_reminder_before: u64,

    /// Web Push, for tests only: accept plain http:// push endpoints on
    /// loopback (a test's own receiver). Real push services are https.
    #[arg(long, env = "DISPATCH_PUSH_ALLOW_HTTP_LOOPBACK")]
    pub push_allow_http_loopback: bool,
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        default_data_dir(
            std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }

    pub fn server_limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            body_read_timeout: Duration::from_secs(self.body_read_timeout),
            max_connections_per_address: self.max_connections_per_address.unwrap_or(
                match self.backend {
                    BackendKind::Local => 1024,
                    BackendKind::Kubernetes => 0,
                },
            ),
            uncapped: self.trusted_proxies.clone().into(),
        }
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl.max(60))
    }

    /// The agent binary: the flag, else `dispatch-agent` beside our own
    /// executable, else the bare name (looked up on PATH at spawn).
    pub fn agent_bin(&self) -> PathBuf {
        if let Some(b) = &self.agent_bin {
            return b.clone();
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
        {
            let beside = dir.join("dispatch-agent");
            if beside.is_file() {
                return beside;
            }
        }
        PathBuf::from("dispatch-agent")
    }
}

/// `$XDG_DATA_HOME/dispatch`, else `$HOME/.local/share/dispatch`, else `./.dispatch-data`.
pub fn default_data_dir(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match (xdg_data_home, home) {
        (Some(x), _) if x.is_absolute() => x.join("dispatch"),
        (_, Some(h)) => h.join(".local/share/dispatch"),
        _ => PathBuf::from(".dispatch-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_follows_xdg() {
        assert_eq!(
            default_data_dir(Some("/x".into()), Some("/h".into())),
            PathBuf::from("/x/dispatch")
        );
        // XDG says relative values are to be ignored.
        assert_eq!(
            default_data_dir(Some("rel".into()), Some("/h".into())),
            PathBuf::from("/h/.local/share/dispatch")
        );
    }

    #[test]
    fn the_connection_cap_defaults_by_backend() {
        let cap = |args: &[&str]| {
            let mut argv = vec!["dispatch-gateway"];
            argv.extend(args);
            Config::try_parse_from(argv)
                .unwrap()
                .server_limits()
                .max_connections_per_address
        };
        assert_eq!(cap(&[]), 1024);
        assert_eq!(cap(&["--backend", "kubernetes"]), 0);
        assert_eq!(cap(&["--max-connections-per-address", "7"]), 7);
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::try_parse_from(["dispatch-gateway"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.backend, BackendKind::Local);
        let c = Config::try_parse_from([
            "dispatch-gateway",
            "--listen",
            "127.0.0.1:8787",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    }
}
