//! One Pod on the local node: prepares its volumes and env, runs the agent container as a
//! local process on the pod's loopback address, probes readiness, reports status as a
//! kubelet would, restarts per restartPolicy, and stops the process when the Pod goes.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::plan::{self, LaunchPlan, NodeContext, Restart};
use super::status::{self, AgentState, Observed};
use super::volumes;
use crate::process::ManagedProcess;

/// What every pod run shares with the node.
#[derive(Debug)]
pub struct NodeConfig {
    pub name: String,
    pub container: String,
    pub program: PathBuf,
    pub extra_env: Vec<(String, String)>,
    pub state_dir: PathBuf,
}

/// The handle the node keeps for a running pod.
#[derive(Debug)]
pub struct RunControl {
    pub stop: CancellationToken,
    /// Set when the Pod got a deletionTimestamp: once the process is gone, the node removes
    /// the Pod object (grace period 0), as a kubelet finishes a graceful delete.
    pub delete_after: AtomicBool,
    pub pid: AtomicI32,
}

pub struct PodRun {
    pub pod: Pod,
    pub client: Client,
    pub cfg: Arc<NodeConfig>,
    pub ip: Ipv4Addr,
    pub control: Arc<RunControl>,
}

const HOST_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

impl PodRun {
    pub fn pod_dir(cfg: &NodeConfig, uid: &str) -> PathBuf {
        cfg.state_dir.join("pods").join(uid)
    }

    pub async fn run(self) {
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let ns = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod_dir = Self::pod_dir(&self.cfg, &uid);
        let mut rep = Reporter {
            api: api.clone(),
            pod: self.pod.clone(),
            agent: self.cfg.container.clone(),
            last: None,
            obs: Observed {
                pod_ip: self.ip,
                host_ip: HOST_IP,
                start_time: Timestamp::now(),
                state: AgentState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
                restart_count: 0,
                last_terminated: None,
                terminal: false,
            },
        };
        rep.report().await;

        if let Some(launch) = self.prepare_until_ok(&pod_dir, &mut rep).await {
            self.run_process(&launch, &pod_dir, &mut rep).await;
        }

        if self.control.delete_after.load(Ordering::SeqCst) {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "finishing pod deletion failed"),
            }
        }
        // The pod's own dirs go with it; claim dirs live on under the node's state dir.
        let _ = std::fs::remove_dir_all(&pod_dir);
        tracing::info!(pod = %format!("{ns}/{name}"), ip = %self.ip, "pod stopped");
    }

    /// Volumes and env, retried while a referenced Secret or ConfigMap is missing, as a
    /// kubelet keeps a pod in CreateContainerConfigError until it appears.
    async fn prepare_until_ok(
        &self,
        pod_dir: &std::path::Path,
        rep: &mut Reporter,
    ) -> Option<LaunchPlan> {
        let home = pod_dir.join("home");
        loop {
            let attempt = async {
                std::fs::create_dir_all(&home)
                    .map_err(|e| ("ContainerCreating", format!("pod dir: {e}")))?;
                let config_error = |e: String| ("CreateContainerConfigError", e);
                let refs = volumes::fetch_refs(&self.client, &self.pod, &self.cfg.container)
                    .await
                    .map_err(|e| config_error(e.to_string()))?;
                let dirs =
                    volumes::prepare(&self.client, &self.cfg.state_dir, pod_dir, &self.pod, &refs)
                        .await
                        // A kubelet shows a pod whose volumes cannot be set up as creating.
                        .map_err(|e| ("ContainerCreating", e.to_string()))?;
                let mut base_env = vec![
                    (
                        "PATH".to_string(),
                        std::env::var("PATH")
                            .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
                    ),
                    ("HOME".to_string(), home.display().to_string()),
                ];
                base_env.extend(self.cfg.extra_env.iter().cloned());
                let ctx = NodeContext {
                    node_name: self.cfg.name.clone(),
                    pod_ip: self.ip,
                    host_ip: HOST_IP,
                    program: self.cfg.program.clone(),
                    base_env,
                    default_cwd: home.clone(),
                };
                plan::plan(&self.pod, &self.cfg.container, &ctx, &dirs, &refs)
                    .map_err(|e| config_error(e.to_string()))
            };
            match attempt.await {
                Ok(p) => return Some(p),
                Err((reason, message)) => {
                    rep.obs.state = AgentState::Waiting {
                        reason: reason.into(),
                        message,
                    };
                    rep.report().await;
                }
            }
            tokio::select! {
                _ = self.control.stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn run_process(
        &self,
        launch: &LaunchPlan,
        pod_dir: &std::path::Path,
        rep: &mut Reporter,
    ) {
        let http = HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
        let log = pod_dir.join("agent.log");
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut cmd = Command::new(&launch.program);
            cmd.args(&launch.args)
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&launch.cwd);
            let started = Timestamp::now();
            let exit_code = match ManagedProcess::spawn("agent", cmd, &log) {
                Ok(mut proc) => {
                    self.control.pid.store(proc.pid(), Ordering::SeqCst);
                    tracing::debug!(listen = %launch.listen, pid = proc.pid(), "agent started");
                    rep.obs.state = AgentState::Running {
                        started_at: started,
                        ready: launch.readiness.is_none(),
                    };
                    rep.report().await;
                    let code = self.supervise(&mut proc, launch, &http, rep, started).await;
                    self.control.pid.store(0, Ordering::SeqCst);
                    match code {
                        Some(c) => c,
                        None => return, // stopped: the Pod is going away
                    }
                }
                Err(e) => {
                    tracing::warn!(program = %launch.program.display(), error = %e, "cannot start agent");
                    128
                }
            };
            let finished = Timestamp::now();
            let restart = match launch.restart {
                Restart::Always => true,
                Restart::OnFailure => exit_code != 0,
                Restart::Never => false,
            };
            if !restart {
                rep.obs.state = AgentState::Terminated {
                    exit_code,
                    started_at: Some(started),
                    finished_at: finished,
                };
                rep.obs.terminal = true;
                rep.report().await;
                self.control.stop.cancelled().await;
                return;
            }
            rep.obs.last_terminated = Some((exit_code, Some(started), finished));
            rep.obs.restart_count += 1;
            rep.obs.state = AgentState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}ms restarting exited container (exit code {exit_code})",
                    backoff.as_millis()
                ),
            };
            rep.report().await;
            tokio::select! {
                _ = self.control.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Watches the process until it exits (`Some(exit code)`) or the pod is stopped (`None`).
    async fn supervise(
        &self,
        proc: &mut ManagedProcess,
        launch: &LaunchPlan,
        http: &HttpClient<HttpConnector, Empty<Bytes>>,
        rep: &mut Reporter,
        started: Timestamp,
    ) -> Option<i32> {
        let mut ready = launch.readiness.is_none();
        loop {
            // Probe fast until the first success so tests see Ready promptly.
            let period = match &launch.readiness {
                Some(p) if ready => Duration::from_millis(p.period_ms),
                _ => Duration::from_millis(100),
            };
            tokio::select! {
                _ = self.control.stop.cancelled() => {
                    proc.terminate(Duration::from_secs(launch.grace_seconds)).await;
                    return None;
                }
                status = proc.wait() => {
                    let code = match status {
                        Ok(s) => s.code().unwrap_or_else(|| {
                            use std::os::unix::process::ExitStatusExt;
                            128 + s.signal().unwrap_or(0)
                        }),
                        Err(_) => 128,
                    };
                    tracing::info!(pod = ?rep.pod.metadata.name, code, "agent exited");
                    return Some(code);
                }
                _ = tokio::time::sleep(period), if launch.readiness.is_some() => {
                    let Some(p) = &launch.readiness else { continue };
                    let now_ready = probe(http, self.ip, p).await;
                    if now_ready != ready {
                        ready = now_ready;
                        rep.obs.state = AgentState::Running { started_at: started, ready };
                        rep.report().await;
                    }
                }
            }
        }
    }
}

async fn probe(
    http: &HttpClient<HttpConnector, Empty<Bytes>>,
    ip: Ipv4Addr,
    p: &plan::HttpProbe,
) -> bool {
    let path = if p.path.starts_with('/') {
        p.path.clone()
    } else {
        format!("/{}", p.path)
    };
    let Ok(uri) = format!("http://{ip}:{}{path}", p.port).parse::<hyper::Uri>() else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(1), http.get(uri)).await {
        Ok(Ok(resp)) => {
            let s = resp.status().as_u16();
            (200..400).contains(&s)
        }
        _ => false,
    }
}

/// Sends the pod status when what the node observed changed.
struct Reporter {
    api: Api<Pod>,
    pod: Pod,
    agent: String,
    obs: Observed,
    last: Option<Observed>,
}

impl Reporter {
    async fn report(&mut self) {
        if self.last.as_ref() == Some(&self.obs) {
            return;
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let st = status::pod_status(&self.pod, &self.agent, &self.obs, Timestamp::now());
        let patch = serde_json::json!({ "status": st });
        match self
            .api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                self.pod.status = p.status;
                self.last = Some(self.obs.clone());
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "status update failed"),
        }
    }
}
