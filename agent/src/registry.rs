//! The sessions of this workspace, of every kind, by id.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use dispatch_api::{ErrorCode, SessionId, SessionInfo};

use crate::session::{Session, downcast};
use crate::terminal::{ClientError, TerminalSession};

#[derive(Default)]
pub struct Registry {
    sessions: RwLock<BTreeMap<SessionId, Arc<dyn Session>>>,
}

impl Registry {
    pub fn insert(&self, s: Arc<dyn Session>) {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.insert(s.id().clone(), s);
    }

    pub fn get(&self, id: &SessionId) -> Option<Arc<dyn Session>> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<dyn Session>> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Oldest first.
    pub fn infos(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.all().iter().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn running(&self) -> usize {
        self.all().iter().filter(|s| s.is_running()).count()
    }

    /// The terminal session `id`, or the error to send when there is none.
    pub fn terminal(&self, id: &SessionId) -> Result<Arc<TerminalSession>, ClientError> {
        let s = self.get(id).ok_or_else(|| {
            (
                ErrorCode::NoSuchSession,
                format!("no session {id} in this workspace"),
            )
        })?;
        downcast::<TerminalSession>(s).ok_or_else(|| {
            (
                ErrorCode::WrongSessionType,
                format!("session {id} is not a terminal"),
            )
        })
    }
}
