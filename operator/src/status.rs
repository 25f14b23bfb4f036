//! The status a Workspace should show, computed from what the operator
//! observed. Pure, so every phase and condition is unit-tested.

use dispatch_api::crd::{AGENT_PORT, VolumeStatus, WorkspacePhase, WorkspaceStatus, names};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::desired::Invalid;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What the operator saw in one reconcile.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub name: &'a str,
    pub generation: Option<i64>,
    pub deleting: bool,
    pub suspended: bool,
    pub invalid: Option<&'a Invalid>,
    /// The workspace Pod, if one exists.
    pub pod: Option<&'a Pod>,
    /// What is wrong though the spec is valid (a refused child, a claim being
    /// deleted, an agent refusing its token); the first one names the reason.
    pub problems: &'a [Problem],
    /// The volume claim as seen (carried over from `previous` when `None`).
    pub volume: Option<&'a VolumeStatus>,
}

/// Something wrong with a workspace whose spec is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase, for the Degraded condition and Events.
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A child refused by the apiserver.
pub const APPLY_FAILED: &str = "ApplyFailed";
/// The agent answers 401 to the token in its Secret.
pub const TOKEN_REFUSED: &str = "TokenRefused";
/// The volume claim is being deleted.
pub const VOLUME_DELETING: &str = "VolumeDeleting";
/// A new, empty claim replaced one that was deleted.
pub const VOLUME_REPLACED: &str = "VolumeReplaced";

/// Whether the Pod is up and its agent passed the readiness probe; then its IP.
pub fn ready_pod_ip(pod: &Pod) -> Option<&str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        status.pod_ip.as_deref().filter(|ip| !ip.is_empty())
    } else {
        None
    }
}

/// Whether the Pod has ended for good (it must be replaced).
pub fn pod_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

fn endpoint(ip: &str) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{AGENT_PORT}")
    } else {
        format!("http://{ip}:{AGENT_PORT}")
    }
}

/// The status to write. Conditions keep their lastTransitionTime while their
/// status does not change; `last_activity` is carried over from `previous`.
pub fn compute(
    obs: &Observed<'_>,
    previous: Option<&WorkspaceStatus>,
    now: Timestamp,
) -> WorkspaceStatus {
    let (phase, ready, progressing, degraded, ep) = decide(obs);
    let old = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let cond = |type_: &str, (status, reason, message): (bool, &str, String)| {
        let status = if status { "True" } else { "False" }.to_string();
        let last = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: obs.generation,
            last_transition_time: last,
        }
    };
    WorkspaceStatus {
        phase: Some(phase),
        conditions: vec![
            cond(READY, ready),
            cond(PROGRESSING, progressing),
            cond(DEGRADED, degraded),
        ],
        endpoint: ep,
        token_secret: Some(names::token_secret(obs.name)),
        observed_generation: obs.generation,
        last_activity: previous.and_then(|s| s.last_activity.clone()),
        volume: obs
            .volume
            .cloned()
            .or_else(|| previous.and_then(|s| s.volume.clone())),
        // Claude's state is the Claude watcher's to write while the agent
        // runs (claude_watch.rs); once it stops, there is none.
        claude: if phase == WorkspacePhase::Running {
            previous.and_then(|s| s.claude.clone())
        } else {
            None
        },
    }
}

type Cond<'a> = (bool, &'a str, String);

fn decide<'a>(
    obs: &Observed<'a>,
) -> (WorkspacePhase, Cond<'a>, Cond<'a>, Cond<'a>, Option<String>) {
    let healthy = (false, "AsExpected", String::new());
    if obs.deleting {
        return (
            WorkspacePhase::Terminating,
            (
                false,
                "Terminating",
                "the workspace is being deleted".into(),
            ),
            (
                true,
                "Terminating",
                "removing the workspace's objects".into(),
            ),
            healthy,
            None,
        );
    }
    if let Some(inv) = obs.invalid {
        return (
            WorkspacePhase::Failed,
            (false, inv.reason, inv.message.clone()),
            (false, inv.reason, "waiting for the spec to change".into()),
            (true, inv.reason, inv.message.clone()),
            None,
        );
    }
    let degraded = match obs.problems.first() {
        Some(first) => (
            true,
            first.reason,
            obs.problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => healthy,
    };
    if obs.suspended {
        let gone = obs.pod.is_none();
        return (
            WorkspacePhase::Suspended,
            (
                false,
                "Suspended",
                "the workspace is suspended; its volume is kept".into(),
            ),
            if gone {
                (false, "Suspended", String::new())
            } else {
                (true, "Suspending", "waiting for the Pod to go".into())
            },
            degraded,
            None,
        );
    }
    match obs.pod {
        None => (
            if !obs.problems.is_empty() {
                WorkspacePhase::Failed
            } else {
                WorkspacePhase::Pending
            },
            (false, "PodMissing", "the Pod does not exist yet".into()),
            (true, "Creating", "creating the workspace's objects".into()),
            degraded,
            None,
        ),
        Some(pod) => match ready_pod_ip(pod) {
            Some(ip) => (
                WorkspacePhase::Running,
                (true, "AgentReady", "the agent answers".into()),
                (false, "Running", String::new()),
                degraded,
                Some(endpoint(ip)),
            ),
            None => {
                let why = pod_wait_reason(pod);
                (
                    WorkspacePhase::Starting,
                    (false, "PodNotReady", why.clone()),
                    (true, "Starting", why),
                    degraded,
                    None,
                )
            }
        },
    }
}

fn pod_wait_reason(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "waiting for the Pod to be scheduled".into();
    };
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find_map(|w| w.reason.clone());
    match (waiting, status.phase.as_deref()) {
        (Some(reason), _) => format!("container waiting: {reason}"),
        (None, Some("Pending"))
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_none() =>
        {
            "waiting for the Pod to be scheduled".into()
        }
        (None, Some(phase)) => format!("Pod is {phase}, agent not ready yet"),
        (None, None) => "waiting for the Pod to start".into(),
    }
}

/// Whether two statuses differ in anything but condition timestamps (so an
/// unchanged status is not written again).
pub fn differs(a: &WorkspaceStatus, b: &WorkspaceStatus) -> bool {
    let running = b.phase == Some(WorkspacePhase::Running);
    let strip = |s: &WorkspaceStatus| {
        let mut s = s.clone();
        if running {
            // Not the reconcile's to write while running (see merge_patch).
            s.claude = None;
        }
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) != strip(b)
}

/// A JSON merge patch that makes the status exactly `next`: every status
/// field that `next` leaves out is set to null, so nothing stale (an endpoint
/// after a suspension) survives. A merge patch costs the apiserver far less
/// than a server-side apply, and the operator is the status's only writer.
pub fn merge_patch(next: &WorkspaceStatus) -> serde_json::Value {
    static FIELDS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        schemars::schema_for!(WorkspaceStatus)
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    });
    let mut status = serde_json::to_value(next).unwrap_or_default();
    if let Some(obj) = status.as_object_mut() {
        for f in FIELDS.iter() {
            obj.entry(f.clone()).or_insert(serde_json::Value::Null);
        }
        // While the agent runs, `claude` is the Claude watcher's: a reconcile
        // working from a cache that lags its last write must not undo it.
        if next.phase == Some(WorkspacePhase::Running) {
            obj.remove("claude");
        }
    }
    serde_json::json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_is_the_watchers_while_running_and_goes_when_it_stops() {
        let claude = dispatch_api::crd::ClaudeWorkspaceStatus {
            state: Some(dispatch_api::crd::ClaudeState::AwaitingApproval),
            pending_approvals: 1,
            ..Default::default()
        };
        let running = WorkspaceStatus {
            phase: Some(WorkspacePhase::Running),
            claude: Some(claude.clone()),
            ..Default::default()
        };
        // A reconcile never writes it while running, even from a stale cache.
        assert!(merge_patch(&running)["status"].get("claude").is_none());
        let older = WorkspaceStatus {
            claude: None,
            ..running.clone()
        };
        assert!(!differs(&running, &older));
        // Once stopped, it is cleared.
        let suspended = WorkspaceStatus {
            phase: Some(WorkspacePhase::Suspended),
            ..Default::default()
        };
        assert_eq!(
            merge_patch(&suspended)["status"]["claude"],
            serde_json::Value::Null
        );
        assert!(differs(&running, &suspended));
        // And the status digest (what marks a write as the operator's own) ignores it.
        assert_eq!(
            crate::recent::status_digest(&running),
            crate::recent::status_digest(&older)
        );
    }

    #[test]
    fn merge_patch_clears_every_field_that_is_gone() {
        let running = WorkspaceStatus {
            phase: Some(WorkspacePhase::Running),
            endpoint: Some("http://127.0.0.2:8080".into()),
            token_secret: Some("t".into()),
            observed_generation: Some(3),
            last_activity: Some(Time(Timestamp::UNIX_EPOCH)),
            ..Default::default()
        };
        let patch = merge_patch(&running);
        assert_eq!(patch["status"]["endpoint"], "http://127.0.0.2:8080");
        assert_eq!(patch["status"]["phase"], "Running");
        let suspended = WorkspaceStatus {
            phase: Some(WorkspacePhase::Suspended),
            ..Default::default()
        };
        let patch = merge_patch(&suspended);
        let status = patch["status"].as_object().expect("an object");
        for field in [
            "conditions",
            "endpoint",
            "tokenSecret",
            "observedGeneration",
            "lastActivity",
        ] {
            assert_eq!(status.get(field), Some(&serde_json::Value::Null), "{field}");
        }
        assert_eq!(status["phase"], "Suspended");
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn obs<'a>(pod: Option<&'a Pod>) -> Observed<'a> {
        Observed {
            name: "demo",
            generation: Some(3),
            deleting: false,
            suspended: false,
            invalid: None,
            pod,
            problems: &[],
            volume: None,
        }
    }

    fn cond<'a>(s: &'a WorkspaceStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    const READY_POD: &str = "metadata: {name: ws-demo}\nspec: {nodeName: local, containers: [{name: agent}]}\nstatus: {phase: Running, podIP: 127.0.0.5, conditions: [{type: Ready, status: 'True'}]}";

    #[test]
    fn ready_pod_means_running_with_endpoint() {
        let p = pod(READY_POD);
        let s = compute(&obs(Some(&p)), None, Timestamp::now());
        assert_eq!(s.phase, Some(WorkspacePhase::Running));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.5:8080"));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.token_secret.as_deref(), Some("ws-demo-token"));
    }

    #[test]
    fn unready_or_unscheduled_pod_means_starting() {
        let p = pod(&READY_POD.replace("'True'", "'False'"));
        let s = compute(&obs(Some(&p)), None, Timestamp::now());
        assert_eq!(s.phase, Some(WorkspacePhase::Starting));
        assert!(s.endpoint.is_none());
        let p = pod(
            "metadata: {name: ws-demo}\nspec: {containers: [{name: agent}]}\nstatus: {phase: Pending}",
        );
        let s = compute(&obs(Some(&p)), None, Timestamp::now());
        assert_eq!(
            cond(&s, PROGRESSING).message,
            "waiting for the Pod to be scheduled"
        );
    }

    #[test]
    fn missing_pod_pending_suspended_and_deleting() {
        assert_eq!(
            compute(&obs(None), None, Timestamp::now()).phase,
            Some(WorkspacePhase::Pending)
        );
        let s = compute(
            &Observed {
                suspended: true,
                ..obs(None)
            },
            None,
            Timestamp::now(),
        );
        assert_eq!(s.phase, Some(WorkspacePhase::Suspended));
        assert_eq!(cond(&s, PROGRESSING).status, "False");
        let p = pod(READY_POD);
        let s = compute(
            &Observed {
                suspended: true,
                ..obs(Some(&p))
            },
            None,
            Timestamp::now(),
        );
        assert_eq!(cond(&s, PROGRESSING).reason, "Suspending");
        assert!(s.endpoint.is_none());
        let s = compute(
            &Observed {
                deleting: true,
                ..obs(None)
            },
            None,
            Timestamp::now(),
        );
        assert_eq!(s.phase, Some(WorkspacePhase::Terminating));
    }

    #[test]
    fn invalid_spec_is_failed_and_degraded_with_reason() {
        let inv = Invalid {
            reason: "InvalidIdleTimeout",
            message: "bad".into(),
        };
        let s = compute(
            &Observed {
                invalid: Some(&inv),
                ..obs(None)
            },
            None,
            Timestamp::now(),
        );
        assert_eq!(s.phase, Some(WorkspacePhase::Failed));
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            ("True", "InvalidIdleTimeout", "bad")
        );
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let p = pod(READY_POD);
        let t0 = Timestamp::from_second(1_000).unwrap();
        let first = compute(&obs(Some(&p)), None, t0);
        let second = compute(&obs(Some(&p)), Some(&first), Timestamp::now());
        assert_eq!(cond(&second, READY).last_transition_time, Time(t0));
        assert!(!differs(&first, &second));
        let third = compute(&obs(None), Some(&second), Timestamp::now());
        assert_ne!(cond(&third, READY).last_transition_time, Time(t0));
        assert!(differs(&second, &third));
    }
}
