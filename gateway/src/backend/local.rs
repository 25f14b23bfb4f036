//! Local backend: a workspace is the directory `<root>/<owner>/<name>`; an
//! open workspace has one `dispatch-agent` process, supervised: started with
//! a fresh random token on a free loopback port, restarted with backoff when
//! it dies, stopped (SIGTERM, then SIGKILL) on delete and on gateway exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dispatch_api::rest::{WorkspaceInfo, WorkspacePhase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::agent_stderr::AgentStderr;
use super::{AgentEndpoint, BackendError, WorkspaceBackend};
use crate::auth::now_ms;
use crate::metrics::Metrics;
use crate::names::WorkspaceName;
use crate::registry::{Registry, RegistryError, WorkspaceRecord};

/// The line the agent prints once it listens.
const LISTENING_PREFIX: &str = "DISPATCH_AGENT_LISTENING ";
/// How long an agent may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an exited agent's stderr may take to close (something it started
/// may hold it) before its reason is read without the rest.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(2);
/// How long `open` waits for a start to succeed or fail, so that a failure
/// reaches the caller with its reason.
const OPEN_WAIT: Duration = Duration::from_secs(15);
/// How long a SIGTERMed agent gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Gateway settings and secrets an agent (and the shells it runs) must not see.
const HIDDEN_ENV: &[&str] = &[
    "DISPATCH_KEY",
    "DISPATCH_KEY_FILE",
    "DISPATCH_USERS_FILE",
    "DISPATCH_DATA_DIR",
    "DISPATCH_LISTEN",
    "DISPATCH_BACKEND",
    "DISPATCH_WEB_DIR",
    "DISPATCH_AGENT_BIN",
    "DISPATCH_AGENT_TOKEN_FILE",
];

/// Delay before restarting an agent that died: doubling from `initial` up to
/// `max`, back to `initial` after a run that lasted `healthy_after`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(30),
        )
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, healthy_after: Duration) -> Self {
        Backoff {
            initial,
            max,
            healthy_after,
            next: initial,
        }
    }

    /// The delay after a run that lasted `ran` (zero when it never started).
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= self.healthy_after {
            self.next = self.initial;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Parses the agent's listening line.
pub fn parse_listening_line(line: &str) -> Option<std::net::SocketAddr> {
    line.trim()
        .strip_prefix(LISTENING_PREFIX)?
        .trim()
        .parse()
        .ok()
}

#[derive(Debug, Clone, PartialEq)]
enum AgentState {
    /// Starting; after a failure, why the last run ended (still worth
    /// showing while the next one starts).
    Starting(Option<String>),
    Running(AgentEndpoint),
    /// Died or failed to start (the `n`th time); restarting after a delay.
    Restarting {
        why: String,
        n: u64,
    },
    Stopped,
}

struct Supervised {
    state: watch::Receiver<AgentState>,
    stop: CancellationToken,
}

type Key = (String, String);

pub struct LocalBackend {
    root: PathBuf,
    registry: Registry,
    agent_bin: PathBuf,
    metrics: Metrics,
    agents: Mutex<HashMap<Key, Supervised>>,
    tasks: TaskTracker,
}

impl LocalBackend {
    /// `root` is where workspace directories go (`<data-dir>/workspaces`).
    pub fn new(
        root: PathBuf,
        registry: Registry,
        agent_bin: PathBuf,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        Ok(LocalBackend {
            root,
            registry,
            agent_bin,
            metrics,
            agents: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Supervised>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory of a workspace. Owner and name are DNS-1123 labels, so
    /// the join cannot climb out of the root.
    fn dir_of(&self, owner: &str, name: &WorkspaceName) -> PathBuf {
        self.root.join(owner).join(name.as_str())
    }

    async fn record(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceRecord, BackendError> {
        self.registry
            .get(owner, name.as_str())
            .await
            .map_err(internal)?
            .ok_or_else(|| BackendError::NoSuchWorkspace(name.to_string()))
    }

    fn info(&self, rec: &WorkspaceRecord) -> WorkspaceInfo {
        let key = (rec.owner.clone(), rec.name.clone());
        let (phase, message) = match self.agents().get(&key).map(|s| s.state.borrow().clone()) {
            None | Some(AgentState::Stopped) => (WorkspacePhase::Stopped, None),
            Some(AgentState::Starting(None)) => (WorkspacePhase::Starting, None),
            Some(AgentState::Starting(Some(why))) => (
                WorkspacePhase::Starting,
                Some(format!("agent restarting: {why}")),
            ),
            Some(AgentState::Running(_)) => (WorkspacePhase::Running, None),
            Some(AgentState::Restarting { why, .. }) => (
                WorkspacePhase::Starting,
                Some(format!("agent restarting: {why}")),
            ),
        };
        WorkspaceInfo {
            name: rec.name.clone(),
            owner: rec.owner.clone(),
            phase,
            created: rec.created,
            last_accessed: rec.last_accessed,
            message,
        }
    }

    /// Starts the workspace's supervisor unless it runs; its state watch.
    fn ensure_agent(
        &self,
        rec: &WorkspaceRecord,
    ) -> Result<watch::Receiver<AgentState>, BackendError> {
        let key = (rec.owner.clone(), rec.name.clone());
        let mut agents = self.agents();
        if let Some(s) = agents.get(&key) {
            return Ok(s.state.clone());
        }
        if self.tasks.is_closed() {
            return Err(BackendError::Unavailable(
                "the gateway is shutting down".into(),
            ));
        }
        ensure_inside(&self.root, &rec.path)?;
        let (tx, rx) = watch::channel(AgentState::Starting(None));
        let stop = CancellationToken::new();
        let spec = AgentSpec {
            bin: self.agent_bin.clone(),
            root: self.root.clone(),
            dir: rec.path.clone(),
            name: rec.name.clone(),
            id: format!("{}/{}", rec.owner, rec.name),
        };
        self.tasks
            .spawn(supervise(spec, tx, stop.clone(), self.metrics.clone()));
        agents.insert(
            key,
            Supervised {
                state: rx.clone(),
                stop,
            },
        );
        Ok(rx)
    }

    /// Stops the workspace's agent (if any) and waits until it has exited.
    async fn stop_agent(&self, owner: &str, name: &str) {
        let sup = self.agents().remove(&(owner.to_owned(), name.to_owned()));
        if let Some(mut sup) = sup {
            sup.stop.cancel();
            let _ = sup
                .state
                .wait_for(|s| matches!(s, AgentState::Stopped))
                .await;
        }
    }
}

/// The agent's state once it runs, is stopped, or fails a start that began
/// after this call (or after `wait`). Waits through restarts: a client
/// reconnecting right after its agent died gets the new agent rather than
/// an error; a failure from before the wait began does not end it.
async fn next_outcome(mut state: watch::Receiver<AgentState>, wait: Duration) -> AgentState {
    let failures_before = match &*state.borrow() {
        AgentState::Restarting { n, .. } => *n,
        _ => 0,
    };
    let _ = tokio::time::timeout(
        wait,
        state.wait_for(|s| match s {
            AgentState::Restarting { n, .. } => *n > failures_before,
            AgentState::Starting(_) => false,
            AgentState::Running(_) | AgentState::Stopped => true,
        }),
    )
    .await;
    state.borrow().clone()
}

fn internal(e: RegistryError) -> BackendError {
    BackendError::Internal(e.to_string())
}

/// Refuses a workspace path that resolves outside the root, or through a
/// symlink at all: a workspace swapped for a link to another one
/// (`ln -s ../bob/bob-ws ws`) stays inside the root but is not this workspace.
fn ensure_inside(root: &Path, path: &Path) -> Result<(), BackendError> {
    let real = path
        .canonicalize()
        .map_err(|e| BackendError::Internal(format!("workspace directory: {e}")))?;
    if !real.starts_with(root) || real == root {
        Err(BackendError::Internal(
            "workspace directory resolves outside the workspace root".into(),
        ))
    } else if real != path {
        Err(BackendError::Internal(format!(
            "workspace directory {} is a symbolic link (to {}); refusing to start its agent",
            path.display(),
            real.display()
        )))
    } else {
        Ok(())
    }
}

#[async_trait]
impl WorkspaceBackend for LocalBackend {
    async fn list(&self, owner: &str) -> Result<Vec<WorkspaceInfo>, BackendError> {
        let recs = self.registry.list(owner).await.map_err(internal)?;
        Ok(recs.iter().map(|r| self.info(r)).collect())
    }

    async fn create(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        let path = self.dir_of(owner, name);
        let rec = WorkspaceRecord {
            name: name.to_string(),
            owner: owner.to_owned(),
            path: path.clone(),
            created: now_ms(),
            last_accessed: None,
            metadata: serde_json::json!({}),
        };
        self.registry
            .insert(rec.clone())
            .await
            .map_err(|e| match e {
                RegistryError::AlreadyExists => BackendError::AlreadyExists(name.to_string()),
                e => internal(e),
            })?;
        let made = tokio::task::spawn_blocking({
            let path = path.clone();
            move || std::fs::create_dir_all(&path)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .and_then(|()| ensure_inside(&self.root, &path).map_err(|e| e.to_string()));
        if let Err(e) = made {
            let _ = self.registry.remove(owner, name.as_str()).await;
            return Err(BackendError::Internal(format!(
                "cannot create the workspace directory: {e}"
            )));
        }
        Ok(self.info(&rec))
    }

    async fn status(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        let rec = self.record(owner, name).await?;
        Ok(self.info(&rec))
    }

    async fn open(&self, owner: &str, name: &WorkspaceName) -> Result<WorkspaceInfo, BackendError> {
        let mut rec = self.record(owner, name).await?;
        let state = self.ensure_agent(&rec)?;
        if let AgentState::Restarting { why, .. } = next_outcome(state, OPEN_WAIT).await {
            return Err(BackendError::Unavailable(format!(
                "the workspace's agent could not start: {why}"
            )));
        }
        let now = now_ms();
        self.registry
            .touch(owner, name.as_str(), now)
            .await
            .map_err(internal)?;
        rec.last_accessed = Some(now);
        Ok(self.info(&rec))
    }

    async fn delete(&self, owner: &str, name: &WorkspaceName) -> Result<(), BackendError> {
        let rec = self.record(owner, name).await?;
        self.stop_agent(owner, name.as_str()).await;
        let path = rec.path.clone();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            // Never follow a symlink out: remove_dir_all removes a link
            // itself, not its target, and we only accept real dirs under root.
            match std::fs::symlink_metadata(&path) {
                Ok(_) if !path.starts_with(&root) => Err(std::io::Error::other(
                    "workspace path is outside the workspace root",
                )),
                Ok(_) => std::fs::remove_dir_all(&path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| BackendError::Internal(e.to_string()))?
        .map_err(|e| BackendError::Internal(format!("cannot remove the workspace: {e}")))?;
        self.registry
            .remove(owner, name.as_str())
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
        wait: Duration,
    ) -> Result<AgentEndpoint, BackendError> {
        let rec = self.record(owner, name).await?;
        let state = self.ensure_agent(&rec)?;
        let _ = self.registry.touch(owner, name.as_str(), now_ms()).await;
        match next_outcome(state, wait).await {
            AgentState::Running(ep) => Ok(ep),
            AgentState::Stopped => Err(BackendError::Unavailable(
                "the workspace's agent was stopped".into(),
            )),
            AgentState::Restarting { why, .. } => Err(BackendError::Unavailable(format!(
                "the workspace's agent is restarting: {why}"
            ))),
            AgentState::Starting(_) => Err(BackendError::Unavailable(
                "the workspace's agent is still starting".into(),
            )),
        }
    }

    fn running(&self) -> Vec<(String, WorkspaceName)> {
        self.agents()
            .iter()
            .filter(|(_, s)| matches!(*s.state.borrow(), AgentState::Running(_)))
            .filter_map(|((owner, name), _)| Some((owner.clone(), WorkspaceName::new(name).ok()?)))
            .collect()
    }

    async fn running_endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<Option<AgentEndpoint>, BackendError> {
        let key = (owner.to_owned(), name.as_str().to_owned());
        Ok(self
            .agents()
            .get(&key)
            .and_then(|s| match &*s.state.borrow() {
                AgentState::Running(ep) => Some(ep.clone()),
                _ => None,
            }))
    }

    async fn shutdown(&self) {
        self.tasks.close();
        let stops: Vec<CancellationToken> =
            self.agents().values().map(|s| s.stop.clone()).collect();
        for s in stops {
            s.cancel();
        }
        self.tasks.wait().await;
    }
}

struct AgentSpec {
    bin: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    name: String,
    /// `<owner>/<name>`: the agent refuses state recorded for another.
    id: String,
}

/// Runs one workspace's agent until `stop`, restarting it when it dies.
async fn supervise(
    spec: AgentSpec,
    state: watch::Sender<AgentState>,
    stop: CancellationToken,
    metrics: Metrics,
) {
    let mut backoff = Backoff::default();
    let mut failures = 0;
    loop {
        let last = match &*state.borrow() {
            AgentState::Restarting { why, .. } => Some(why.clone()),
            _ => None,
        };
        state.send_replace(AgentState::Starting(last));
        let started = Instant::now();
        let why = tokio::select! {
            r = start_agent(&spec) => match r {
                Ok(Started { mut child, endpoint, stderr }) => {
                    tracing::info!(workspace = %spec.name, url = %endpoint.base_url, pid = ?child.id(), "agent running");
                    state.send_replace(AgentState::Running(endpoint));
                    tokio::select! {
                        status = child.wait() => {
                            metrics.agent_restarts.inc();
                            let mut why = match status {
                                Ok(s) => format!("agent exited ({s})"),
                                Err(e) => format!("agent lost: {e}"),
                            };
                            if let Some(reason) = stderr.reason(LAST_WORDS_WAIT).await {
                                why = format!("{why}: {reason}");
                            }
                            tracing::warn!(workspace = %spec.name, "{why}; restarting");
                            why
                        }
                        () = stop.cancelled() => {
                            terminate(child).await;
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(workspace = %spec.name, "agent failed to start: {e}");
                    e
                }
            },
            () = stop.cancelled() => break,
        };
        let delay = backoff.after_run(started.elapsed());
        failures += 1;
        state.send_replace(AgentState::Restarting { why, n: failures });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
    state.send_replace(AgentState::Stopped);
}

/// A running agent.
struct Started {
    child: Child,
    endpoint: AgentEndpoint,
    stderr: AgentStderr,
}

/// Spawns the agent and waits for its listening line. The token goes in the
/// environment, never argv (argv is world-readable in /proc).
async fn start_agent(spec: &AgentSpec) -> Result<Started, String> {
    // At every start, not only the first: the directory may have been
    // swapped while the agent ran.
    ensure_inside(&spec.root, &spec.dir).map_err(|e| e.to_string())?;
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let token = hex::encode(raw);
    let mut cmd = Command::new(&spec.bin);
    // Not through the agent's holder (`--hold`) yet: a holder whose gateway was
    // killed outright was seen to outlive it (1 run in 3 of
    // agents_stop_when_the_gateway_is_killed_outright), which must be found first.
    for var in HIDDEN_ENV {
        cmd.env_remove(var);
    }
    cmd.env("DISPATCH_AGENT_TOKEN", &token)
        .env("DISPATCH_AGENT_LISTEN", "127.0.0.1:0")
        .env("DISPATCH_WORKSPACE", &spec.dir)
        .env("DISPATCH_WORKSPACE_NAME", &spec.name)
        .env("DISPATCH_WORKSPACE_ID", &spec.id)
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C meant for the gateway does not hit
        // the agents first; the gateway stops them in order.
        .process_group(0)
        .kill_on_drop(true);
    let gateway = nix::unistd::getpid();
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // system calls (prctl, setrlimit, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The agent goes when the gateway goes, even when the gateway is
            // killed outright (it stops its agents itself otherwise). The
            // signal follows the thread that forked: a tokio worker, which
            // lives as long as the runtime.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            crate::open_files::restore_limit()?;
            if nix::unistd::getppid() != gateway {
                return Err(std::io::Error::other("the gateway exited"));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", spec.bin.display()))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("agent stdout or stderr not captured".to_owned());
    };
    let stderr = AgentStderr::capture(stderr);
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            if let Some(addr) = parse_listening_line(&line) {
                return Ok(addr);
            }
            tracing::debug!(workspace = %spec.name, "agent stdout: {line}");
        }
        Err("agent exited before it listened".to_owned())
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "agent printed no listening line in {START_TIMEOUT:?}"
        ))
    });
    let addr = match listening {
        Ok(addr) => addr,
        Err(why) => {
            // Its own words say why (e.g. it cannot write `.dispatch`).
            let _ = child.start_kill();
            return Err(match stderr.reason(LAST_WORDS_WAIT).await {
                Some(reason) => format!("{why}: {reason}"),
                None => why,
            });
        }
    };
    // Keep draining stdout so the agent never blocks on a full pipe.
    let name = spec.name.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(workspace = %name, "agent stdout: {line}");
        }
    });
    Ok(Started {
        child,
        endpoint: AgentEndpoint {
            base_url: format!("http://{addr}"),
            token,
        },
        stderr,
    })
}

/// SIGTERM, a grace period, then SIGKILL.
async fn terminate(mut child: Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(?pid, "agent ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000), ms(5000));
        let got: Vec<_> = (0..6).map(|_| b.after_run(ms(10))).collect();
        assert_eq!(
            got,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(b.after_run(ms(6000)), ms(100));
        assert_eq!(b.after_run(ms(0)), ms(200));
    }

    #[test]
    fn listening_line() {
        assert_eq!(
            parse_listening_line("DISPATCH_AGENT_LISTENING 127.0.0.1:4567\n"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(parse_listening_line("DISPATCH_AGENT_LISTENING nope"), None);
        assert_eq!(parse_listening_line("something else"), None);
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("me/ok")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(ensure_inside(&root, &root.join("me/ok")).is_ok());
        assert!(ensure_inside(&root, &root).is_err());
        std::os::unix::fs::symlink(dir.path(), root.join("me/link")).unwrap();
        assert!(ensure_inside(&root, &root.join("me/link")).is_err());
        // A workspace swapped for a link to another user's, inside the root.
        std::fs::create_dir_all(root.join("bob/bob-ws")).unwrap();
        std::fs::rename(root.join("me/ok"), root.join("me/ok.old")).unwrap();
        std::os::unix::fs::symlink("../bob/bob-ws", root.join("me/ok")).unwrap();
        let e = ensure_inside(&root, &root.join("me/ok")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
