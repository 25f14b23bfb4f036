//! What every kind of session has in common, and the agent services that
//! sessions use.
//!
//! The registry holds sessions as `Arc<dyn Session>`, so a second kind (Claude
//! sessions: a child process emitting JSON events instead of a PTY) plugs in by
//! implementing [`Session`]; code that needs one kind downcasts with
//! [`downcast`].

use std::any::Any;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dispatch_api::{ServerMessage, SessionId, SessionInfo, SessionKind};
use tokio::sync::broadcast;

use crate::db::Db;
use crate::metrics::Metrics;
use crate::screen_worker::ScreenWorker;

pub trait Session: Send + Sync + 'static {
    fn id(&self) -> &SessionId;
    fn kind(&self) -> SessionKind;
    fn info(&self) -> SessionInfo;
    fn is_running(&self) -> bool;
    /// Begins ending the session's processes and returns at once; the session
    /// reports its end (`session.ended`) when they are gone.
    fn stop(&self, reason: &str);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// `Arc<dyn Session>` to a concrete kind, if it is that kind.
pub fn downcast<T: Session>(s: Arc<dyn Session>) -> Option<Arc<T>> {
    s.into_any().downcast::<T>().ok()
}

/// Services of the agent that a session uses while it runs.
pub struct Services {
    pub db: Db,
    pub metrics: Metrics,
    /// Session lifecycle messages (`session.created`, `session.ended`) for
    /// every connection.
    pub events: broadcast::Sender<ServerMessage>,
    pub screen_worker: ScreenWorker,
    last_activity: AtomicI64,
}

impl Services {
    pub fn new(db: Db, metrics: Metrics, screen_worker: ScreenWorker) -> Self {
        let (events, _) = broadcast::channel(256);
        Services {
            db,
            metrics,
            events,
            screen_worker,
            last_activity: AtomicI64::new(0),
        }
    }

    pub fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Option<i64> {
        match self.last_activity.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Appends to the event log without waiting.
    pub fn event(&self, session: Option<&SessionId>, kind: &'static str, detail: Option<String>) {
        let sid = session.map(|s| s.as_str().to_owned());
        let ts = now_ms();
        self.db.fire("event", move |c| {
            crate::db::insert_event(c, ts, sid.as_deref(), kind, detail.as_deref())
        });
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Locks a mutex, carrying on after a panic elsewhere poisoned it: the data
/// behind these locks stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
