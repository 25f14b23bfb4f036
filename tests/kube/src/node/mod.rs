//! The local node: plays the kubelet (and, for its pods, the scheduler) for a test control
//! plane. See the crate docs for what it does and does not do.

mod ip_pool;
pub mod plan;
mod provisioner;
mod runner;
pub mod status;
mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo, Pod,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control_plane::KUBE_VERSION;
use runner::{NodeConfig, PodRun, RunControl};

/// Options for [`LocalNode::start`].
#[derive(Clone, Debug)]
pub struct LocalNodeOptions {
    /// The Node's name (default `dispatch-local-node`).
    pub name: String,
    /// Only Pods in this namespace (default: all namespaces).
    pub namespace: Option<String>,
    /// Only Pods matching this label selector, e.g. `app.kubernetes.io/name=dispatch-workspace`
    /// (default: every unscheduled Pod that has a container named [`Self::container`]).
    pub label_selector: Option<String>,
    /// The container run as a local process (default `agent`).
    pub container: String,
    /// The program that stands for the container image (default: env `DISPATCH_AGENT_BIN`).
    pub agent_bin: Option<PathBuf>,
    /// Env given to every process before the Pod's own env (e.g. `DISPATCH_CLAUDE_BIN`,
    /// `RUST_LOG`): what an image would set.
    pub extra_env: Vec<(String, String)>,
    /// Where claim dirs and pod dirs live (default: a temp dir removed with the node).
    pub state_dir: Option<PathBuf>,
    /// Act as the cluster's volume provisioner (default true): every pending PVC in
    /// `namespace` (whatever its labels) gets a PersistentVolume pre-bound to it, so
    /// kube-controller-manager binds it; deleting the PVC deletes the PV and the data.
    pub provision_claims: bool,
}

impl Default for LocalNodeOptions {
    fn default() -> Self {
        LocalNodeOptions {
            name: "dispatch-local-node".into(),
            namespace: None,
            label_selector: None,
            container: "agent".into(),
            agent_bin: None,
            extra_env: Vec::new(),
            state_dir: None,
            provision_claims: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "no program for the agent container: set DISPATCH_AGENT_BIN or LocalNodeOptions::agent_bin"
    )]
    NoAgentBin,
    #[error("the agent program {0} does not exist")]
    AgentBinMissing(String),
    #[error("local node state dir: {0}")]
    Io(#[from] std::io::Error),
    #[error("registering the Node: {0}")]
    Kube(#[from] kube::Error),
}

/// A Pod the node is running now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod IP (its own loopback address).
    pub ip: Ipv4Addr,
    /// The agent process id (its process group), if it is running right now.
    pub pid: Option<i32>,
    /// The process's stdout and stderr.
    pub log: PathBuf,
}

struct PodEntry {
    namespace: String,
    name: String,
    ip: Ipv4Addr,
    control: Arc<RunControl>,
    task: JoinHandle<()>,
}

struct Shared {
    client: Client,
    cfg: Arc<NodeConfig>,
    pods: Mutex<HashMap<String, PodEntry>>,
    /// Pods being bound or finalised, so one event does not start it twice.
    in_flight: Mutex<HashSet<String>>,
}

/// A registered, Ready Node whose pods run as local processes. Dropping it kills every
/// pod process; the Node object stays (it goes with the control plane).
pub struct LocalNode {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("name", &self.shared.cfg.name)
            .finish_non_exhaustive()
    }
}

impl LocalNode {
    /// Registers the Node (Ready), then binds and runs matching Pods until dropped.
    pub async fn start(client: Client, opts: LocalNodeOptions) -> Result<LocalNode, NodeError> {
        let program = opts
            .agent_bin
            .clone()
            .or_else(|| std::env::var_os("DISPATCH_AGENT_BIN").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or(NodeError::NoAgentBin)?;
        if !program.is_file() {
            return Err(NodeError::AgentBinMissing(program.display().to_string()));
        }
        let (tmp, state_dir) = match &opts.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("dispatch-node-")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        register_node(&client, &opts.name).await?;
        let cfg = Arc::new(NodeConfig {
            name: opts.name.clone(),
            container: opts.container.clone(),
            program,
            extra_env: opts.extra_env.clone(),
            state_dir,
        });
        let shared = Arc::new(Shared {
            client: client.clone(),
            cfg,
            pods: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        });
        let cancel = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(heartbeat(
            client.clone(),
            opts.name.clone(),
            cancel.clone(),
        ))];
        if opts.provision_claims {
            tasks.push(tokio::spawn(provisioner::run(
                client.clone(),
                opts.namespace.clone(),
                opts.name.clone(),
                Arc::from(shared.cfg.state_dir.as_path()),
                cancel.clone(),
            )));
        }
        tasks.push(tokio::spawn(watch_pods(
            shared.clone(),
            opts,
            cancel.clone(),
        )));
        tracing::info!(node = %shared.cfg.name, "local node ready");
        Ok(LocalNode {
            shared,
            cancel,
            tasks,
            _tmp: tmp,
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The node's state dir (claim dirs under `claims/<ns>/<claim>`, pods under `pods/<uid>`).
    pub fn state_dir(&self) -> &Path {
        &self.shared.cfg.state_dir
    }

    /// The host dir that stands for PVC `claim` in `namespace` (exists once a pod used it).
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        plan::claim_dir(&self.shared.cfg.state_dir, namespace, claim)
    }

    /// The pods this node runs now.
    pub fn running_pods(&self) -> Vec<RunningPod> {
        let pods = lock(&self.shared.pods);
        let mut out: Vec<RunningPod> = pods
            .iter()
            .map(|(uid, e)| RunningPod {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: uid.clone(),
                ip: e.ip,
                pid: Some(e.control.pid.load(Ordering::SeqCst)).filter(|p| *p > 0),
                log: PodRun::pod_dir(&self.shared.cfg, uid).join("agent.log"),
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// The running pod `namespace/name`, if any.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<RunningPod> {
        self.running_pods()
            .into_iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// Stops watching and ends every pod process (SIGTERM, then SIGKILL), waiting for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let entries: Vec<PodEntry> = lock(&self.shared.pods).drain().map(|(_, e)| e).collect();
        for e in &entries {
            e.control.stop.cancel();
        }
        for e in entries {
            let _ = e.task.await;
            ip_pool::release(e.ip);
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.cancel.cancel();
        for t in &self.tasks {
            t.abort();
        }
        // Aborting a pod task drops its process handle, which kills the process group.
        for (_, e) in lock(&self.shared.pods).drain() {
            e.control.stop.cancel();
            e.task.abort();
            ip_pool::release(e.ip);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn register_node(client: &Client, name: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
        ("dispatch.dev/local-node".to_string(), "true".to_string()),
    ]);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    patch_node_status(client, name, Timestamp::now()).await
}

/// Node conditions as a kubelet reports them; `since` is when they last changed (start).
async fn patch_node_status(
    client: &Client,
    name: &str,
    since: Timestamp,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let cond = |type_: &str, status: &str, reason: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some("local test node".into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(Time(since)),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity("16Gi".into())),
        ("pods".to_string(), Quantity("250".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    let status = NodeStatus {
        conditions: Some(vec![
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            cond("Ready", "True", "KubeletReady"),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            os_image: "dispatch local test node".into(),
            kernel_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            container_runtime_version: "local-process://0".into(),
            kubelet_version: KUBE_VERSION.into(),
            kube_proxy_version: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Renews the node Lease (what the node lifecycle controller watches) every 10s and the
/// Ready condition every minute, so kube-controller-manager never marks the node lost.
async fn heartbeat(client: Client, name: String, cancel: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut ticks: u64 = 0;
    let since = Timestamp::now();
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let pp = PatchParams::apply("dispatch-local-node").force();
        if let Err(e) = leases.patch(&name, &pp, &Patch::Apply(&lease)).await {
            tracing::debug!(error = %e, "node lease renewal failed");
        }
        if ticks > 0
            && ticks.is_multiple_of(6)
            && let Err(e) = patch_node_status(&client, &name, since).await
        {
            tracing::debug!(error = %e, "node status heartbeat failed");
        }
        ticks += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn watch_pods(shared: Arc<Shared>, opts: LocalNodeOptions, cancel: CancellationToken) {
    let api: Api<Pod> = match &opts.namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let mut config = watcher::Config::default();
    if let Some(sel) = &opts.label_selector {
        config = config.labels(sel);
    }
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut seen_in_relist: Option<HashSet<String>> = None;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(watcher::Event::Init) => seen_in_relist = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (seen_in_relist.as_mut(), pod.metadata.uid.clone())
                {
                    seen.insert(uid);
                }
                on_pod(&shared, pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down.
                if let Some(seen) = seen_in_relist.take() {
                    let gone: Vec<String> = lock(&shared.pods)
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        stop_pod(&shared, &uid, false);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => on_pod(&shared, pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    stop_pod(&shared, uid, false);
                }
            }
            Err(e) => tracing::debug!(error = %e, "pod watch error (retrying)"),
        }
    }
}

fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if node.is_empty() {
        // Only pods this node can run (they have the agent container); others stay Pending,
        // as on a cluster with no node that fits them.
        let runnable = pod
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == shared.cfg.container));
        if !deleting && runnable && lock(&shared.in_flight).insert(uid.clone()) {
            tokio::spawn(bind(shared.clone(), pod, uid));
        }
        return;
    }
    if node != shared.cfg.name {
        return;
    }
    let running = lock(&shared.pods).contains_key(&uid);
    if deleting {
        if running {
            stop_pod(shared, &uid, true);
        } else if lock(&shared.in_flight).insert(uid.clone()) {
            // Never started here (or already ended): finish the delete as a kubelet would.
            tokio::spawn(finish_delete(shared.clone(), pod, uid));
        }
        return;
    }
    if running {
        return;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    start_pod(shared, pod, uid);
}

fn start_pod(shared: &Arc<Shared>, pod: Pod, uid: String) {
    let port = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == shared.cfg.container))
        .and_then(|c| c.ports.iter().flatten().next())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(plan::DEFAULT_PORT);
    let Some(ip) = ip_pool::allocate(port) else {
        tracing::error!("no free loopback address for a pod");
        return;
    };
    let control = Arc::new(RunControl {
        stop: CancellationToken::new(),
        delete_after: AtomicBool::new(false),
        pid: AtomicI32::new(0),
    });
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    tracing::info!(pod = %format!("{namespace}/{name}"), %ip, "starting pod");
    let run = PodRun {
        pod,
        client: shared.client.clone(),
        cfg: shared.cfg.clone(),
        ip,
        control: control.clone(),
    };
    let shared2 = shared.clone();
    let uid2 = uid.clone();
    // Held across the spawn so the task's own removal cannot run before the insert.
    let mut pods = lock(&shared.pods);
    let task = tokio::spawn(async move {
        run.run().await;
        if let Some(e) = lock(&shared2.pods).remove(&uid2) {
            ip_pool::release(e.ip);
        }
    });
    pods.insert(
        uid,
        PodEntry {
            namespace,
            name,
            ip,
            control,
            task,
        },
    );
}

fn stop_pod(shared: &Arc<Shared>, uid: &str, delete_after: bool) {
    if let Some(e) = lock(&shared.pods).get(uid) {
        if delete_after {
            e.control.delete_after.store(true, Ordering::SeqCst);
        }
        e.control.stop.cancel();
    }
}

async fn bind(shared: Arc<Shared>, pod: Pod, uid: String) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "uid": uid },
        "target": { "apiVersion": "v1", "kind": "Node", "name": shared.cfg.name },
    });
    for attempt in 0..10u32 {
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => break,
            // Bound already (by us or another node), or gone: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => break,
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, attempt, "binding failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
            }
        }
    }
    lock(&shared.in_flight).remove(&uid);
}

async fn finish_delete(shared: Arc<Shared>, pod: Pod, uid: String) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let dp = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&name, &dp).await {
        tracing::debug!(pod = %name, error = %e, "finishing deletion");
    }
    lock(&shared.in_flight).remove(&uid);
}
