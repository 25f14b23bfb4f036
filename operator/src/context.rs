//! What every reconcile shares, and what this process remembers per workspace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_api::crd::names;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::config::WorkspaceDefaults;
use crate::idle::ActivityClient;
use crate::metrics::Metrics;
use crate::recent::Recent;
use crate::warm_volumes::Warm;

/// What every reconcile shares: the client, the caches of children, metrics,
/// and what this process remembers per workspace.
pub struct Context {
    pub client: Client,
    pub defaults: WorkspaceDefaults,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub activity: ActivityClient,
    pub pods: Store<Pod>,
    pub secrets: Store<Secret>,
    pub pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub recent: Arc<Recent>,
    /// The warm volumes, when the operator keeps some.
    pub warm: Option<Warm>,
    /// When each workspace's children were last applied in full.
    pub full_applies: Mutex<HashMap<String, Instant>>,
    /// Failed reconciles in a row, per workspace (for the backoff).
    pub failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Forgets everything about a deleted workspace (`ns/name`).
    pub fn forget(&self, key: &str) {
        self.metrics.set_phase(key, None);
        if let Ok(mut m) = self.full_applies.lock() {
            m.remove(key);
        }
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let mut children = vec![
            format!("Secret/{ns}/{}", names::token_secret(name)),
            format!("PersistentVolumeClaim/{ns}/{}", names::pvc(name)),
            format!("Service/{ns}/{}", names::service(name)),
            format!("NetworkPolicy/{ns}/{}", names::network_policy(name)),
            format!("Pod/{ns}/{}", names::pod(name)),
        ];
        if let Some(warm) = &self.warm {
            if let Some(claim) = warm.taken_by(key) {
                children.push(format!("PersistentVolumeClaim/{ns}/{claim}"));
            }
            warm.forget(key);
        }
        self.recent.forget_workspace(key, &children);
    }
}

/// Failures back off exponentially per Workspace: 0.5 s, 1 s, 2 s ... 5 min.
pub fn backoff(ctx: &Context, key: &str) -> Duration {
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    Duration::from_millis(500u64.saturating_mul(1u64 << n.min(10).saturating_sub(1)))
        .min(Duration::from_secs(300))
}
