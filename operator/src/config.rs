//! Operator settings: command-line flags, each also an environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::{Args, Parser, ValueEnum};

/// Command line of `dispatch-operator`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dispatch-operator",
    version,
    about = "Reconciles Workspace resources into isolated agent pods"
)]
pub struct Cli {
    /// Address of /healthz and /metrics (port 0 picks one; the bound address is
    /// printed as `DISPATCH_OPERATOR_LISTENING <ip>:<port>` on stdout).
    #[arg(long, env = "DISPATCH_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "DISPATCH_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// How many Workspaces are reconciled at the same time.
    #[arg(long, env = "DISPATCH_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Wait this long (ms) for more changes to an object before reconciling it.
    #[arg(long, env = "DISPATCH_OPERATOR_DEBOUNCE_MS", default_value_t = 20)]
    pub debounce_ms: u64,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "DISPATCH_OPERATOR_LOG_JSON")]
    pub log_json: bool,

    #[command(flatten)]
    pub leader: LeaderArgs,

    #[command(flatten)]
    pub warm: WarmArgs,

    #[command(flatten)]
    pub workspace: WorkspaceDefaults,
}

/// Leader election through a coordination.k8s.io Lease.
#[derive(Debug, Clone, Args)]
pub struct LeaderArgs {
    /// Run without leader election (a single replica only).
    #[arg(long, env = "DISPATCH_OPERATOR_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "DISPATCH_OPERATOR_LEASE_NAME",
        default_value = "dispatch-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: the watched namespace, else `default`).
    #[arg(long, env = "DISPATCH_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a leader holds the Lease without renewing it, in seconds.
    #[arg(long, env = "DISPATCH_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u32,
    /// This replica's identity in the Lease (default: hostname and pid).
    #[arg(long, env = "DISPATCH_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
}

/// Volumes made ahead of the Workspaces that will take them (see
/// `warm_volumes`): a new Workspace then starts on a claim already bound,
/// without waiting for its volume to be provisioned.
#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// How many ready, unused claims to keep (0: none). They need a
    /// StorageClass that binds a claim when it is made (`volumeBindingMode:
    /// Immediate`): with one that waits for a Pod they would never bind.
    #[arg(long, env = "DISPATCH_OPERATOR_WARM_VOLUMES", default_value_t = 0)]
    pub warm_volumes: u16,
    /// `namespace/name` of a ConfigMap that owns the unused claims, so that
    /// deleting it (uninstalling the chart that made it) deletes them; the
    /// claims are kept in its namespace. Required when --warm-volumes > 0.
    #[arg(long, env = "DISPATCH_OPERATOR_WARM_VOLUMES_OWNER")]
    pub warm_volumes_owner: Option<String>,
}

/// What a Workspace gets when its spec does not say.
#[derive(Debug, Clone, Args)]
pub struct WorkspaceDefaults {
    /// Agent image for Workspaces that name none.
    #[arg(
        long,
        env = "DISPATCH_AGENT_IMAGE",
        default_value = "ghcr.io/dispatch-dev/dispatch-agent:latest"
    )]
    pub agent_image: String,
    /// Volume size for Workspaces that name none.
    #[arg(long, env = "DISPATCH_DEFAULT_STORAGE_SIZE", default_value = "10Gi")]
    pub storage_size: String,
    /// StorageClass for Workspaces that name none (default: the cluster's
    /// default class).
    #[arg(long, env = "DISPATCH_DEFAULT_STORAGE_CLASS", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub storage_class: Option<String>,
    #[arg(long, env = "DISPATCH_DEFAULT_CPU_REQUEST", default_value = "250m")]
    pub cpu_request: String,
    #[arg(long, env = "DISPATCH_DEFAULT_MEMORY_REQUEST", default_value = "512Mi")]
    pub memory_request: String,
    #[arg(long, env = "DISPATCH_DEFAULT_CPU_LIMIT", default_value = "2")]
    pub cpu_limit: String,
    #[arg(long, env = "DISPATCH_DEFAULT_MEMORY_LIMIT", default_value = "2Gi")]
    pub memory_limit: String,
    /// Labels of the gateway's pods, the only ones the NetworkPolicy admits
    /// (comma-separated key=value).
    #[arg(long, env = "DISPATCH_GATEWAY_POD_LABELS", default_value = "app.kubernetes.io/name=dispatch-gateway", value_parser = parse_labels)]
    pub gateway_pod_labels: BTreeMap<String, String>,
    /// Namespace of the gateway's pods (default: the workspace's own namespace).
    #[arg(long, env = "DISPATCH_GATEWAY_NAMESPACE")]
    pub gateway_namespace: Option<String>,
    /// What workspace pods may reach: `all`, `public` (DNS, and any address
    /// outside private ranges) or `none` (DNS only).
    #[arg(long, env = "DISPATCH_WORKSPACE_EGRESS", value_enum, default_value_t = Egress::All)]
    pub egress: Egress,
}

impl Default for WorkspaceDefaults {
    fn default() -> Self {
        Self {
            agent_image: "ghcr.io/dispatch-dev/dispatch-agent:latest".into(),
            storage_size: "10Gi".into(),
            storage_class: None,
            cpu_request: "250m".into(),
            memory_request: "512Mi".into(),
            cpu_limit: "2".into(),
            memory_limit: "2Gi".into(),
            gateway_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".into(),
                "dispatch-gateway".into(),
            )]),
            gateway_namespace: None,
            egress: Egress::All,
        }
    }
}

/// Egress allowed to workspace pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Egress {
    /// No egress rules: anything the cluster allows.
    All,
    /// DNS, and addresses outside private and link-local ranges.
    Public,
    /// DNS only.
    None,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("expected key=value, got {pair:?}")),
        })
        .collect::<Result<BTreeMap<_, _>, _>>()
        .and_then(|m| {
            if m.is_empty() {
                Err("at least one label is needed".into())
            } else {
                Ok(m)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_reject_garbage() {
        let m = parse_labels("a=b, c=d").unwrap();
        assert_eq!(m["a"], "b");
        assert_eq!(m["c"], "d");
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("").is_err());
    }

    #[test]
    fn defaults_match_the_flags() {
        let cli = Cli::try_parse_from(["dispatch-operator"]).unwrap();
        let d = WorkspaceDefaults::default();
        assert_eq!(cli.workspace.agent_image, d.agent_image);
        assert_eq!(cli.workspace.storage_size, d.storage_size);
        assert_eq!(cli.workspace.gateway_pod_labels, d.gateway_pod_labels);
        assert_eq!(cli.workspace.egress, d.egress);
    }
}
