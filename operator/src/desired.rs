//! What should exist for a Workspace: a pure function of the Workspace, the
//! operator's defaults and the agent token. No I/O, so it is tested from YAML.

use std::collections::BTreeMap;
use std::time::Duration;

use dispatch_api::crd::{
    self, AGENT_PORT, LABEL_MANAGED_BY, LABEL_OWNER, LABEL_WORKSPACE, MANAGED_BY, StorageSpec,
    TOKEN_KEY, Workspace, names,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::config::{Egress, WorkspaceDefaults};

/// Annotation on every child: a hash of what the operator applied, so an
/// unchanged child is not applied again and a changed Pod is replaced.
pub const HASH_ANNOTATION: &str = "dispatch.dev/applied-hash";
/// Annotation on the Pod: a digest of the token its Secret held when the Pod
/// was made. The agent reads its token once, so a Pod whose digest differs
/// from the Secret's token is replaced. Not part of the hash, so that adding
/// it to Pods made by an older operator replaces none of them.
pub const TOKEN_DIGEST_ANNOTATION: &str = "dispatch.dev/token-digest";
/// Where the PVC is mounted, and the agent's workspace root.
pub const WORKSPACE_DIR: &str = "/workspace";
/// Where the token Secret is mounted.
pub const TOKEN_DIR: &str = "/var/run/dispatch/token";
/// HOME of the agent (an emptyDir; the root filesystem is read-only).
pub const HOME_DIR: &str = "/home/dispatch";
/// The non-root user and group the agent runs as.
pub const AGENT_UID: i64 = 1000;

/// Why a spec cannot be carried out; `reason` is CamelCase for conditions and Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

/// A spec that passed validation, with what was parsed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub idle_timeout: Option<Duration>,
}

/// Checks what the CRD schema cannot (or what an old CRD might have let through).
pub fn validate(ws: &Workspace) -> Result<Validated, Invalid> {
    let name = ws.name_any();
    if name.len() > crd::MAX_NAME_LEN || !dispatch_api::rest::is_dns1123_label(&name) {
        return Err(Invalid {
            reason: "InvalidName",
            message: format!(
                "name {name:?} must be a DNS label of at most {} characters",
                crd::MAX_NAME_LEN
            ),
        });
    }
    let owner = &ws.spec.owner;
    let owner_ok = !owner.is_empty()
        && owner.len() <= 63
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && owner.as_bytes()[0].is_ascii_alphanumeric()
        && owner.as_bytes()[owner.len() - 1].is_ascii_alphanumeric();
    if !owner_ok {
        return Err(Invalid {
            reason: "InvalidOwner",
            message: format!("owner {owner:?} must be a label value"),
        });
    }
    let reserved = ws
        .spec
        .env
        .iter()
        .map(|e| &e.name)
        .chain(ws.spec.secret_env.iter().map(|e| &e.name));
    for n in reserved {
        if n.starts_with("DISPATCH_") {
            return Err(Invalid {
                reason: "ReservedEnv",
                message: format!("environment variable {n} is reserved for the operator"),
            });
        }
    }
    let idle_timeout = match &ws.spec.idle_timeout {
        None => None,
        Some(s) => {
            let d: kube::core::Duration = s.parse().map_err(|e| Invalid {
                reason: "InvalidIdleTimeout",
                message: format!("idleTimeout {s:?} is not a duration: {e}"),
            })?;
            if d.is_negative() {
                return Err(Invalid {
                    reason: "InvalidIdleTimeout",
                    message: format!("idleTimeout {s:?} must not be negative"),
                });
            }
            let d: Duration = d.into();
            if d < Duration::from_secs(1) {
                return Err(Invalid {
                    reason: "InvalidIdleTimeout",
                    message: format!("idleTimeout {s:?} must be at least 1s"),
                });
            }
            Some(d)
        }
    };
    if let Some(b) = ws.spec.claude.as_ref().and_then(|c| c.budget.as_ref()) {
        if !(b.usd.is_finite() && (0.0..=1e9).contains(&b.usd)) {
            return Err(Invalid {
                reason: "InvalidBudget",
                message: format!("claude.budget.usd {} must be 0 to 1e9", b.usd),
            });
        }
        if let Some(p) = &b.period {
            let d: Option<Duration> = p
                .parse::<kube::core::Duration>()
                .ok()
                .filter(|d| !d.is_negative())
                .map(Into::into);
            if !d.is_some_and(|d| (MIN_BUDGET_PERIOD..=MAX_BUDGET_PERIOD).contains(&d)) {
                return Err(Invalid {
                    reason: "InvalidBudget",
                    message: format!(
                        "claude.budget.period {p:?} must be a duration from 1m to 8784h"
                    ),
                });
            }
        }
    }
    Ok(Validated { idle_timeout })
}

const MIN_BUDGET_PERIOD: Duration = Duration::from_secs(60);
const MAX_BUDGET_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// The budget's period (validated; a day when unset).
fn budget_period(b: &crd::ClaudeBudget) -> Duration {
    b.period
        .as_deref()
        .and_then(|p| p.parse::<kube::core::Duration>().ok())
        .filter(|d| !d.is_negative())
        .map(Into::into)
        .unwrap_or(Duration::from_secs(86_400))
        .clamp(MIN_BUDGET_PERIOD, MAX_BUDGET_PERIOD)
}

/// Everything the operator makes for one Workspace. `pod` is `None` while suspended.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub secret: Secret,
    pub pvc: PersistentVolumeClaim,
    pub pod: Option<Pod>,
    pub service: Service,
    pub network_policy: NetworkPolicy,
}

/// Labels every child carries; the Pod is selected by them.
pub fn labels(ws: &Workspace) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_WORKSPACE.to_string(), ws.name_any()),
        (LABEL_OWNER.to_string(), ws.spec.owner.clone()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            "dispatch-workspace".to_string(),
        ),
    ])
}

/// Label selector for the narrow watches of children.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

fn selector(ws: &Workspace) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_WORKSPACE.to_string(), ws.name_any()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

fn owner_ref(ws: &Workspace) -> OwnerReference {
    OwnerReference {
        api_version: Workspace::api_version(&()).into_owned(),
        kind: Workspace::kind(&()).into_owned(),
        name: ws.name_any(),
        uid: ws.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn meta(ws: &Workspace, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ws.namespace(),
        labels: Some(labels(ws)),
        owner_references: Some(vec![owner_ref(ws)]),
        ..ObjectMeta::default()
    }
}

/// Builds every child, the claim named after the Workspace. `token` is the
/// agent's bearer token (kept across reconciles).
pub fn desired(ws: &Workspace, defaults: &WorkspaceDefaults, token: &str) -> Children {
    desired_with_claim(ws, defaults, token, &names::pvc(&ws.name_any()))
}

/// The spec of a Workspace's claim: what a warm volume must match exactly to
/// be taken for it.
pub fn claim_spec(
    storage: &StorageSpec,
    defaults: &WorkspaceDefaults,
) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        storage_class_name: storage
            .storage_class_name
            .clone()
            .or_else(|| defaults.storage_class.clone()),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(
                    storage
                        .size
                        .clone()
                        .unwrap_or_else(|| defaults.storage_size.clone()),
                ),
            )])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

/// A short name for a claim spec: warm volumes carry the shape of the claims
/// they can stand in for.
pub fn claim_shape(spec: &PersistentVolumeClaimSpec) -> String {
    stable_hash(spec)
}

/// The Workspace's claim, named `claim_name`.
pub fn claim(
    ws: &Workspace,
    defaults: &WorkspaceDefaults,
    claim_name: &str,
) -> PersistentVolumeClaim {
    let storage = ws.spec.storage.clone().unwrap_or_default();
    let mut claim_meta = meta(ws, claim_name.to_string());
    if storage.retain_on_delete {
        // No owner: garbage collection leaves a claim to keep when the
        // Workspace goes, and deleting a Workspace never needs the operator.
        claim_meta.owner_references = None;
    }
    PersistentVolumeClaim {
        metadata: claim_meta,
        spec: Some(claim_spec(&storage, defaults)),
        ..PersistentVolumeClaim::default()
    }
}

/// Builds every child; the Pod mounts the claim `claim_name` (a warm volume
/// taken for the Workspace has a name of its own).
pub fn desired_with_claim(
    ws: &Workspace,
    defaults: &WorkspaceDefaults,
    token: &str,
    claim_name: &str,
) -> Children {
    let name = ws.name_any();
    let secret = Secret {
        metadata: meta(ws, names::token_secret(&name)),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    let pvc = claim(ws, defaults, claim_name);
    let service = Service {
        metadata: meta(ws, names::service(&name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            // Headless: the gateway dials the Pod IP from the status, so a
            // virtual IP per workspace would only use up the Service range and
            // add proxy rules on every node. DNS still names the workspace.
            cluster_ip: Some("None".into()),
            selector: Some(selector(ws)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(AGENT_PORT),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let network_policy = network_policy(ws, defaults);
    let pod = (!ws.spec.suspended).then(|| pod(ws, defaults, claim_name));
    let mut children = Children {
        secret,
        pvc,
        pod,
        service,
        network_policy,
    };
    stamp_hashes(&mut children);
    if let Some(pod) = children.pod.as_mut() {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(TOKEN_DIGEST_ANNOTATION.into(), token_digest(token));
    }
    children
}

/// A digest of the token that says whether two tokens differ and nothing
/// about the token (the first 16 bytes of its SHA-256, hex).
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..16])
}

/// The token digest a Pod was made with, if it says.
pub fn pod_token_digest(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(TOKEN_DIGEST_ANNOTATION)
        .map(String::as_str)
}

fn network_policy(ws: &Workspace, defaults: &WorkspaceDefaults) -> NetworkPolicy {
    let gateway = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(defaults.gateway_pod_labels.clone()),
            ..LabelSelector::default()
        }),
        namespace_selector: defaults.gateway_namespace.as_ref().map(|ns| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ns.clone(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let tcp = |port: i32| NetworkPolicyPort {
        protocol: Some("TCP".into()),
        port: Some(IntOrString::Int(port)),
        ..NetworkPolicyPort::default()
    };
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![
            NetworkPolicyPort {
                protocol: Some("UDP".into()),
                port: Some(IntOrString::Int(53)),
                ..Default::default()
            },
            tcp(53),
        ]),
    };
    let (policy_types, egress) = match defaults.egress {
        Egress::All => (vec!["Ingress".to_string()], None),
        Egress::None => (
            vec!["Ingress".to_string(), "Egress".to_string()],
            Some(vec![dns]),
        ),
        Egress::Public => (
            vec!["Ingress".to_string(), "Egress".to_string()],
            Some(vec![
                dns,
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: "0.0.0.0/0".into(),
                            except: Some(
                                [
                                    "10.0.0.0/8",
                                    "172.16.0.0/12",
                                    "192.168.0.0/16",
                                    "169.254.0.0/16",
                                    "100.64.0.0/10",
                                ]
                                .map(String::from)
                                .to_vec(),
                            ),
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: None,
                },
            ]),
        ),
    };
    NetworkPolicy {
        metadata: meta(ws, names::network_policy(&ws.name_any())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(ws)),
                ..LabelSelector::default()
            }),
            policy_types: Some(policy_types),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![gateway]),
                ports: Some(vec![tcp(i32::from(AGENT_PORT))]),
            }]),
            egress,
        }),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The agent's environment: the operator's variables, then the user's (a
/// later one of the same name replaces an earlier one; server-side apply keys
/// env by name, so names must be unique).
fn pod_env(ws: &Workspace) -> Vec<EnvVar> {
    let name = ws.name_any();
    let mut out = vec![
        env("DISPATCH_AGENT_LISTEN", format!("0.0.0.0:{AGENT_PORT}")),
        env("DISPATCH_WORKSPACE", WORKSPACE_DIR),
        env(
            "DISPATCH_AGENT_TOKEN_FILE",
            format!("{TOKEN_DIR}/{TOKEN_KEY}"),
        ),
        // The agent records it in its state on first start and refuses a volume that
        // holds another workspace's state.
        env(
            "DISPATCH_WORKSPACE_ID",
            format!("{}/{name}", ws.namespace().unwrap_or_default()),
        ),
        env("DISPATCH_WORKSPACE_NAME", name),
        env("HOME", HOME_DIR),
        env("TMPDIR", "/tmp"),
        // Claude Code keeps its transcripts here: on the volume, so they survive a suspend.
        env("CLAUDE_CONFIG_DIR", format!("{WORKSPACE_DIR}/.claude")),
    ];
    if let Some(claude) = &ws.spec.claude {
        if let Some(model) = &claude.model {
            out.push(env("DISPATCH_CLAUDE_MODEL", model.clone()));
        }
        if let Some(mode) = claude.permission_mode {
            out.push(env("DISPATCH_CLAUDE_PERMISSION_MODE", mode.as_cli_arg()));
        }
        if let Some(b) = &claude.budget {
            out.push(env("DISPATCH_CLAUDE_BUDGET_USD", b.usd.to_string()));
            out.push(env(
                "DISPATCH_CLAUDE_BUDGET_PERIOD",
                budget_period(b).as_secs().to_string(),
            ));
        }
    }
    if let Some(key) = &ws.spec.anthropic_api_key {
        out.push(secret_env("ANTHROPIC_API_KEY", &key.name, &key.key));
    }
    let user = ws.spec.env.iter().map(|e| env(&e.name, e.value.clone()));
    let user_secret = ws
        .spec
        .secret_env
        .iter()
        .map(|e| secret_env(&e.name, &e.secret_key_ref.name, &e.secret_key_ref.key));
    for var in user.chain(user_secret) {
        if var.name.starts_with("DISPATCH_") {
            continue;
        }
        match out.iter_mut().find(|v| v.name == var.name) {
            Some(existing) => *existing = var,
            None => out.push(var),
        }
    }
    out
}

fn resources(ws: &Workspace, d: &WorkspaceDefaults) -> ResourceRequirements {
    let spec = ws.spec.resources.clone().unwrap_or_default();
    let req = spec.requests.unwrap_or_default();
    let lim = spec.limits.unwrap_or_default();
    let pair = |cpu: Option<String>, dcpu: &str, mem: Option<String>, dmem: &str| {
        BTreeMap::from([
            (
                "cpu".to_string(),
                Quantity(cpu.unwrap_or_else(|| dcpu.to_string())),
            ),
            (
                "memory".to_string(),
                Quantity(mem.unwrap_or_else(|| dmem.to_string())),
            ),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(req.cpu, &d.cpu_request, req.memory, &d.memory_request)),
        limits: Some(pair(lim.cpu, &d.cpu_limit, lim.memory, &d.memory_limit)),
        ..ResourceRequirements::default()
    }
}

fn pod(ws: &Workspace, d: &WorkspaceDefaults, claim_name: &str) -> Pod {
    let name = ws.name_any();
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let empty_dir = |volume: &str, limit: &str| Volume {
        name: volume.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(limit.into())),
            ..Default::default()
        }),
        ..Volume::default()
    };
    let seccomp = SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    };
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let container = Container {
        name: "agent".into(),
        image: Some(
            ws.spec
                .image
                .clone()
                .unwrap_or_else(|| d.agent_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(AGENT_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(pod_env(ws)),
        resources: Some(resources(ws, d)),
        volume_mounts: Some(vec![
            mount("workspace", WORKSPACE_DIR, false),
            mount("token", TOKEN_DIR, true),
            mount("tmp", "/tmp", false),
            mount("home", HOME_DIR, false),
        ]),
        // Ready is what a person waits for after `kubectl apply` (the gateway connects only to
        // a ready agent), and it lands on the first probe tick after the agent listens: every
        // second, the kubelet's finest step, not the default ten.
        readiness_probe: Some(probe("/readyz", 1, 3)),
        liveness_probe: Some(probe("/healthz", 10, 6)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(seccomp.clone()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Pod {
        metadata: meta(ws, names::pod(&name)),
        spec: Some(PodSpec {
            containers: vec![container],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // The pod's pause container becomes PID 1 and reaps what terminals
            // leave behind (a daemon whose parent exited). The agent as PID 1
            // would collect only its own children, leaving zombies to pile up
            // for the workspace's life; reaping every pid itself would race
            // the PTY library's wait for a shell's exit status.
            share_process_namespace: Some(true),
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(10),
            hostname: Some(names::pod(&name)),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(AGENT_UID),
                run_as_group: Some(AGENT_UID),
                fs_group: Some(AGENT_UID),
                seccomp_profile: Some(seccomp),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "workspace".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name.to_string(),
                        read_only: Some(false),
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "token".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(names::token_secret(&name)),
                        default_mode: Some(0o440),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                empty_dir("tmp", "1Gi"),
                empty_dir("home", "1Gi"),
            ]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// FNV-1a: a hash that stays the same across builds and Rust versions, so an
/// operator upgrade does not replace every Pod.
fn stable_hash(value: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn stamp(meta: &mut ObjectMeta, hash: String) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_ANNOTATION.into(), hash);
}

fn stamp_hashes(c: &mut Children) {
    let h = stable_hash(&c.secret);
    stamp(&mut c.secret.metadata, h);
    let h = stable_hash(&c.pvc);
    stamp(&mut c.pvc.metadata, h);
    let h = stable_hash(&c.service);
    stamp(&mut c.service.metadata, h);
    let h = stable_hash(&c.network_policy);
    stamp(&mut c.network_policy.metadata, h);
    if let Some(pod) = c.pod.as_mut() {
        let h = stable_hash(&*pod);
        stamp(&mut pod.metadata, h);
    }
}

/// The hash annotation of an object, if any.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(HASH_ANNOTATION)
        .map(String::as_str)
}

/// A fresh random token for a new workspace: 32 bytes, hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(yaml: &str) -> Workspace {
        let mut ws: Workspace = serde_yaml::from_str(yaml).unwrap();
        ws.metadata.uid = Some("uid-1".into());
        ws
    }

    const MINIMAL: &str = "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {name: demo, namespace: team}\nspec: {owner: alice}\n";

    #[test]
    fn minimal_workspace_gets_every_child_owned_and_labelled() {
        let w = ws(MINIMAL);
        let c = desired(&w, &WorkspaceDefaults::default(), "tok");
        let metas = [
            &c.secret.metadata,
            &c.pvc.metadata,
            &c.pod.as_ref().unwrap().metadata,
            &c.service.metadata,
            &c.network_policy.metadata,
        ];
        for m in metas {
            let o = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
                ("Workspace", "demo", "uid-1")
            );
            assert_eq!(o.controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("team"));
            assert_eq!(m.labels.as_ref().unwrap()[LABEL_WORKSPACE], "demo");
            assert!(applied_hash(m).is_some());
        }
        assert_eq!(c.secret.data.as_ref().unwrap()[TOKEN_KEY].0, b"tok");
    }

    #[test]
    fn the_agent_is_told_which_workspace_its_volume_belongs_to() {
        let c = desired(&ws(MINIMAL), &WorkspaceDefaults::default(), "tok");
        let spec = c.pod.unwrap().spec.unwrap();
        let env = spec.containers[0].env.as_ref().unwrap();
        let id = env.iter().find(|e| e.name == "DISPATCH_WORKSPACE_ID");
        assert_eq!(id.and_then(|e| e.value.as_deref()), Some("team/demo"));
    }

    #[test]
    fn orphaned_processes_are_reaped_by_the_pods_pid_1_not_the_agent() {
        let c = desired(&ws(MINIMAL), &WorkspaceDefaults::default(), "tok");
        let spec = c.pod.unwrap().spec.unwrap();
        assert_eq!(spec.share_process_namespace, Some(true));
        assert_eq!(
            spec.containers.len(),
            1,
            "nothing else shares the namespace"
        );
    }

    #[test]
    fn a_claim_to_keep_has_no_owner_to_be_collected_with() {
        let w = ws(&MINIMAL.replace(
            "{owner: alice}",
            "{owner: alice, storage: {retainOnDelete: true}}",
        ));
        let c = desired(&w, &WorkspaceDefaults::default(), "tok");
        assert!(c.pvc.metadata.owner_references.is_none());
        assert!(c.pod.unwrap().metadata.owner_references.is_some());
    }

    #[test]
    fn a_budget_reaches_the_agent_and_bad_ones_are_refused() {
        let budget = |b: &str| {
            ws(&MINIMAL.replace(
                "{owner: alice}",
                &format!("{{owner: alice, claude: {{budget: {b}}}}}"),
            ))
        };
        let d = WorkspaceDefaults::default();
        let pod = desired(&budget("{usd: 2.5, period: 1h}"), &d, "tok")
            .pod
            .unwrap();
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let val = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(val("DISPATCH_CLAUDE_BUDGET_USD").as_deref(), Some("2.5"));
        assert_eq!(
            val("DISPATCH_CLAUDE_BUDGET_PERIOD").as_deref(),
            Some("3600")
        );
        let pod = desired(&budget("{usd: 1}"), &d, "tok").pod.unwrap();
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(
            env.iter().any(|e| e.name == "DISPATCH_CLAUDE_BUDGET_PERIOD"
                && e.value.as_deref() == Some("86400"))
        );
        for bad in [
            "{usd: -1}",
            "{usd: 1, period: 10s}",
            "{usd: 1, period: nonsense}",
            "{usd: 1, period: 9000h}",
        ] {
            assert_eq!(
                validate(&budget(bad)).unwrap_err().reason,
                "InvalidBudget",
                "{bad}"
            );
        }
        assert!(validate(&budget("{usd: 0, period: 1m}")).is_ok());
    }

    #[test]
    fn suspended_workspace_has_no_pod_but_keeps_the_volume() {
        let w = ws(&MINIMAL.replace("{owner: alice}", "{owner: alice, suspended: true}"));
        let c = desired(&w, &WorkspaceDefaults::default(), "tok");
        assert!(c.pod.is_none());
        assert_eq!(c.pvc.metadata.name.as_deref(), Some("ws-demo-data"));
    }

    #[test]
    fn same_input_same_hash_changed_spec_new_pod_hash() {
        let d = WorkspaceDefaults::default();
        let a = desired(&ws(MINIMAL), &d, "tok");
        let b = desired(&ws(MINIMAL), &d, "tok");
        assert_eq!(a, b);
        let c = desired(
            &ws(&MINIMAL.replace("{owner: alice}", "{owner: alice, image: other:1}")),
            &d,
            "tok",
        );
        assert_ne!(
            applied_hash(&a.pod.unwrap().metadata),
            applied_hash(&c.pod.unwrap().metadata)
        );
    }

    #[test]
    fn a_new_token_changes_the_pods_digest_not_its_hash() {
        let d = WorkspaceDefaults::default();
        let a = desired(&ws(MINIMAL), &d, "tok").pod.unwrap();
        let b = desired(&ws(MINIMAL), &d, "other").pod.unwrap();
        assert_eq!(applied_hash(&a.metadata), applied_hash(&b.metadata));
        assert_ne!(pod_token_digest(&a.metadata), pod_token_digest(&b.metadata));
        assert_eq!(
            pod_token_digest(&a.metadata).map(str::len),
            Some(32),
            "a digest, not the token"
        );
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn validation_rejects_what_the_schema_might_miss() {
        let bad_timeout =
            ws(&MINIMAL.replace("{owner: alice}", "{owner: alice, idleTimeout: 'soon'}"));
        assert_eq!(
            validate(&bad_timeout).unwrap_err().reason,
            "InvalidIdleTimeout"
        );
        let tiny = ws(&MINIMAL.replace("{owner: alice}", "{owner: alice, idleTimeout: 10ms}"));
        assert_eq!(validate(&tiny).unwrap_err().reason, "InvalidIdleTimeout");
        let reserved = ws(&MINIMAL.replace(
            "{owner: alice}",
            "{owner: alice, env: [{name: DISPATCH_X, value: y}]}",
        ));
        assert_eq!(validate(&reserved).unwrap_err().reason, "ReservedEnv");
        let long_name = ws(&MINIMAL.replace("name: demo", &format!("name: {}", "a".repeat(60))));
        assert_eq!(validate(&long_name).unwrap_err().reason, "InvalidName");
        let bad_owner = ws(&MINIMAL.replace("owner: alice", "owner: '-x'"));
        assert_eq!(validate(&bad_owner).unwrap_err().reason, "InvalidOwner");
        let ok = ws(&MINIMAL.replace("{owner: alice}", "{owner: alice, idleTimeout: 1h30m}"));
        assert_eq!(
            validate(&ok).unwrap().idle_timeout,
            Some(Duration::from_secs(5400))
        );
    }
}
