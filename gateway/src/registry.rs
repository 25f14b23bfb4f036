//! The gateway's SQLite database (`<data-dir>/gateway.db`): the workspaces
//! table and token revocations. Calls run on tokio's blocking pool, never on
//! the async workers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("workspace exists already")]
    AlreadyExists,
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database task: {0}")]
    Task(String),
}

/// One row of `workspaces`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceRecord {
    pub name: String,
    pub owner: String,
    pub path: PathBuf,
    /// Unix ms.
    pub created: i64,
    pub last_accessed: Option<i64>,
    pub metadata: serde_json::Value,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workspaces (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_accessed INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    id TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
);
";

#[derive(Clone)]
pub struct Registry {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry(..)")
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRecord> {
    let path: String = r.get(2)?;
    let metadata: String = r.get(5)?;
    Ok(WorkspaceRecord {
        owner: r.get(0)?,
        name: r.get(1)?,
        path: PathBuf::from(path),
        created: r.get(3)?,
        last_accessed: r.get(4)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
    })
}

const COLUMNS: &str = "owner, name, path, created, last_accessed, metadata";

impl Registry {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Registry {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<R, F>(&self, f: F) -> Result<R, RegistryError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, RegistryError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
    }

    pub async fn insert(&self, rec: WorkspaceRecord) -> Result<(), RegistryError> {
        self.call(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO workspaces (owner, name, path, created, last_accessed, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    rec.owner,
                    rec.name,
                    rec.path.to_string_lossy(),
                    rec.created,
                    rec.last_accessed,
                    rec.metadata.to_string()
                ],
            )?;
            if n == 0 {
                return Err(RegistryError::AlreadyExists);
            }
            Ok(())
        })
        .await
    }

    pub async fn get(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<WorkspaceRecord>, RegistryError> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM workspaces WHERE owner = ?1 AND name = ?2"),
                params![owner, name],
                row_to_record,
            )
            .optional()?)
        })
        .await
    }

    pub async fn list(&self, owner: &str) -> Result<Vec<WorkspaceRecord>, RegistryError> {
        let owner = owner.to_owned();
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM workspaces WHERE owner = ?1 ORDER BY name"
            ))?;
            let rows = st.query_map(params![owner], row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn touch(&self, owner: &str, name: &str, now: i64) -> Result<(), RegistryError> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        self.call(move |c| {
            c.execute(
                "UPDATE workspaces SET last_accessed = ?3 WHERE owner = ?1 AND name = ?2",
                params![owner, name, now],
            )?;
            Ok(())
        })
        .await
    }

    /// Removes the row; false when there was none.
    pub async fn remove(&self, owner: &str, name: &str) -> Result<bool, RegistryError> {
        let (owner, name) = (owner.to_owned(), name.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM workspaces WHERE owner = ?1 AND name = ?2",
                params![owner, name],
            )? > 0)
        })
        .await
    }

    /// Records that token `id` is logged out; kept until the token would have
    /// expired anyway, then pruned.
    pub async fn revoke(&self, id: &str, expires: i64) -> Result<(), RegistryError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO revoked_tokens (id, expires) VALUES (?1, ?2)",
                params![id, expires],
            )?;
            Ok(())
        })
        .await
    }

    /// Prunes revocations of tokens expired by `now` and returns the rest.
    pub async fn revocations(&self, now: i64) -> Result<Vec<(String, i64)>, RegistryError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM revoked_tokens WHERE expires <= ?1",
                params![now],
            )?;
            let mut st = c.prepare("SELECT id, expires FROM revoked_tokens")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: &str, name: &str) -> WorkspaceRecord {
        WorkspaceRecord {
            name: name.into(),
            owner: owner.into(),
            path: format!("/x/{owner}/{name}").into(),
            created: 1,
            last_accessed: None,
            metadata: serde_json::json!({"k": "v"}),
        }
    }

    #[tokio::test]
    async fn workspaces_round_trip_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(&dir.path().join("g.db")).unwrap();
        r.insert(rec("a", "w1")).await.unwrap();
        r.insert(rec("b", "w1")).await.unwrap();
        assert!(matches!(
            r.insert(rec("a", "w1")).await,
            Err(RegistryError::AlreadyExists)
        ));
        assert_eq!(r.list("a").await.unwrap(), vec![rec("a", "w1")]);
        r.touch("a", "w1", 7).await.unwrap();
        assert_eq!(
            r.get("a", "w1").await.unwrap().unwrap().last_accessed,
            Some(7)
        );
        assert!(r.get("c", "w1").await.unwrap().is_none());
        assert!(r.remove("a", "w1").await.unwrap());
        assert!(!r.remove("a", "w1").await.unwrap());
        assert_eq!(r.list("b").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn revocations_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let r = Registry::open(&path).unwrap();
        r.revoke("t1", 100).await.unwrap();
        r.revoke("t2", 200).await.unwrap();
        drop(r);
        // Survives a restart; the expired one is pruned.
        let r = Registry::open(&path).unwrap();
        assert_eq!(
            r.revocations(150).await.unwrap(),
            vec![("t2".to_owned(), 200)]
        );
    }
}
