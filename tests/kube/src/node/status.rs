//! Pure: the Pod status a kubelet would report for what the local node observed.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The agent container's state as the node sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentState {
    /// Not started (yet or again): reason like `ContainerCreating`, `CreateContainerConfigError`, `CrashLoopBackOff`.
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Timestamp,
        ready: bool,
    },
    Terminated {
        exit_code: i32,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub pod_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    pub start_time: Timestamp,
    pub state: AgentState,
    pub restart_count: i32,
    pub last_terminated: Option<(i32, Option<Timestamp>, Timestamp)>,
    /// Set once the pod will not run again (restartPolicy says so).
    pub terminal: bool,
}

/// Waiting reason for containers other than the agent, which this node does not run.
pub const NOT_RUN_REASON: &str = "NotRunByLocalNode";

fn terminated(exit_code: i32, started: Option<Timestamp>, finished: Timestamp) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            started_at: started.map(Time),
            finished_at: Some(Time(finished)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The full `status` for `pod` whose container `agent` is in `obs`, keeping the
/// lastTransitionTime of conditions whose status did not change.
pub fn pod_status(pod: &Pod, agent: &str, obs: &Observed, now: Timestamp) -> PodStatus {
    let ready = matches!(obs.state, AgentState::Running { ready: true, .. });
    let phase = match (&obs.state, obs.terminal) {
        (AgentState::Terminated { exit_code: 0, .. }, true) => "Succeeded",
        (AgentState::Terminated { .. }, true) => "Failed",
        (AgentState::Running { .. }, _) => "Running",
        // Restarting after a crash: a kubelet keeps the phase Running.
        (_, _) if obs.restart_count > 0 => "Running",
        _ => "Pending",
    };
    let prior = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let cond = |type_: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        let since = prior
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let statuses = containers
        .iter()
        .map(|c| {
            if c.name != agent {
                return ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(NOT_RUN_REASON.into()),
                            message: Some(
                                "the local test node runs only the agent container".into(),
                            ),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
            }
            let state = match &obs.state {
                AgentState::Waiting { reason, message } => ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: Some(message.clone()),
                    }),
                    ..Default::default()
                },
                AgentState::Running { started_at, .. } => ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(*started_at)),
                    }),
                    ..Default::default()
                },
                AgentState::Terminated {
                    exit_code,
                    started_at,
                    finished_at,
                } => terminated(*exit_code, *started_at, *finished_at),
            };
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: Some(format!(
                    "local://{}",
                    pod.metadata.uid.as_deref().unwrap_or("")
                )),
                ready: c.name == agent && ready,
                started: Some(matches!(obs.state, AgentState::Running { .. })),
                restart_count: obs.restart_count,
                state: Some(state),
                last_state: obs
                    .last_terminated
                    .map(|(code, s, f)| terminated(code, s, f)),
                ..Default::default()
            }
        })
        .collect::<Vec<_>>();
    let all_ready = ready && containers.iter().all(|c| c.name == agent);
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(obs.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: obs.host_ip.to_string(),
        }]),
        pod_ip: Some(obs.pod_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: obs.pod_ip.to_string(),
        }]),
        start_time: Some(Time(obs.start_time)),
        conditions: Some(vec![
            cond("PodReadyToStartContainers", true),
            cond("Initialized", true),
            cond("Ready", all_ready),
            cond("ContainersReady", all_ready),
            cond("PodScheduled", true),
        ]),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: &[&str]) -> Pod {
        let cs: Vec<serde_json::Value> = containers
            .iter()
            .map(|n| serde_json::json!({"name": n, "image": "img"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": cs}
        }))
        .expect("pod")
    }

    fn obs(state: AgentState) -> Observed {
        Observed {
            pod_ip: Ipv4Addr::new(127, 0, 0, 2),
            host_ip: Ipv4Addr::LOCALHOST,
            start_time: Timestamp::UNIX_EPOCH,
            state,
            restart_count: 0,
            last_terminated: None,
            terminal: false,
        }
    }

    fn cond(s: &PodStatus, t: &str) -> String {
        s.conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn running_and_ready_agent_makes_a_ready_running_pod() {
        let s = pod_status(
            &pod(&["agent"]),
            "agent",
            &obs(AgentState::Running {
                started_at: Timestamp::UNIX_EPOCH,
                ready: true,
            }),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(cond(&s, "Ready"), "True");
        assert_eq!(cond(&s, "ContainersReady"), "True");
        assert_eq!(cond(&s, "PodScheduled"), "True");
        let cs = &s.container_statuses.expect("statuses")[0];
        assert!(cs.ready);
        assert!(cs.state.as_ref().and_then(|x| x.running.as_ref()).is_some());
    }

    #[test]
    fn not_ready_until_probe_passes_and_other_containers_block_readiness() {
        let running = AgentState::Running {
            started_at: Timestamp::UNIX_EPOCH,
            ready: false,
        };
        let s = pod_status(
            &pod(&["agent"]),
            "agent",
            &obs(running),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "False");
        let ready = AgentState::Running {
            started_at: Timestamp::UNIX_EPOCH,
            ready: true,
        };
        let s = pod_status(
            &pod(&["agent", "side"]),
            "agent",
            &obs(ready),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(cond(&s, "Ready"), "False");
        let side = &s.container_statuses.expect("statuses")[1];
        assert_eq!(
            side.state
                .as_ref()
                .and_then(|x| x.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some(NOT_RUN_REASON)
        );
    }

    #[test]
    fn terminal_exit_sets_phase_from_exit_code() {
        let mut o = obs(AgentState::Terminated {
            exit_code: 3,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        });
        o.terminal = true;
        let s = pod_status(&pod(&["agent"]), "agent", &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        o.state = AgentState::Terminated {
            exit_code: 0,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        };
        let s = pod_status(&pod(&["agent"]), "agent", &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn keeps_transition_time_of_unchanged_conditions() {
        let mut p = pod(&["agent"]);
        let first = pod_status(
            &p,
            "agent",
            &obs(AgentState::Running {
                started_at: Timestamp::UNIX_EPOCH,
                ready: false,
            }),
            Timestamp::UNIX_EPOCH,
        );
        p.status = Some(first);
        let later = Timestamp::from_second(100).expect("ts");
        let second = pod_status(
            &p,
            "agent",
            &obs(AgentState::Running {
                started_at: Timestamp::UNIX_EPOCH,
                ready: true,
            }),
            later,
        );
        let t = |s: &PodStatus, ty: &str| {
            s.conditions
                .as_ref()
                .and_then(|cs| cs.iter().find(|c| c.type_ == ty))
                .and_then(|c| c.last_transition_time.clone())
                .map(|t| t.0)
        };
        assert_eq!(t(&second, "PodScheduled"), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(t(&second, "Ready"), Some(later));
    }
}
