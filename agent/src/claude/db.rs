//! What the agent's SQLite keeps about Claude sessions beyond the shared
//! `sessions` row (type `claude`): which conversation each one carried, with
//! which model and permission mode.

use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS claude_sessions (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL,
    model TEXT,
    permission_mode TEXT
);
CREATE INDEX IF NOT EXISTS claude_sessions_conversation ON claude_sessions(conversation_id);
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaudeRecord {
    pub session_id: String,
    pub conversation_id: String,
    pub model: Option<String>,
    pub permission_mode: Option<String>,
}

pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

pub fn insert(conn: &Connection, r: &ClaudeRecord) -> rusqlite::Result<()> {
    init(conn)?;
    conn.execute(
        "INSERT OR REPLACE INTO claude_sessions (session_id, conversation_id, model, permission_mode)
         VALUES (?1, ?2, ?3, ?4)",
        params![r.session_id, r.conversation_id, r.model, r.permission_mode],
    )?;
    Ok(())
}

pub fn set_conversation(
    conn: &Connection,
    session_id: &str,
    conversation_id: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE claude_sessions SET conversation_id = ?2 WHERE session_id = ?1",
        params![session_id, conversation_id],
    )?;
    Ok(())
}

/// The shared `sessions` row's title (a Claude session is renamed after its
/// first prompt).
pub fn set_title(conn: &Connection, session_id: &str, title: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET title = ?2 WHERE id = ?1",
        params![session_id, title],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<ClaudeRecord>> {
    init(conn)?;
    conn.query_row(
        "SELECT session_id, conversation_id, model, permission_mode FROM claude_sessions WHERE session_id = ?1",
        params![session_id],
        |r| {
            Ok(ClaudeRecord {
                session_id: r.get(0)?,
                conversation_id: r.get(1)?,
                model: r.get(2)?,
                permission_mode: r.get(3)?,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{SessionRow, insert_session};

    #[test]
    fn records_and_updates_the_conversation_of_a_session() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Connection::open(tmp.path().join("agent.db")).unwrap();
        crate::db::init(&c).unwrap();
        insert_session(
            &c,
            &SessionRow {
                id: "c1".into(),
                kind: "claude".into(),
                title: "Claude".into(),
                cwd: ".".into(),
                created: 1,
                ended: None,
                exit_code: None,
                end_reason: None,
                cols: None,
                rows: None,
                log_dir: None,
                oldest_offset: 0,
                end_offset: 0,
            },
        )
        .unwrap();
        let rec = ClaudeRecord {
            session_id: "c1".into(),
            conversation_id: "conv-a".into(),
            model: Some("m".into()),
            permission_mode: None,
        };
        insert(&c, &rec).unwrap();
        assert_eq!(get(&c, "c1").unwrap(), Some(rec));
        set_conversation(&c, "c1", "conv-b").unwrap();
        assert_eq!(get(&c, "c1").unwrap().unwrap().conversation_id, "conv-b");
        assert_eq!(get(&c, "nope").unwrap(), None);
        set_title(&c, "c1", "Fix the build").unwrap();
        let title: String = c
            .query_row("SELECT title FROM sessions WHERE id = 'c1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(title, "Fix the build");
    }
}
