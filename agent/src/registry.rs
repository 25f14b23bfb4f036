//! The sessions of this workspace, of every kind, by id, and the gate that
//! new sessions pass (one at a time, within the session limit).
//!
//! It holds entries of a type the layer above the kinds chooses (an enum of
//! the kinds), so that code needing one kind matches instead of downcasting,
//! and this core knows no kind.

use std::collections::BTreeMap;
use std::sync::RwLock;

use dispatch_api::{ErrorCode, SessionId, SessionInfo};

use crate::session::{ClientError, Session};

/// A registered session of some kind.
pub trait Entry: Clone + Send + Sync + 'static {
    fn session(&self) -> &dyn Session;
}

/// A fresh id for a new session: `prefix` tells the kind at a glance.
pub fn new_id(prefix: char) -> SessionId {
    let u = uuid::Uuid::new_v4().simple().to_string();
    // 16 hex digits of randomness is plenty within one workspace.
    SessionId::new(&format!("{prefix}{}", &u[..16])).unwrap_or_else(|_| unreachable!())
}

pub struct Registry<E> {
    sessions: RwLock<BTreeMap<SessionId, E>>,
    /// Held while checking the session limit and registering a new session, so
    /// that two concurrent starts cannot both take the last place.
    start_lock: tokio::sync::Mutex<()>,
    max_running: usize,
}

/// A place in the queue of starts: while it lives no other start passes.
pub struct Admission<'a, E> {
    _turn: tokio::sync::MutexGuard<'a, ()>,
    registry: &'a Registry<E>,
}

impl<E: Entry> Admission<'_, E> {
    /// Refuses a start when the workspace already runs its most sessions.
    pub fn check_limit(&self) -> Result<(), ClientError> {
        let running = self.registry.running();
        if running >= self.registry.max_running {
            return Err((
                ErrorCode::SessionLimit,
                format!("this workspace already runs {running} sessions, the most it may"),
            ));
        }
        Ok(())
    }
}

impl<E: Entry> Registry<E> {
    pub fn new(max_running: usize) -> Self {
        Registry {
            sessions: RwLock::default(),
            start_lock: tokio::sync::Mutex::new(()),
            max_running,
        }
    }

    /// Waits for this start's turn; hold it until the session is inserted.
    pub async fn admission(&self) -> Admission<'_, E> {
        Admission {
            _turn: self.start_lock.lock().await,
            registry: self,
        }
    }

    pub fn insert(&self, e: impl Into<E>) {
        let e = e.into();
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.insert(e.session().id().clone(), e);
    }

    pub fn get(&self, id: &SessionId) -> Option<E> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    /// The session `id`, or the error to send when there is none.
    pub fn find(&self, id: &SessionId) -> Result<E, ClientError> {
        self.get(id).ok_or_else(|| {
            (
                ErrorCode::NoSuchSession,
                format!("no session {id} in this workspace"),
            )
        })
    }

    pub fn all(&self) -> Vec<E> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Oldest first.
    pub fn infos(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.all().iter().map(|e| e.session().info()).collect();
        v.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn running(&self) -> usize {
        self.all()
            .iter()
            .filter(|e| e.session().is_running())
            .count()
    }
}
