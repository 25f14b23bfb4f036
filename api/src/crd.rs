//! The `Workspace` custom resource (`dispatch.dev/v1alpha1`): what a user
//! asks for (spec) and what the operator reports (status), plus the names of
//! the objects the operator makes for it, so that the gateway finds them too.
//!
//! Doc comments become the schema's descriptions (`kubectl explain workspace.spec`).
//! What a JSON schema cannot say is written as CEL rules, so that the
//! apiserver itself refuses a bad spec with a clear message.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::protocol::PermissionMode;

/// API group of the resource.
pub const GROUP: &str = "dispatch.dev";
/// Finalizer the operator puts on a Workspace only while deleting it would
/// take a claim it should keep (`retainOnDelete`) that still names it as
/// owner; otherwise deletion is garbage collection and never waits for it.
pub const FINALIZER: &str = "dispatch.dev/cleanup";
/// Label on every child: the name of the Workspace it belongs to.
pub const LABEL_WORKSPACE: &str = "dispatch.dev/workspace";
/// Label on every child: the workspace owner (so the gateway can narrow by it).
pub const LABEL_OWNER: &str = "dispatch.dev/owner";
/// Label on every child: which program manages it (for narrow watches).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "dispatch-operator";
/// Key in the token Secret that holds the agent's bearer token.
pub const TOKEN_KEY: &str = "token";
/// Port the agent listens on inside the Pod.
pub const AGENT_PORT: u16 = 8080;
/// Longest Workspace name: child names add at most 9 characters and must stay
/// DNS labels (63).
pub const MAX_NAME_LEN: usize = 54;

/// CEL: the new `storage.size` is at least the old one, or at least the size
/// the claim asks for now.
const SIZE_NEVER_SHRINKS: &str = "!has(self.spec.storage) || !has(self.spec.storage.size) || !isQuantity(self.spec.storage.size) || !has(oldSelf.spec.storage) || !has(oldSelf.spec.storage.size) || !isQuantity(oldSelf.spec.storage.size) || quantity(self.spec.storage.size).compareTo(quantity(oldSelf.spec.storage.size)) >= 0 || (has(self.status) && has(self.status.volume) && has(self.status.volume.size) && isQuantity(self.status.volume.size) && quantity(self.spec.storage.size).compareTo(quantity(self.status.volume.size)) >= 0)";

/// A Go duration with at most five digits before each unit: enough for any
/// idle timeout, and its sum never overflows (which would leave CEL with only
/// a type-conversion message).
const DURATION_PATTERN: &str = r"^([0-9]{1,5}([.][0-9]{1,9})?(ns|us|µs|ms|s|m|h))+$";

/// What the user asks for: whose workspace it is, what runs in it, how much
/// it may use, and whether it runs at all.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "dispatch.dev",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    shortname = "ws",
    status = "WorkspaceStatus",
    derive = "PartialEq",
    doc = "A Workspace: one person's isolated environment with terminals and Claude Code sessions, run as one Pod with a persistent volume.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Where the workspace stands"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner", description = "Who the workspace belongs to"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the agent answers"),
    printcolumn(name = "Claude", type_ = "string", json_path = ".status.claude.state", description = "What Claude is doing: Idle, Working, AwaitingApproval"),
    printcolumn(name = "Waiting", type_ = "integer", json_path = ".status.claude.pendingApprovals", description = "Permission requests waiting for a person"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 54 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS label (lower-case letters, digits and '-') of at most 54 characters"),
    // Shrinking is refused, except back down to what the claim itself asks
    // for: a grow the claim could not follow (its class cannot expand) can
    // then be undone without deleting the workspace.
    validation = Rule::new(SIZE_NEVER_SHRINKS).message("storage.size may grow but not shrink below the size of the workspace's volume claim (status.volume.size)")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.storage) && has(self.storage.storageClassName)) == (has(oldSelf.storage) && has(oldSelf.storage.storageClassName))").message("storage.storageClassName cannot be set or removed after creation")
)]
pub struct WorkspaceSpec {
    /// The user the workspace belongs to; the gateway shows it only to them.
    /// Letters, digits, '.', '_' and '-' (a Kubernetes label value). Cannot change.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("owner is immutable"))]
    pub owner: String,

    /// Container image of the agent. Empty: the operator's configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// The persistent volume that holds the workspace's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// CPU and memory for the workspace Pod. Unset values take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkspaceResources>,

    /// Extra environment variables for the agent and everything it starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,

    /// Environment variables whose values come from keys of Secrets in the
    /// workspace's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub secret_env: Vec<SecretEnvVar>,

    /// The Secret key that holds the Anthropic API key; given to Claude Code as ANTHROPIC_API_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_api_key: Option<SecretKeyRef>,

    /// When true the Pod is deleted and the volume kept; set it back to false to resume.
    #[serde(default)]
    pub suspended: bool,

    /// Suspend the workspace after this long without attached clients, a
    /// running Claude turn, or terminal input or output. A Go duration such as
    /// "30m" or "1h30m", at least "1s". Unset: never suspended for idleness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message("idleTimeout must be a duration such as 30m or 1h30m, with at most 5 digits before each unit"),
        validation = Rule::new(format!("!self.matches('{DURATION_PATTERN}') || duration(self) >= duration('1s')")).message("idleTimeout must be a duration of at least 1s, such as 30m or 1h30m")
    )]
    pub idle_timeout: Option<String>,

    /// Defaults for new Claude Code sessions in this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude: Option<ClaudeDefaults>,
}

/// The persistent volume that holds the workspace's files.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity such as "10Gi". May grow, not
    /// shrink (except back to the claim's own size, `status.volume.size`, when
    /// the claim could not grow). Unset: the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be a positive quantity such as 10Gi")
    )]
    pub size: Option<String>,

    /// StorageClass of the volume. Unset: the cluster's default class. Cannot
    /// change, be set or be removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName is immutable"))]
    pub storage_class_name: Option<String>,

    /// Keep the volume (and its files) when the Workspace is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
}

/// CPU and memory requests and limits of the workspace Pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || quantity(self.limits.cpu).compareTo(quantity(self.requests.cpu)) >= 0").message("resources.limits.cpu must be at least resources.requests.cpu"),
    validation = Rule::new("!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || quantity(self.limits.memory).compareTo(quantity(self.requests.memory)) >= 0").message("resources.limits.memory must be at least resources.requests.memory")
)]
pub struct WorkspaceResources {
    /// What the Pod is guaranteed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ComputeResources>,
    /// The most the Pod may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ComputeResources>,
}

/// Amounts of CPU and memory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// CPU, a Kubernetes quantity such as "500m" or "2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("cpu must be a positive quantity such as 500m or 2"))]
    pub cpu: Option<String>,
    /// Memory, a Kubernetes quantity such as "512Mi" or "2Gi".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("memory must be a positive quantity such as 512Mi or 2Gi"))]
    pub memory: Option<String>,
}

/// An environment variable with a literal value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name (letters, digits, '_'; not starting with a digit). Names
    /// starting with DISPATCH_ are reserved.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    #[x_kube(validation = Rule::new("!self.startsWith('DISPATCH_')").message("environment variable names starting with DISPATCH_ are reserved for the operator"))]
    pub name: String,
    /// The value.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// An environment variable whose value is a key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnvVar {
    /// Variable name (letters, digits, '_'; not starting with a digit). Names
    /// starting with DISPATCH_ are reserved.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    #[x_kube(validation = Rule::new("!self.startsWith('DISPATCH_')").message("environment variable names starting with DISPATCH_ are reserved for the operator"))]
    pub name: String,
    /// Which Secret key holds the value.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the workspace's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Defaults for new Claude Code sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaudeDefaults {
    /// Model name or alias, such as "sonnet" or "opus".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:\[\]-]*$")
    )]
    pub model: Option<String>,
    /// How Claude Code asks before using tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    /// A limit on what Claude may cost in this workspace per period, from
    /// the CLI's own cost reports: a warning at 80 %, new turns refused at 100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<ClaudeBudget>,
}

/// A cost limit for Claude in one workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaudeBudget {
    /// US dollars per period, such as 5 or 12.5.
    #[schemars(range(min = 0.0, max = 1_000_000_000.0))]
    pub usd: f64,
    /// The period, a Go duration of at least 1m such as "24h" or "168h". Unset: 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message("budget.period must be a duration such as 24h"),
        validation = Rule::new(format!("!self.matches('{DURATION_PATTERN}') || (duration(self) >= duration('1m') && duration(self) <= duration('8784h'))")).message("budget.period must be between 1m and 8784h (366 days)")
    )]
    pub period: Option<String>,
}

/// What Claude is doing in a workspace, from a person's point of view.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaudeState {
    /// No turn running, nothing waiting.
    Idle,
    /// A turn is running.
    Working,
    /// A permission request waits for a person.
    AwaitingApproval,
}

/// Claude's state in a running workspace (written by the operator, at a
/// bounded rate and only when it changes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaudeWorkspaceStatus {
    /// Idle, Working or AwaitingApproval (the most urgent of its sessions').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ClaudeState>,
    /// Permission requests waiting for a person.
    #[serde(default)]
    pub pending_approvals: u32,
    /// Claude sessions running.
    #[serde(default)]
    pub sessions_running: u32,
    /// When the last turn finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn_time: Option<Time>,
    /// What the CLI reported Claude cost in this agent's sessions, in US dollars.
    #[serde(default, rename = "costUSD")]
    pub cost_usd: f64,
    /// ok, warning (80 % of the budget) or exhausted (new turns refused); unset without a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// What the operator last saw of the workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// Where the workspace stands: Pending, Starting, Running, Suspended, Failed or Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkspacePhase>,
    /// Ready (the agent answers), Progressing (the operator is bringing it to
    /// the spec) and Degraded (something is wrong; the reason says what).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// URL of the agent inside the cluster (http://<pod IP>:8080), while Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of the Secret whose "token" key the agent requires as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Last time the operator saw the workspace in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Time>,
    /// The volume claim that holds the workspace's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStatus>,
    /// Claude's state while the workspace runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude: Option<ClaudeWorkspaceStatus>,
}

/// The volume claim as the operator last saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Name of the claim that holds the workspace's files: `<name>-data`, or
    /// a warm volume's own name when the Workspace took one made beforehand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub claim_name: Option<String>,
    /// UID of the claim, so that a claim made anew (its files gone) is noticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub claim_uid: Option<String>,
    /// The size the claim asks for; it lags storage.size while a resize is
    /// refused (a class that cannot expand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub size: Option<String>,
    /// The generation in which the claim was made anew after the one that
    /// held the files was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_in_generation: Option<i64>,
}

impl Workspace {
    /// `namespace/name`: how logs, metrics and the operator's own maps name it.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// Where a Workspace stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkspacePhase {
    /// Accepted; its objects are being made.
    Pending,
    /// The Pod exists and is not ready yet.
    Starting,
    /// The agent answers at the endpoint.
    Running,
    /// The Pod is gone (on request or for idleness); the volume is kept.
    Suspended,
    /// The spec cannot be carried out; see the Degraded condition.
    Failed,
    /// Being deleted.
    Terminating,
}

impl WorkspacePhase {
    /// Every phase, for metrics.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Suspended,
        Self::Failed,
        Self::Terminating,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Failed => "Failed",
            Self::Terminating => "Terminating",
        }
    }
}

impl From<WorkspacePhase> for crate::rest::WorkspacePhase {
    fn from(p: WorkspacePhase) -> Self {
        use crate::rest::WorkspacePhase as R;
        match p {
            WorkspacePhase::Pending => R::Pending,
            WorkspacePhase::Starting => R::Starting,
            WorkspacePhase::Running => R::Running,
            WorkspacePhase::Suspended => R::Suspended,
            WorkspacePhase::Failed => R::Failed,
            WorkspacePhase::Terminating => R::Terminating,
        }
    }
}

/// Names of the objects the operator makes for the Workspace `name`.
pub mod names {
    /// The Pod running the agent.
    pub fn pod(ws: &str) -> String {
        format!("ws-{ws}")
    }
    /// The Service in front of the Pod.
    pub fn service(ws: &str) -> String {
        format!("ws-{ws}")
    }
    /// The NetworkPolicy admitting only the gateway.
    pub fn network_policy(ws: &str) -> String {
        format!("ws-{ws}")
    }
    /// The PersistentVolumeClaim holding the files.
    pub fn pvc(ws: &str) -> String {
        format!("ws-{ws}-data")
    }
    /// The Secret holding the agent's token under key [`super::TOKEN_KEY`].
    pub fn token_secret(ws: &str) -> String {
        format!("ws-{ws}-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn child_names_stay_dns_labels_for_the_longest_name() {
        let longest = "a".repeat(MAX_NAME_LEN);
        for n in [
            names::pod(&longest),
            names::service(&longest),
            names::network_policy(&longest),
            names::pvc(&longest),
            names::token_secret(&longest),
        ] {
            assert!(crate::rest::is_dns1123_label(&n), "{n}");
        }
    }

    #[test]
    fn crd_has_names_subresource_columns_and_rules() {
        let crd = Workspace::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["ws".to_string()]));
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Phase", "Owner", "Ready", "Claude", "Waiting", "Age"]
        );
        let json = serde_json::to_string(&crd).unwrap();
        assert!(json.contains("owner is immutable"));
        assert!(json.contains("duration(self) >= duration('1s')"));
    }

    #[test]
    fn spec_round_trips_in_camel_case() {
        let spec: WorkspaceSpec = serde_json::from_value(serde_json::json!({
            "owner": "alice",
            "storage": {"size": "5Gi", "retainOnDelete": true},
            "idleTimeout": "30m",
            "claude": {"permissionMode": "acceptEdits"}
        }))
        .unwrap();
        assert_eq!(spec.owner, "alice");
        assert!(spec.storage.as_ref().unwrap().retain_on_delete);
        assert_eq!(
            spec.claude.unwrap().permission_mode,
            Some(PermissionMode::AcceptEdits)
        );
    }
}
