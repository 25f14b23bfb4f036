//! Test-only: a real Kubernetes control plane on loopback, and a local node that plays the
//! kubelet. Never shipped.
//!
//! # Control plane
//!
//! [`ControlPlane::start`] runs etcd, kube-apiserver (v1.37.2) and kube-controller-manager,
//! built from the pinned upstream Go modules in `tests/kube/tools` by `scripts/setup.sh`
//! (`tests/kube/build-tools.sh`; binaries cached in `$DISPATCH_CACHE/kube/<hash>/bin`, or
//! `DISPATCH_KUBE_BIN_DIR`). Everything listens on 127.0.0.1 on free ports, with a fresh CA,
//! serving cert, admin client cert (`system:masters`) and ServiceAccount signing key.
//! Authorization is `Node,RBAC`; admission includes `PodSecurity` and `NodeRestriction`.
//! Dropping the value kills every process group and removes the state dir.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
//! let cp = ControlPlane::start().await?;
//! let client = cp.client();                       // cluster-admin kube::Client
//! let kubeconfig = cp.kubeconfig_path();          // for kubectl / child processes
//! cp.kubectl().args(["get", "ns"]).status()?;     // the real kubectl, already pointed here
//! cp.create_namespace("team-a", &[("pod-security.kubernetes.io/enforce", "restricted")]).await?;
//! let token = cp.service_account_token("team-a", "default", 3600).await?; // TokenRequest API
//! let sa_kubeconfig = cp.write_token_kubeconfig("operator", &token)?;     // run a process as that SA
//! let node = LocalNode::start(client.clone(), LocalNodeOptions {
//!     label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
//!     agent_bin: Some("target/debug/dispatch-agent".into()), // else env DISPATCH_AGENT_BIN
//!     ..Default::default()
//! }).await?;
//! // ... create Pods; node.pod("team-a", "ws-x") tells its IP and pid once it runs.
//! # let _ = (kubeconfig, sa_kubeconfig, node); Ok(()) }
//! ```
//!
//! kube-controller-manager runs (by default; `ControlPlaneOptions::controller_manager`)
//! because tests need what a real cluster does without being asked: ownerReference garbage
//! collection (children of a deleted Workspace go), namespace deletion that finishes, the
//! `default` ServiceAccount in each namespace (without it the apiserver refuses Pods there),
//! PVC protection finalizers, `kube-root-ca.crt`. Its controllers share the admin identity
//! (not one ServiceAccount each, which costs ~5 s of start-up); start-up is ~3.5 s here.
//! No scheduler and no kubelet run: Pods stay Pending unless a [`LocalNode`] takes them;
//! Deployments get Pods that stay Pending; PVCs stay Pending unless a [`LocalNode`]
//! provisions them; Services get ClusterIPs that nothing routes (tests talk to pod IPs on
//! loopback); the `kubernetes` Service has no endpoints (the endpoint reconciler refuses a
//! loopback address).
//!
//! # Local node
//!
//! [`LocalNode::start`] registers a Ready Node (renewing its Lease so the node lifecycle
//! controller keeps it), binds unscheduled Pods that match its selector and have an `agent`
//! container to itself (`pods/binding`, as the scheduler would) and, for each Pod bound to it:
//!
//! - gives it its own loopback address 127.0.0.x (x from 2 up; taken with a file lock under
//!   `$TMPDIR/dispatch-local-node-ips/` shared by every process on the machine, and only if
//!   the port is free there), which is the pod IP;
//! - acts as the volume provisioner (unless [`LocalNodeOptions::provision_claims`] is off):
//!   each pending PVC in its namespace gets a PersistentVolume pre-bound to it, so the claim
//!   becomes Bound; deleting the claim deletes that PV and the claim's data;
//! - waits, as a kubelet, for the Pod's PVCs to exist (container `ContainerCreating` until
//!   then) and for referenced Secrets/ConfigMaps (`CreateContainerConfigError`);
//! - maps every volume to a host dir: a PVC to `<state>/claims/<ns>/<claim>` (kept after
//!   the Pod goes, so data survives delete/recreate), emptyDir to a fresh dir, Secret /
//!   ConfigMap / projected volumes to files written from the API objects (a projected
//!   ServiceAccount token comes from TokenRequest, bound to the Pod); other volume types
//!   keep the container waiting (`ContainerCreating`, with the reason);
//! - runs the container named `agent` as a local process of the agent binary (the "image";
//!   `command` is ignored, `args` are passed), with env: `PATH`, a fresh `HOME`,
//!   [`LocalNodeOptions::extra_env`], then the container's env (`value`, `secretKeyRef`,
//!   `configMapKeyRef`, common `fieldRef`s, `envFrom`, `$(VAR)` expansion) where values and
//!   args starting with a mountPath are rewritten to the host dir, and
//!   `DISPATCH_AGENT_LISTEN=<podIP>:<containerPort>`;
//! - runs its HTTP readiness probe against the pod IP (every 100 ms until it first passes,
//!   then at the probe's period capped at 1 s) and patches the Pod status as a kubelet:
//!   phase, podIP(s), hostIP 127.0.0.1, conditions, containerStatuses;
//! - on a graceful delete (deletionTimestamp) sends SIGTERM, SIGKILL after the grace period
//!   (capped at 10 s), then removes the Pod with grace period 0; on an outright delete it
//!   just ends the process;
//! - when the process exits: restartPolicy Always (or OnFailure with a failure) restarts it
//!   after a back-off (0.5 s doubling to 10 s, `CrashLoopBackOff` meanwhile, restartCount
//!   counted); otherwise the Pod becomes Succeeded/Failed.
//!
//! Processes die with the test process (PR_SET_PDEATHSIG) even when it is killed before
//! dropping anything; its state dir (`$TMPDIR/dispatch-kube-*`, `dispatch-node-*`) then stays.
//!
//! Not modelled: securityContext (the process runs as the test's user), resource limits,
//! liveness/startup probes, init and other containers (reported `NotRunByLocalNode`, so a Pod
//! with more containers never becomes Ready), image pulls, NetworkPolicy enforcement (no
//! CNI: the objects are stored and validated, nothing filters traffic), Events. Give each
//! `LocalNode` of one cluster its own name: two with the same name would both run its pods.

mod bins;
mod control_plane;
pub mod kubeconfig;
mod node;
mod pki;
mod process;

pub use bins::{BinError, REQUIRED as REQUIRED_BINARIES, bin_dir};
pub use control_plane::{
    ControlPlane, ControlPlaneOptions, Error, KUBE_VERSION, client_from_kubeconfig, free_port,
};
pub use node::{LocalNode, LocalNodeOptions, NodeError, RunningPod};
