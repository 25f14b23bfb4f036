//! What every kind of session has in common, and the agent services that
//! sessions use.
//!
//! Each kind (terminal, Claude) implements [`Session`]; this core knows no
//! kind: code that needs one kind matches on `sessions::AnySession`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use dispatch_api::{ErrorCode, ServerMessage, SessionId, SessionInfo, SessionKind};
use tokio::sync::broadcast;

use crate::db::{Db, SessionRow};
use crate::event_log_bounds::{self, EventBounds};
use crate::metrics::Metrics;

/// An error to send to the client: its code and message.
pub type ClientError = (ErrorCode, String);

/// What a session is and how it ended, kept alike for every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub title: String,
    /// Working directory, relative to the workspace root.
    pub cwd: String,
    pub created: i64,
    pub ended: Option<i64>,
    pub exit_code: Option<i32>,
    pub end_reason: Option<String>,
    /// Terminal size (`cols`, `rows`); none for kinds without a screen.
    pub size: Option<(u16, u16)>,
}

impl Meta {
    pub fn started(title: String, cwd: String, created: i64, size: Option<(u16, u16)>) -> Self {
        Meta {
            title,
            cwd,
            created,
            ended: None,
            exit_code: None,
            end_reason: None,
            size,
        }
    }

    /// A session read back after an agent restart: ended, at the time of the
    /// restart if its end was never recorded.
    pub fn restored(row: &SessionRow, now: i64) -> Self {
        Meta {
            title: row.title.clone(),
            cwd: row.cwd.clone(),
            created: row.created,
            ended: row.ended.or(Some(now)),
            exit_code: row.exit_code,
            end_reason: row.end_reason.clone(),
            size: row.cols.zip(row.rows),
        }
    }

    pub fn end(&mut self, at: i64, exit_code: Option<i32>, reason: Option<String>) {
        self.ended = Some(at);
        self.exit_code = exit_code;
        self.end_reason = reason;
    }

    /// `SessionInfo` for session `id` with this meta, its output (or event)
    /// positions `[oldest, end)` and `attached` clients.
    pub fn info(
        &self,
        id: &SessionId,
        kind: SessionKind,
        (oldest, end): (u64, u64),
        attached: u32,
    ) -> SessionInfo {
        SessionInfo {
            id: id.clone(),
            kind,
            title: self.title.clone(),
            cwd: self.cwd.clone(),
            created: self.created,
            ended: self.ended,
            exit_code: self.exit_code,
            end_reason: self.end_reason.clone(),
            offset: end,
            oldest_offset: oldest,
            attached,
            cols: self.size.map(|(c, _)| c),
            rows: self.size.map(|(_, r)| r),
            conversation_id: None,
            foreground: None,
        }
    }
}

pub trait Session: Send + Sync + 'static {
    fn id(&self) -> &SessionId;
    fn info(&self) -> SessionInfo;
    fn is_running(&self) -> bool;
    /// A name the user chose (`session.rename`); kept in SQLite too.
    fn set_title(&self, title: String);
    /// Begins ending the session's processes and returns at once; the session
    /// reports its end (`session.ended`) when they are gone.
    fn stop(&self, reason: &str);
    /// Clients streaming the session now (`attached` in its info).
    fn attachments(&self) -> &AtomicU32;
}

/// What a client is told when a session it streams has ended: its exit code
/// and why.
pub fn ended_message(s: &dyn Session) -> dispatch_api::ServerMessage {
    let info = s.info();
    dispatch_api::ServerMessage::SessionEnded {
        id: s.id().clone(),
        exit_code: info.exit_code,
        reason: info.end_reason,
    }
}

/// One client streaming session `S`: counted in the session's info while
/// it lives, however the stream ends.
pub struct Attached<S: Session>(Arc<S>);

impl<S: Session> Attached<S> {
    pub fn new(s: &Arc<S>) -> Self {
        s.attachments().fetch_add(1, Ordering::Relaxed);
        Attached(s.clone())
    }
}

impl<S: Session> Drop for Attached<S> {
    fn drop(&mut self) {
        self.0.attachments().fetch_sub(1, Ordering::Relaxed);
    }
}

/// Services of the agent that a session uses while it runs.
pub struct Services {
    pub db: Db,
    pub metrics: Metrics,
    /// Session lifecycle messages (`session.created`, `session.ended`) for
    /// every connection.
    pub events: broadcast::Sender<ServerMessage>,
    /// Bumped when Claude's state as watchers see it changes
    /// (`GET /claude/status?since=`); starts at the start time in ms, so a
    /// restarted agent's versions are newer than its predecessor's.
    pub claude_changes: tokio::sync::watch::Sender<u64>,
    last_activity: AtomicI64,
    event_bounds: EventBounds,
    /// Events logged by this run, for pruning every so many.
    events_logged: AtomicU64,
}

impl Services {
    pub fn new(db: Db, metrics: Metrics, event_bounds: EventBounds) -> Self {
        let (events, _) = broadcast::channel(256);
        Services {
            db,
            metrics,
            events,
            claude_changes: tokio::sync::watch::Sender::new(now_ms().max(1) as u64),
            last_activity: AtomicI64::new(0),
            event_bounds,
            events_logged: AtomicU64::new(0),
        }
    }

    pub fn event_bounds(&self) -> &EventBounds {
        &self.event_bounds
    }

    pub fn claude_changed(&self) {
        self.claude_changes.send_modify(|v| *v += 1);
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

    /// Appends to the event log without waiting; the detail is clipped, and
    /// every so many events the log is pruned to its bounds.
    pub fn event(&self, session: Option<&SessionId>, kind: &'static str, detail: Option<String>) {
        let sid = session.map(|s| s.as_str().to_owned());
        let detail = event_log_bounds::clip_detail(detail);
        let ts = now_ms();
        let n = self.events_logged.fetch_add(1, Ordering::Relaxed) + 1;
        let bounds = self.event_bounds;
        let prune = n.is_multiple_of(bounds.prune_every());
        self.db.fire("event", move |c| {
            crate::db::insert_event(c, ts, sid.as_deref(), kind, detail.as_deref())?;
            if prune {
                event_log_bounds::prune(c, &bounds, ts)?;
            }
            Ok(())
        });
    }
}

pub use dispatch_process::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ended: Option<i64>, size: Option<(u16, u16)>) -> SessionRow {
        SessionRow {
            id: "s1".into(),
            kind: "terminal".into(),
            title: "build".into(),
            cwd: "src".into(),
            created: 10,
            ended,
            exit_code: Some(2),
            end_reason: None,
            cols: size.map(|s| s.0),
            rows: size.map(|s| s.1),
            log_dir: None,
            oldest_offset: 0,
            end_offset: 0,
        }
    }

    struct Fake {
        id: SessionId,
        attached: AtomicU32,
    }

    impl Session for Fake {
        fn id(&self) -> &SessionId {
            &self.id
        }
        fn info(&self) -> SessionInfo {
            Meta::started(String::new(), ".".into(), 0, None).info(
                &self.id,
                SessionKind::Terminal,
                (0, 0),
                self.attached.load(Ordering::Relaxed),
            )
        }
        fn is_running(&self) -> bool {
            true
        }
        fn set_title(&self, _: String) {}
        fn stop(&self, _: &str) {}
        fn attachments(&self) -> &AtomicU32 {
            &self.attached
        }
    }

    #[test]
    fn an_attachment_is_counted_while_it_lives_even_when_its_stream_panics() {
        let s = Arc::new(Fake {
            id: SessionId::new("t1").unwrap(),
            attached: AtomicU32::new(0),
        });
        let a = Attached::new(&s);
        let s2 = s.clone();
        let b = std::thread::spawn(move || {
            let _b = Attached::new(&s2);
            assert_eq!(s2.info().attached, 2);
            panic!("the stream failed");
        });
        assert!(b.join().is_err());
        assert_eq!(s.info().attached, 1);
        drop(a);
        assert_eq!(s.info().attached, 0);
    }

    #[test]
    fn a_restored_session_has_ended_even_if_its_end_was_never_written() {
        assert_eq!(Meta::restored(&row(Some(20), None), 99).ended, Some(20));
        let m = Meta::restored(&row(None, Some((100, 30))), 99);
        assert_eq!(
            (m.ended, m.exit_code, m.size),
            (Some(99), Some(2), Some((100, 30)))
        );
    }

    #[test]
    fn info_reports_positions_size_and_clients() {
        let id = SessionId::new("s1").unwrap();
        let mut m = Meta::started("t".into(), ".".into(), 5, Some((80, 24)));
        m.end(9, Some(0), Some("stopped".into()));
        let i = m.info(&id, SessionKind::Terminal, (3, 40), 2);
        assert_eq!((i.oldest_offset, i.offset, i.attached), (3, 40, 2));
        assert_eq!((i.cols, i.rows), (Some(80), Some(24)));
        assert_eq!((i.ended, i.exit_code), (Some(9), Some(0)));
        assert_eq!(i.end_reason.as_deref(), Some("stopped"));
        let c = Meta::started("c".into(), ".".into(), 5, None).info(
            &id,
            SessionKind::Claude,
            (0, 0),
            0,
        );
        assert_eq!((c.cols, c.rows, c.ended), (None, None, None));
    }
}
