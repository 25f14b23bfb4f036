//! What this process wrote in the last few seconds, for the short time until
//! its watch caches show it. Without it, every reconcile that a child's event
//! triggers before the caches catch up would write the same objects again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_api::crd::WorkspaceStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::status;

/// How long a write is trusted without the cache confirming it. A reconcile
/// that relied on it is requeued after this long, so a child deleted in the
/// meantime is still recreated soon.
pub const CACHE_LAG: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Recent {
    applied: Mutex<HashMap<String, (String, Instant)>>,
    pods: Mutex<HashMap<String, (Arc<Pod>, Instant)>>,
    tokens: Mutex<HashMap<String, String>>,
    statuses: Mutex<HashMap<String, (WorkspaceStatus, Instant)>>,
    /// A digest of the status this process last wrote, per workspace, kept
    /// while the workspace exists: a status that differs was written by
    /// someone else and is put right.
    status_digests: Mutex<HashMap<String, [u64; STATUS_HISTORY]>>,
    /// The Pod (uid) whose agent accepted its token, per workspace.
    token_checks: Mutex<HashMap<String, String>>,
    /// The metadata.generation each child had after this process last wrote
    /// it: a different one in the cache means someone else changed its spec
    /// (a removal leaves no trace in managedFields).
    generations: Mutex<HashMap<u64, Written>>,
}

/// A child as our last write left it (digests, so 5,000 children stay small).
struct Written {
    generation: Option<i64>,
    resource_version: u64,
}

fn digest(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// How many of its last status writes this process recognises as its own (a
/// cache that lags shows one of them).
const STATUS_HISTORY: usize = 4;

/// A digest of a status as it reads back from the apiserver.
/// `claude` is left out: the Claude watcher writes it apart from the
/// reconcile, and a change there is no reason to reconcile.
pub fn status_digest(status: &WorkspaceStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut s = status.clone();
    s.claude = None;
    serde_json::to_vec(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Drops entries older than [`CACHE_LAG`]: by then the caches know.
fn sweep<V>(m: &mut HashMap<String, (V, Instant)>) {
    if m.len() > 64 {
        m.retain(|_, (_, t)| t.elapsed() < CACHE_LAG);
    }
}

impl Recent {
    /// Whether `hash` was applied to `object` less than [`CACHE_LAG`] ago.
    pub fn applied(&self, object: &str, hash: &str) -> bool {
        self.applied
            .lock()
            .map(|m| {
                m.get(object)
                    .is_some_and(|(h, t)| h == hash && t.elapsed() < CACHE_LAG)
            })
            .unwrap_or(false)
    }

    pub fn record_applied(&self, object: &str, hash: &str) {
        if let Ok(mut m) = self.applied.lock() {
            sweep(&mut m);
            m.insert(object.to_string(), (hash.to_string(), Instant::now()));
        }
    }

    /// The object is gone (its deletion was seen): nothing vouches for it any more.
    pub fn forget_applied(&self, object: &str) {
        if let Ok(mut m) = self.applied.lock() {
            m.remove(object);
        }
        if let Ok(mut m) = self.generations.lock() {
            m.remove(&digest(object));
        }
    }

    /// What `object` was after our last write to it.
    pub fn record_written(&self, object: &str, meta: &ObjectMeta) {
        let Some(rv) = meta.resource_version.as_deref() else {
            return;
        };
        if let Ok(mut m) = self.generations.lock() {
            m.insert(
                digest(object),
                Written {
                    generation: meta.generation,
                    resource_version: digest(rv),
                },
            );
        }
    }

    /// Whether `object`'s spec changed since our last write (a generation we
    /// did not write); unknown is no.
    pub fn generation_moved(&self, object: &str, seen: &ObjectMeta) -> bool {
        let Some(seen) = seen.generation else {
            return false;
        };
        self.generations
            .lock()
            .map(|m| {
                m.get(&digest(object))
                    .and_then(|w| w.generation)
                    .is_some_and(|g| g < seen)
            })
            .unwrap_or(false)
    }

    /// Whether the cache shows `object` exactly as our last write left it
    /// (then an old foreign write in its managedFields was already answered).
    pub fn unchanged_since_written(&self, object: &str, seen: &ObjectMeta) -> bool {
        self.generations
            .lock()
            .map(|m| {
                m.get(&digest(object)).is_some_and(|w| {
                    seen.resource_version.as_deref().map(digest) == Some(w.resource_version)
                })
            })
            .unwrap_or(false)
    }

    /// The Pod as the apiserver returned it, if applied less than [`CACHE_LAG`] ago.
    pub fn pod(&self, workspace: &str) -> Option<Arc<Pod>> {
        let m = self.pods.lock().ok()?;
        m.get(workspace)
            .filter(|(_, t)| t.elapsed() < CACHE_LAG)
            .map(|(p, _)| p.clone())
    }

    pub fn record_pod(&self, workspace: &str, pod: Arc<Pod>) {
        if let Ok(mut m) = self.pods.lock() {
            sweep(&mut m);
            m.insert(workspace.to_string(), (pod, Instant::now()));
        }
    }

    /// The token this process put in the workspace's Secret (until the cache has it).
    pub fn token(&self, workspace: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(workspace).cloned()
    }

    pub fn record_token(&self, workspace: &str, token: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(workspace.to_string(), token.to_string());
        }
    }

    /// Whether the agent of the Pod `uid` was asked about its token already.
    pub fn token_checked(&self, workspace: &str, uid: &str) -> bool {
        self.token_checks
            .lock()
            .map(|m| m.get(workspace).is_some_and(|u| u == uid))
            .unwrap_or(false)
    }

    pub fn record_token_checked(&self, workspace: &str, uid: &str) {
        if let Ok(mut m) = self.token_checks.lock() {
            m.insert(workspace.to_string(), uid.to_string());
        }
    }

    /// The cache has the Secret now: the remembered token is not needed.
    pub fn forget_token(&self, workspace: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.remove(workspace);
        }
    }

    /// The status this process wrote less than [`CACHE_LAG`] ago (the cache
    /// may not show it yet).
    pub fn last_status(&self, workspace: &str) -> Option<WorkspaceStatus> {
        let m = self.statuses.lock().ok()?;
        m.get(workspace)
            .filter(|(_, t)| t.elapsed() < CACHE_LAG)
            .map(|(s, _)| s.clone())
    }

    /// Whether `next` is what this process last wrote as the workspace's status.
    pub fn status_written(&self, workspace: &str, next: &WorkspaceStatus) -> bool {
        self.statuses
            .lock()
            .map(|m| {
                m.get(workspace)
                    .is_some_and(|(s, t)| t.elapsed() < CACHE_LAG && !status::differs(s, next))
            })
            .unwrap_or(false)
    }

    pub fn record_status(&self, workspace: &str, written: &WorkspaceStatus) {
        if let Ok(mut m) = self.statuses.lock() {
            sweep(&mut m);
            m.insert(workspace.to_string(), (written.clone(), Instant::now()));
        }
        self.expect_status(workspace, written);
    }

    /// The status about to be written: its watch event may come before the reply.
    pub fn expect_status(&self, workspace: &str, status: &WorkspaceStatus) {
        let d = status_digest(status);
        if let Ok(mut m) = self.status_digests.lock() {
            let h = m
                .entry(workspace.to_string())
                .or_insert([d; STATUS_HISTORY]);
            if h[0] != d {
                h.rotate_right(1);
                h[0] = d;
            }
        }
    }

    /// The digest of the status this process last wrote for the workspace.
    pub fn status_digest(&self, workspace: &str) -> Option<u64> {
        Some(self.status_digests.lock().ok()?.get(workspace)?[0])
    }

    /// Whether `status` is one this process wrote lately (else someone else did).
    pub fn wrote_status(&self, workspace: &str, status: &WorkspaceStatus) -> bool {
        let d = status_digest(status);
        self.status_digests
            .lock()
            .map(|m| m.get(workspace).is_some_and(|h| h.contains(&d)))
            .unwrap_or(false)
    }

    /// Drops everything about a deleted workspace (`ns/name`) and its children.
    pub fn forget_workspace(&self, workspace: &str, children: &[String]) {
        for c in children {
            self.forget_applied(c);
        }
        if let Ok(mut m) = self.pods.lock() {
            m.remove(workspace);
        }
        self.forget_token(workspace);
        if let Ok(mut m) = self.statuses.lock() {
            m.remove(workspace);
        }
        if let Ok(mut m) = self.status_digests.lock() {
            m.remove(workspace);
        }
        if let Ok(mut m) = self.token_checks.lock() {
            m.remove(workspace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_same_hash() {
        let r = Recent::default();
        assert!(!r.applied("Pod/ns/a", "h1"));
        r.record_applied("Pod/ns/a", "h1");
        assert!(r.applied("Pod/ns/a", "h1"));
        assert!(!r.applied("Pod/ns/a", "h2"));
        r.forget_workspace("ns/a", &["Pod/ns/a".to_string()]);
        assert!(!r.applied("Pod/ns/a", "h1"));
    }

    #[test]
    fn a_status_read_back_has_the_digest_it_was_written_with() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let s = WorkspaceStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "AgentReady".into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
            }],
            last_activity: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        };
        let back: WorkspaceStatus =
            serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(status_digest(&back), status_digest(&s));
        let r = Recent::default();
        r.record_status("ns/a", &s);
        assert!(r.wrote_status("ns/a", &back));
        assert!(!r.wrote_status("ns/a", &WorkspaceStatus::default()));
    }

    #[test]
    fn a_child_is_known_as_our_write_left_it() {
        let r = Recent::default();
        let meta = |g: i64, rv: &str| ObjectMeta {
            generation: Some(g),
            resource_version: Some(rv.into()),
            ..Default::default()
        };
        assert!(
            !r.generation_moved("Pod/n/a", &meta(2, "5")),
            "unknown is no"
        );
        r.record_written("Pod/n/a", &meta(2, "5"));
        assert!(r.unchanged_since_written("Pod/n/a", &meta(2, "5")));
        assert!(!r.unchanged_since_written("Pod/n/a", &meta(2, "6")));
        assert!(!r.generation_moved("Pod/n/a", &meta(2, "6")));
        assert!(r.generation_moved("Pod/n/a", &meta(3, "7")));
        r.forget_applied("Pod/n/a");
        assert!(!r.generation_moved("Pod/n/a", &meta(3, "7")));
    }

    #[test]
    fn status_compared_without_timestamps() {
        let r = Recent::default();
        let s = WorkspaceStatus {
            endpoint: Some("http://x".into()),
            ..Default::default()
        };
        assert!(!r.status_written("ns/a", &s));
        r.record_status("ns/a", &s);
        assert!(r.status_written("ns/a", &s));
        let other = WorkspaceStatus {
            endpoint: None,
            ..s.clone()
        };
        assert!(!r.status_written("ns/a", &other));
    }
}
