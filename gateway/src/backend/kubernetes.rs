//! The `kubernetes` backend: workspaces are `Workspace` resources in one
//! namespace, reconciled into pods by the operator.
//!
//! Reads come from a watch-backed cache (a kube-runtime reflector), so a
//! listing costs no apiserver request. Writes go to the apiserver: create from
//! the configured template, `open` resumes a suspended workspace (patches
//! `spec.suspended=false`), delete. A WebSocket to a suspended workspace is
//! refused (503) rather than resuming it, so that a suspension is never undone
//! by a browser tab reconnecting. To reach an agent the gateway waits for
//! the cache to show it Running with an endpoint, then reads the agent's token
//! from the workspace's Secret with a single `get` (the gateway's RBAC allows
//! `get` on Secrets and nothing wider, so it cannot list or watch them).
//!
//! Nothing here is per replica: every replica watches the same resources.

pub mod revocations;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dispatch_api::crd::{TOKEN_KEY, Workspace};
use dispatch_api::rest::{WorkspaceInfo, WorkspacePhase};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::{AgentEndpoint, BackendError, WorkspaceBackend};
use crate::names::WorkspaceName;
pub use view::Template;

/// Field manager of the gateway's writes.
const MANAGER: &str = "dispatch-gateway";
/// How long a request waits for the first full listing after start-up.
const SYNC_WAIT: Duration = Duration::from_secs(10);

pub struct KubernetesBackend {
    namespace: String,
    workspaces: Api<Workspace>,
    secrets: Api<Secret>,
    cache: Store<Workspace>,
    /// Bumped on every watch event, so waiters re-check the cache.
    changes: watch::Receiver<u64>,
    template: Template,
    watcher: tokio::task::JoinHandle<()>,
}

fn api_error(e: kube::Error) -> BackendError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => BackendError::Internal(format!(
            "the gateway's service account may not do this: {}",
            s.message
        )),
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            BackendError::Internal(format!("the cluster refused the workspace: {}", s.message))
        }
        _ => BackendError::Unavailable(format!("the Kubernetes API is unavailable: {e}")),
    }
}

impl KubernetesBackend {
    /// Starts watching the namespace's Workspaces; returns at once (requests
    /// wait for the first listing).
    pub fn start(client: kube::Client, namespace: &str, template: Template) -> Self {
        let workspaces: Api<Workspace> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        let (cache, writer) = reflector::store();
        let (tx, changes) = watch::channel(0u64);
        let stream = reflector::reflector(
            writer,
            watcher(workspaces.clone(), watcher::Config::default())
                .default_backoff()
                // The cache holds every workspace: keep only what is read.
                .modify(|w| w.managed_fields_mut().clear()),
        );
        let ns = namespace.to_owned();
        let watcher = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    // The watcher retries with backoff; keep serving the cache.
                    Err(e) => tracing::warn!(namespace = %ns, "watching workspaces: {e}"),
                }
            }
        });
        KubernetesBackend {
            namespace: namespace.to_owned(),
            workspaces,
            secrets,
            cache,
            changes,
            template,
            watcher,
        }
    }

    async fn synced(&self) -> Result<(), BackendError> {
        match tokio::time::timeout(SYNC_WAIT, self.cache.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(BackendError::Unavailable(
                "the workspace list is not loaded yet (is the Kubernetes API reachable?)".into(),
            )),
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<Workspace>> {
        self.cache
            .get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// The owner's workspace from the cache; another owner's is "no such".
    async fn owned(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<Arc<Workspace>, BackendError> {
        self.synced().await?;
        self.cached(name.as_str())
            .filter(|w| view::owned_by(w, owner))
            .ok_or_else(|| BackendError::NoSuchWorkspace(name.to_string()))
    }

    async fn resume(&self, name: &WorkspaceName) -> Result<Workspace, BackendError> {
        let patch = serde_json::json!({"spec": {"suspended": false}});
        self.workspaces
            .patch(
                name.as_str(),
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => {
                    BackendError::NoSuchWorkspace(name.to_string())
                }
                e => api_error(e),
            })
    }

    async fn token(&self, secret: &str) -> Result<String, BackendError> {
        let s = self.secrets.get(secret).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => {
                BackendError::Unavailable(format!("the agent token Secret {secret} is missing"))
            }
            e => api_error(e),
        })?;
        let bytes = s
            .data
            .and_then(|mut d| d.remove(TOKEN_KEY))
            .ok_or_else(|| {
                BackendError::Unavailable(format!("Secret {secret} has no {TOKEN_KEY:?} key"))
            })?;
        String::from_utf8(bytes.0)
            .map(|t| t.trim().to_owned())
            .map_err(|_| BackendError::Internal(format!("Secret {secret} holds no text token")))
    }
}

impl Drop for KubernetesBackend {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

#[async_trait]
impl WorkspaceBackend for KubernetesBackend {
    async fn list(&self, owner: &str) -> Result<Vec<WorkspaceInfo>, BackendError> {
        self.synced().await?;
        let mut out: Vec<WorkspaceInfo> = self
            .cache
            .state()
            .iter()
            .filter(|w| view::owned_by(w, owner))
            .map(|w| view::info(w))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        if !view::name_fits(name.as_str()) {
            return Err(BackendError::Internal(format!(
                "workspace names are at most {} characters here",
                dispatch_api::crd::MAX_NAME_LEN
            )));
        }
        let obj: Workspace = serde_json::from_value(self.template.workspace(
            &self.namespace,
            name.as_str(),
            owner,
        ))
        .map_err(|e| BackendError::Internal(format!("workspace template: {e}")))?;
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match self.workspaces.create(&pp, &obj).await {
            Ok(ws) => Ok(view::info(&ws)),
            // Names are per namespace, so another owner's name is taken too.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(BackendError::AlreadyExists(name.to_string()))
            }
            Err(e) => Err(api_error(e)),
        }
    }

    async fn status(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<WorkspaceInfo, BackendError> {
        Ok(view::info(&*self.owned(owner, name).await?))
    }

    async fn open(&self, owner: &str, name: &WorkspaceName) -> Result<WorkspaceInfo, BackendError> {
        let ws = self.owned(owner, name).await?;
        if ws.spec.suspended {
            tracing::info!(%owner, workspace = %name, "resuming workspace");
            return Ok(view::info(&self.resume(name).await?));
        }
        Ok(view::info(&ws))
    }

    async fn delete(&self, owner: &str, name: &WorkspaceName) -> Result<(), BackendError> {
        self.owned(owner, name).await?;
        match self
            .workspaces
            .delete(name.as_str(), &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
        wait: Duration,
    ) -> Result<AgentEndpoint, BackendError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.changes.clone();
        let mut resumed = false;
        loop {
            changes.borrow_and_update();
            let ws = self.owned(owner, name).await?;
            // Only an explicit open resumes: a tab left open that reconnects
            // must not undo a suspension (kubectl's or the idle timeout's).
            // The cache may lag an open that just happened (here or on another
            // replica), so the apiserver has the last word.
            if ws.spec.suspended && !resumed {
                let fresh = self
                    .workspaces
                    .get_opt(name.as_str())
                    .await
                    .map_err(api_error)?;
                match fresh {
                    Some(w) if view::owned_by(&w, owner) && !w.spec.suspended => resumed = true,
                    Some(w) if view::owned_by(&w, owner) => {
                        return Err(BackendError::Unavailable(format!(
                            "workspace {name} is suspended; open it to resume"
                        )));
                    }
                    _ => return Err(BackendError::NoSuchWorkspace(name.to_string())),
                }
            }
            if let Some((base_url, secret)) = view::reachable(&ws) {
                let token = self.token(&secret).await?;
                return Ok(AgentEndpoint { base_url, token });
            }
            let info = view::info(&ws);
            if info.phase == WorkspacePhase::Failed {
                let why = info
                    .message
                    .unwrap_or_else(|| "see kubectl describe".into());
                return Err(BackendError::Unavailable(format!(
                    "workspace {name} failed: {why}"
                )));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(BackendError::Internal("the workspace watch ended".into()));
                }
                Err(_) => {
                    let why = info.message.map(|m| format!(": {m}")).unwrap_or_default();
                    return Err(BackendError::Unavailable(format!(
                        "workspace {name} is {:?}, not running yet{why}",
                        info.phase
                    )));
                }
            }
        }
    }

    fn running(&self) -> Vec<(String, WorkspaceName)> {
        self.cache
            .state()
            .iter()
            .filter(|w| !w.spec.suspended && view::reachable(w).is_some())
            .filter_map(|w| {
                Some((
                    w.spec.owner.clone(),
                    WorkspaceName::new(&w.name_any()).ok()?,
                ))
            })
            .collect()
    }

    async fn running_endpoint(
        &self,
        owner: &str,
        name: &WorkspaceName,
    ) -> Result<Option<AgentEndpoint>, BackendError> {
        let Some(ws) = self
            .cached(name.as_str())
            .filter(|w| view::owned_by(w, owner) && !w.spec.suspended)
        else {
            return Ok(None);
        };
        match view::reachable(&ws) {
            Some((base_url, secret)) => Ok(Some(AgentEndpoint {
                base_url,
                token: self.token(&secret).await?,
            })),
            None => Ok(None),
        }
    }

    async fn shutdown(&self) {
        self.watcher.abort();
    }
}
