//! SQLite at `<workspace>/.dispatch/agent.db` (WAL): sessions, the output log
//! index, and an event log. One dedicated thread owns the connection; async
//! code hands it closures, so SQLite never blocks the runtime.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{Connection, params};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Job>,
    /// The directory holding the database; log paths under it are stored
    /// relative to it, so a workspace that is moved keeps its history.
    dir: PathBuf,
}

/// A session as stored. `kind` is the wire name of [`dispatch_api::SessionKind`]
/// ("terminal", "claude"), so other kinds of session share the table.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub cwd: String,
    pub created: i64,
    pub ended: Option<i64>,
    pub exit_code: Option<i32>,
    pub end_reason: Option<String>,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
    /// Directory of the output log (segment files), when the kind has one.
    pub log_dir: Option<String>,
    pub oldest_offset: u64,
    pub end_offset: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    cwd TEXT NOT NULL,
    created INTEGER NOT NULL,
    ended INTEGER,
    exit_code INTEGER,
    end_reason TEXT,
    cols INTEGER,
    rows INTEGER,
    log_dir TEXT,
    oldest_offset INTEGER NOT NULL DEFAULT 0,
    end_offset INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS output_segments (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    start_offset INTEGER NOT NULL,
    PRIMARY KEY (session_id, start_offset)
);
CREATE TABLE IF NOT EXISTS session_leaders (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    pid INTEGER NOT NULL,
    start INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    session_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT
);
";

pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The WAL is reused after each checkpoint but never shrinks by itself:
    // cut it back to this after a checkpoint, so that one burst of writes
    // does not hold its size on disk for good.
    conn.pragma_update(None, "journal_size_limit", 4 << 20)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)
}

/// Sessions an earlier run left open are not running now (that run is
/// gone), but for those in `carried_on` (a holder kept them); returns the ids
/// of those marked ended.
pub fn mark_left_running(
    conn: &Connection,
    now: i64,
    carried_on: &[String],
) -> rusqlite::Result<Vec<String>> {
    let left: Vec<String> = conn
        .prepare("SELECT id FROM sessions WHERE ended IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut marked = Vec::new();
    for id in left.into_iter().filter(|id| !carried_on.contains(id)) {
        conn.execute(
            "UPDATE sessions SET ended = ?1, end_reason = 'agent restarted' WHERE id = ?2",
            params![now, id],
        )?;
        marked.push(id);
    }
    Ok(marked)
}

pub fn insert_session(conn: &Connection, r: &SessionRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO sessions (id, type, title, cwd, created, ended, exit_code, end_reason, cols, rows, log_dir, oldest_offset, end_offset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            r.id, r.kind, r.title, r.cwd, r.created, r.ended, r.exit_code, r.end_reason,
            r.cols, r.rows, r.log_dir, r.oldest_offset as i64, r.end_offset as i64
        ],
    )?;
    Ok(())
}

/// Records the process a session's program runs as (it leads the session's
/// process session), with its start time to tell it from a later process
/// that gets its pid.
pub fn set_leader(conn: &Connection, id: &str, pid: i32, start: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO session_leaders (session_id, pid, start) VALUES (?1, ?2, ?3)",
        params![id, pid, start as i64],
    )?;
    Ok(())
}

/// The recorded leaders (pid, start) of sessions `ids`.
pub fn leaders(conn: &Connection, ids: &[String]) -> rusqlite::Result<Vec<(i32, u64)>> {
    let mut st = conn.prepare("SELECT pid, start FROM session_leaders WHERE session_id = ?1")?;
    let mut out = Vec::new();
    for id in ids {
        let rows = st.query_map(params![id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

pub fn end_session(
    conn: &Connection,
    id: &str,
    ended: i64,
    exit_code: Option<i32>,
    reason: Option<&str>,
    oldest: u64,
    end: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET ended = ?2, exit_code = ?3, end_reason = ?4, oldest_offset = ?5, end_offset = ?6 WHERE id = ?1",
        params![id, ended, exit_code, reason, oldest as i64, end as i64],
    )?;
    Ok(())
}

/// A session's title (renamed by its user).
pub fn set_title(conn: &Connection, id: &str, title: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET title = ?2 WHERE id = ?1",
        params![id, title],
    )?;
    Ok(())
}

pub fn update_size(conn: &Connection, id: &str, cols: u16, rows: u16) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET cols = ?2, rows = ?3 WHERE id = ?1",
        params![id, cols, rows],
    )?;
    Ok(())
}

/// Records the log's segments as they stand now.
pub fn set_segments(
    conn: &mut Connection,
    id: &str,
    starts: &[u64],
    oldest: u64,
    end: u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM output_segments WHERE session_id = ?1",
        params![id],
    )?;
    for s in starts {
        tx.execute(
            "INSERT INTO output_segments (session_id, start_offset) VALUES (?1, ?2)",
            params![id, *s as i64],
        )?;
    }
    tx.execute(
        "UPDATE sessions SET oldest_offset = ?2, end_offset = ?3 WHERE id = ?1",
        params![id, oldest as i64, end as i64],
    )?;
    tx.commit()
}

#[cfg(test)]
pub fn segments(conn: &Connection, id: &str) -> rusqlite::Result<Vec<u64>> {
    let mut st = conn.prepare(
        "SELECT start_offset FROM output_segments WHERE session_id = ?1 ORDER BY start_offset",
    )?;
    let rows = st.query_map(params![id], |r| r.get::<_, i64>(0))?;
    rows.map(|r| r.map(|v| v as u64)).collect()
}

pub fn insert_event(
    conn: &Connection,
    ts: i64,
    session_id: Option<&str>,
    kind: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO events (ts, session_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        params![ts, session_id, kind, detail],
    )?;
    Ok(())
}

pub fn event_kinds(conn: &Connection, session_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT kind FROM events WHERE session_id = ?1 ORDER BY seq")?;
    let rows = st.query_map(params![session_id], |r| r.get(0))?;
    rows.collect()
}

/// The newest `limit` sessions, oldest first.
pub fn load_sessions(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<SessionRow>> {
    let mut st = conn.prepare(
        "SELECT id, type, title, cwd, created, ended, exit_code, end_reason, cols, rows, log_dir, oldest_offset, end_offset
         FROM (SELECT *, rowid AS rid FROM sessions ORDER BY created DESC, rowid DESC LIMIT ?1) ORDER BY created, rid",
    )?;
    let rows = st.query_map(params![limit], |r| {
        Ok(SessionRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            title: r.get(2)?,
            cwd: r.get(3)?,
            created: r.get(4)?,
            ended: r.get(5)?,
            exit_code: r.get(6)?,
            end_reason: r.get(7)?,
            cols: r.get(8)?,
            rows: r.get(9)?,
            log_dir: r.get(10)?,
            oldest_offset: r.get::<_, i64>(11)? as u64,
            end_offset: r.get::<_, i64>(12)? as u64,
        })
    })?;
    rows.collect()
}

impl Db {
    /// Opens (creating if needed) the database and starts its thread.
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let conn = Connection::open(path)?;
        init(&conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                for job in rx {
                    job(&mut conn);
                }
            })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(Db { tx, dir })
    }

    /// How a directory is recorded: relative to the database's own directory
    /// when it lies under it.
    pub fn stored_dir(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.dir)
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned()
    }

    /// The directory a recorded path names (older records hold absolute ones).
    pub fn resolve_dir(&self, stored: &str) -> PathBuf {
        self.dir.join(stored)
    }

    /// Runs `f` on the database thread and waits for its result.
    pub async fn call<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| anyhow::anyhow!("database thread is gone"))?;
        Ok(rx.await??)
    }

    /// Like [`Db::call`], for threads outside the runtime.
    pub fn call_blocking<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| anyhow::anyhow!("database thread is gone"))?;
        Ok(rx.recv()??)
    }

    /// Runs `f` on the database thread without waiting; failures are logged.
    pub fn fire<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let _ = self.tx.send(Box::new(move |c| {
            if let Err(e) = f(c) {
                tracing::warn!(error = %e, "database: {what} failed");
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, created: i64) -> SessionRow {
        SessionRow {
            id: id.into(),
            kind: "terminal".into(),
            title: "t".into(),
            cwd: ".".into(),
            created,
            ended: None,
            exit_code: None,
            end_reason: None,
            cols: Some(80),
            rows: Some(24),
            log_dir: Some("logs/x".into()),
            oldest_offset: 0,
            end_offset: 0,
        }
    }

    #[test]
    fn log_dirs_are_stored_relative_to_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join(".dispatch");
        std::fs::create_dir_all(&state).unwrap();
        let db = Db::open(&state.join("agent.db")).unwrap();
        let logs = state.join("logs").join("s1");
        assert_eq!(db.stored_dir(&logs), "logs/s1");
        assert_eq!(db.resolve_dir("logs/s1"), logs);
        // Outside the state dir, and records from before: absolute, as is.
        assert_eq!(db.stored_dir(Path::new("/elsewhere/s2")), "/elsewhere/s2");
        assert_eq!(db.resolve_dir("/old/abs/s3"), Path::new("/old/abs/s3"));
    }

    #[test]
    fn sessions_left_running_are_marked_ended_by_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Connection::open(tmp.path().join("a.db")).unwrap();
        init(&c).unwrap();
        insert_session(&c, &row("a", 1)).unwrap();
        insert_session(&c, &row("b", 2)).unwrap();
        end_session(&c, "a", 5, Some(0), None, 0, 10).unwrap();
        set_segments(&mut c, "b", &[0, 64], 0, 100).unwrap();
        insert_session(&c, &row("kept", 3)).unwrap();
        assert_eq!(mark_left_running(&c, 9, &["kept".into()]).unwrap(), ["b"]);
        let rows = load_sessions(&c, 10).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].ended, None, "carried on by a holder");
        assert_eq!(rows[0].id, "a");
        assert_eq!(rows[0].end_reason, None);
        assert_eq!(rows[1].ended, Some(9));
        assert_eq!(rows[1].end_reason.as_deref(), Some("agent restarted"));
        assert_eq!(rows[1].end_offset, 100);
        assert_eq!(segments(&c, "b").unwrap(), vec![0, 64]);
        insert_event(&c, 1, Some("a"), "start", None).unwrap();
        insert_event(&c, 2, Some("a"), "stop", Some("x")).unwrap();
        assert_eq!(event_kinds(&c, "a").unwrap(), vec!["start", "stop"]);
        let journal: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
    }
}
