//! Pure: how a Pod's `agent` container becomes a local process — program, args, env,
//! working dir, listen address, readiness probe. No I/O; the runner fetches the Secrets and
//! ConfigMaps and prepares the volume dirs first.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Data of the Secrets and ConfigMaps a pod refers to, by name (Secret values decoded).
#[derive(Clone, Debug, Default)]
pub struct RefData {
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: HashMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What the node knows that the Pod does not say.
#[derive(Clone, Debug)]
pub struct NodeContext {
    pub node_name: String,
    pub pod_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    /// The container's program (the "image entrypoint").
    pub program: PathBuf,
    /// Env every process starts with, before the pod's own (PATH, HOME, test extras).
    pub base_env: Vec<(String, String)>,
    /// Working dir when the container sets none.
    pub default_cwd: PathBuf,
}

/// An HTTP GET readiness probe against the pod IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: String,
    pub port: u16,
    pub period_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Debug)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// `<podIP>:<containerPort>`, also given as DISPATCH_AGENT_LISTEN.
    pub listen: String,
    pub readiness: Option<HttpProbe>,
    pub restart: Restart,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("pod has no container named {0:?}")]
    NoContainer(String),
    #[error("volumeMount {mount:?} names volume {volume:?}, which the node did not prepare")]
    UnknownVolume { mount: String, volume: String },
    #[error("env {var}: {what} {name:?} not found")]
    MissingRef {
        var: String,
        what: &'static str,
        name: String,
    },
    #[error("env {var}: key {key:?} not in {what} {name:?}")]
    MissingKey {
        var: String,
        what: &'static str,
        name: String,
        key: String,
    },
    #[error("env {var}: fieldRef {path:?} is not supported by the local node")]
    UnsupportedField { var: String, path: String },
    #[error("readiness probe port {0:?} names no container port")]
    ProbePort(String),
}

/// The port the agent listens on when the container declares none.
pub const DEFAULT_PORT: u16 = 8080;

pub fn container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, PlanError> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .ok_or_else(|| PlanError::NoContainer(name.to_string()))
}

/// (mountPath, host dir) for each of the container's mounts, longest mountPath first so
/// that rewriting prefers the most specific mount.
pub fn mount_table(
    c: &Container,
    volume_dirs: &HashMap<String, PathBuf>,
) -> Result<Vec<(String, PathBuf)>, PlanError> {
    let mut table = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volume_dirs
            .get(&m.name)
            .ok_or_else(|| PlanError::UnknownVolume {
                mount: m.mount_path.clone(),
                volume: m.name.clone(),
            })?;
        let host = match m.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => base.join(sub.trim_start_matches('/')),
            _ => base.clone(),
        };
        table.push((m.mount_path.trim_end_matches('/').to_string(), host));
    }
    table.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    Ok(table)
}

/// `value` with a leading mountPath replaced by its host dir (only on a path boundary).
pub fn rewrite_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, host) in mounts {
        if mount.is_empty() {
            continue;
        }
        if value == mount {
            return host.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(mount.as_str())
            && rest.starts_with('/')
        {
            return format!("{}{rest}", host.display());
        }
    }
    value.to_string()
}

/// Kubernetes' `$(VAR)` expansion: defined vars are substituted, `$$` is a literal `$`,
/// anything else is left as written.
pub fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn lookup<'a>(
    map: &'a HashMap<String, BTreeMap<String, Vec<u8>>>,
    what: &'static str,
    var: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<&'a Vec<u8>>, PlanError> {
    let Some(data) = map.get(name) else {
        return if optional {
            Ok(None)
        } else {
            Err(PlanError::MissingRef {
                var: var.into(),
                what,
                name: name.into(),
            })
        };
    };
    match data.get(key) {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(PlanError::MissingKey {
            var: var.into(),
            what,
            name: name.into(),
            key: key.into(),
        }),
    }
}

fn field_value(pod: &Pod, ctx: &NodeContext, var: &str, path: &str) -> Result<String, PlanError> {
    let meta = &pod.metadata;
    let label = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        _ => {
            if let Some(v) = label(&meta.labels, "metadata.labels['") {
                v
            } else if let Some(v) = label(&meta.annotations, "metadata.annotations['") {
                v
            } else {
                return Err(PlanError::UnsupportedField {
                    var: var.into(),
                    path: path.into(),
                });
            }
        }
    };
    Ok(v)
}

fn env_var(
    e: &EnvVar,
    pod: &Pod,
    ctx: &NodeContext,
    refs: &RefData,
    so_far: &[(String, String)],
) -> Result<Option<String>, PlanError> {
    if let Some(v) = &e.value {
        return Ok(Some(expand(v, so_far)));
    }
    let Some(from) = &e.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        return Ok(
            lookup(&refs.secrets, "Secret", &e.name, &r.name, &r.key, optional)?
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        );
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        return Ok(lookup(
            &refs.config_maps,
            "ConfigMap",
            &e.name,
            &r.name,
            &r.key,
            optional,
        )?
        .map(|b| String::from_utf8_lossy(b).into_owned()));
    }
    if let Some(f) = &from.field_ref {
        return field_value(pod, ctx, &e.name, &f.field_path).map(Some);
    }
    // resourceFieldRef and file keys have no meaning for a local process.
    Ok(None)
}

/// The Secret and ConfigMap names `pod`'s container `name` reads through env (volumes are
/// listed by the volume preparation).
pub fn env_refs(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut cms = Vec::new();
    for e in c.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
            if let Some(r) = &from.config_map_key_ref {
                cms.push(r.name.clone());
            }
        }
    }
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
    }
    (secrets, cms)
}

/// The launch plan for container `name` of `pod`.
pub fn plan(
    pod: &Pod,
    name: &str,
    ctx: &NodeContext,
    volume_dirs: &HashMap<String, PathBuf>,
    refs: &RefData,
) -> Result<LaunchPlan, PlanError> {
    let c = container(pod, name)?;
    let mounts = mount_table(c, volume_dirs)?;
    let port = c
        .ports
        .iter()
        .flatten()
        .next()
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_PORT);
    let listen = format!("{}:{port}", ctx.pod_ip);

    let mut env: Vec<(String, String)> = ctx.base_env.clone();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    };
    set(
        &mut env,
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let (map, optional) = if let Some(r) = &f.secret_ref {
            (refs.secrets.get(&r.name), r.optional.unwrap_or(false))
        } else if let Some(r) = &f.config_map_ref {
            (refs.config_maps.get(&r.name), r.optional.unwrap_or(false))
        } else {
            (None, true)
        };
        match map {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => {
                let name = f
                    .secret_ref
                    .as_ref()
                    .map(|r| r.name.clone())
                    .or_else(|| f.config_map_ref.as_ref().map(|r| r.name.clone()))
                    .unwrap_or_default();
                return Err(PlanError::MissingRef {
                    var: "envFrom".into(),
                    what: if f.secret_ref.is_some() {
                        "Secret"
                    } else {
                        "ConfigMap"
                    },
                    name,
                });
            }
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = env_var(e, pod, ctx, refs, &env)? {
            set(&mut env, e.name.clone(), rewrite_path(&v, &mounts));
        }
    }
    // The pod asks for 0.0.0.0:<port>; on this node that is its own loopback address.
    set(&mut env, "DISPATCH_AGENT_LISTEN".into(), listen.clone());

    let args = c
        .args
        .iter()
        .flatten()
        .map(|a| rewrite_path(&expand(a, &env), &mounts))
        .collect();
    let cwd = c
        .working_dir
        .as_deref()
        .map(|w| PathBuf::from(rewrite_path(w, &mounts)))
        .unwrap_or_else(|| ctx.default_cwd.clone());

    let readiness = match c.readiness_probe.as_ref().and_then(|p| {
        p.http_get
            .as_ref()
            .map(|h| (h, p.period_seconds.unwrap_or(10)))
    }) {
        Some((h, period)) => {
            let probe_port = match &h.port {
                IntOrString::Int(n) => u16::try_from(*n).unwrap_or(port),
                IntOrString::String(s) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(s.as_str()))
                    .and_then(|p| u16::try_from(p.container_port).ok())
                    .ok_or_else(|| PlanError::ProbePort(s.clone()))?,
            };
            Some(HttpProbe {
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                port: probe_port,
                // Faster than a kubelet so tests see Ready quickly; never slower than asked.
                period_ms: (u64::try_from(period).unwrap_or(10) * 1000).min(1000),
            })
        }
        None => None,
    };
    let spec = pod.spec.as_ref();
    let restart = match spec.and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => Restart::Never,
        Some("OnFailure") => Restart::OnFailure,
        _ => Restart::Always,
    };
    let grace_seconds = spec
        .and_then(|s| s.termination_grace_period_seconds)
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(30)
        .min(10);
    Ok(LaunchPlan {
        program: ctx.program.clone(),
        args,
        env,
        cwd,
        listen,
        readiness,
        restart,
        grace_seconds,
    })
}

/// The host dir for PVC `claim` of `namespace` under the node's state dir: stable per claim
/// so the data outlives the Pod, like a real volume.
pub fn claim_dir(state: &Path, namespace: &str, claim: &str) -> PathBuf {
    state.join("claims").join(namespace).join(claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_json::from_value(serde_yaml_like(yaml)).expect("pod")
    }

    // Tests write pods as JSON to stay free of a YAML dependency.
    fn serde_yaml_like(json: &str) -> serde_json::Value {
        serde_json::from_str(json).expect("json")
    }

    fn ctx() -> NodeContext {
        NodeContext {
            node_name: "n1".into(),
            pod_ip: Ipv4Addr::new(127, 0, 0, 9),
            host_ip: Ipv4Addr::LOCALHOST,
            program: PathBuf::from("/bin/agent"),
            base_env: vec![("PATH".into(), "/usr/bin".into())],
            default_cwd: PathBuf::from("/tmp/pod"),
        }
    }

    const POD: &str = r#"{
      "metadata": {"name": "ws-a", "namespace": "team", "uid": "u1", "labels": {"app": "ws"}},
      "spec": {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 5,
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "ws-a-data"}},
                    {"name": "token", "secret": {"secretName": "ws-a-token"}}],
        "containers": [{
          "name": "agent", "image": "dispatch-agent:dev",
          "args": ["--workspace", "/workspace/root", "--other", "/workspaceX"],
          "ports": [{"name": "http", "containerPort": 8080}],
          "env": [
            {"name": "DISPATCH_AGENT_LISTEN", "value": "0.0.0.0:8080"},
            {"name": "DISPATCH_WORKSPACE", "value": "/workspace"},
            {"name": "DISPATCH_AGENT_TOKEN_FILE", "value": "/var/run/dispatch/token"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "ws-a-token", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi $(POD) $$(POD) $(NOPE)"}
          ],
          "volumeMounts": [{"name": "data", "mountPath": "/workspace"},
                           {"name": "token", "mountPath": "/var/run/dispatch", "readOnly": true}],
          "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
        }]
      }
    }"#;

    fn dirs() -> HashMap<String, PathBuf> {
        HashMap::from([
            (
                "data".to_string(),
                PathBuf::from("/h/claims/team/ws-a-data"),
            ),
            ("token".to_string(), PathBuf::from("/h/pods/u1/token")),
        ])
    }

    fn refs() -> RefData {
        let mut r = RefData::default();
        r.secrets.insert(
            "ws-a-token".into(),
            BTreeMap::from([("token".to_string(), b"s3cret".to_vec())]),
        );
        r
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn maps_env_args_mounts_and_listen_address() {
        let p = plan(&pod(POD), "agent", &ctx(), &dirs(), &refs()).expect("plan");
        assert_eq!(p.listen, "127.0.0.9:8080");
        assert_eq!(get(&p.env, "DISPATCH_AGENT_LISTEN"), Some("127.0.0.9:8080"));
        assert_eq!(
            get(&p.env, "DISPATCH_WORKSPACE"),
            Some("/h/claims/team/ws-a-data")
        );
        assert_eq!(
            get(&p.env, "DISPATCH_AGENT_TOKEN_FILE"),
            Some("/h/pods/u1/token/token")
        );
        assert_eq!(get(&p.env, "TOKEN"), Some("s3cret"));
        assert_eq!(get(&p.env, "POD"), Some("ws-a"));
        assert_eq!(get(&p.env, "APP"), Some("ws"));
        assert_eq!(get(&p.env, "GREETING"), Some("hi ws-a $(POD) $(NOPE)"));
        assert_eq!(get(&p.env, "PATH"), Some("/usr/bin"));
        assert_eq!(
            p.args,
            vec![
                "--workspace",
                "/h/claims/team/ws-a-data/root",
                "--other",
                "/workspaceX"
            ]
        );
        assert_eq!(
            p.readiness,
            Some(HttpProbe {
                path: "/readyz".into(),
                port: 8080,
                period_ms: 1000
            })
        );
        assert_eq!(p.restart, Restart::Always);
        assert_eq!(p.grace_seconds, 5);
    }

    #[test]
    fn missing_secret_is_an_error_naming_it() {
        let err =
            plan(&pod(POD), "agent", &ctx(), &dirs(), &RefData::default()).expect_err("must fail");
        assert_eq!(
            err,
            PlanError::MissingRef {
                var: "TOKEN".into(),
                what: "Secret",
                name: "ws-a-token".into()
            }
        );
    }

    #[test]
    fn unknown_container_and_volume_are_errors() {
        assert_eq!(
            plan(&pod(POD), "sidecar", &ctx(), &dirs(), &refs()).expect_err("no container"),
            PlanError::NoContainer("sidecar".into())
        );
        let mut d = dirs();
        d.remove("token");
        assert!(matches!(
            plan(&pod(POD), "agent", &ctx(), &d, &refs()),
            Err(PlanError::UnknownVolume { .. })
        ));
    }

    #[test]
    fn rewrite_respects_path_boundaries_and_prefers_longest_mount() {
        let mounts = vec![
            ("/a/b".to_string(), PathBuf::from("/x")),
            ("/a".to_string(), PathBuf::from("/y")),
        ];
        assert_eq!(rewrite_path("/a/b/c", &mounts), "/x/c");
        assert_eq!(rewrite_path("/a/bc", &mounts), "/y/bc");
        assert_eq!(rewrite_path("/a", &mounts), "/y");
        assert_eq!(rewrite_path("/ab", &mounts), "/ab");
        assert_eq!(rewrite_path("relative/a", &mounts), "relative/a");
    }

    #[test]
    fn expand_handles_edge_cases() {
        let vars = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)$(A)", &vars), "11");
        assert_eq!(expand("$", &vars), "$");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("x$y", &vars), "x$y");
        assert_eq!(expand("$$$(A)", &vars), "$1");
    }
}
