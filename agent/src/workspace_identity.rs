//! Which workspace this state belongs to. The starter (the gateway, the
//! operator's pod) names the workspace it means with `--workspace-id`; the
//! first agent to open `.dispatch/agent.db` records it, and every later start
//! must name the same one. So a workspace directory swapped for a link to
//! another one (`mv ws ws.old && ln -s ../bob/bob-ws ws`, typed in the
//! user's own terminal) is refused before anything in it is read or changed,
//! instead of serving, replaying and ending the other workspace's sessions.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workspace_identity (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    id TEXT NOT NULL
);
";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the workspace root {0} is a symbolic link; a workspace must be a real directory (was it swapped for a link?)"
    )]
    SymlinkedRoot(String),
    #[error("{0} is a symbolic link; the agent's state must be a real directory in the workspace")]
    SymlinkedStateDir(String),
    #[error(
        "this directory holds the state of workspace {stored:?}, not of {expected:?}: refusing to serve it (was the workspace directory swapped?)"
    )]
    Mismatch { stored: String, expected: String },
}

/// Refuses `path` when it is itself a symbolic link (a missing path is fine:
/// the agent creates it).
pub fn refuse_symlink(path: &Path, err: fn(String) -> IdentityError) -> Result<(), IdentityError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(err(path.display().to_string())),
        _ => Ok(()),
    }
}

/// Checks the recorded identity against `expected`, recording it when none
/// is. Without `expected` (an agent started by hand) any state is accepted.
pub fn bind(conn: &Connection, expected: Option<&str>) -> Result<(), anyhow::Error> {
    conn.execute_batch(SCHEMA)?;
    let stored: Option<String> = conn
        .query_row(
            "SELECT id FROM workspace_identity WHERE only = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match (stored, expected) {
        (Some(stored), Some(expected)) if stored != expected => Err(IdentityError::Mismatch {
            stored,
            expected: expected.to_owned(),
        }
        .into()),
        (None, Some(expected)) => {
            conn.execute(
                "INSERT INTO workspace_identity (only, id) VALUES (1, ?1)",
                params![expected],
            )?;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_records_the_identity_and_later_ones_must_match() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Connection::open(tmp.path().join("agent.db")).unwrap();
        bind(&c, None).unwrap();
        bind(&c, Some("alice/ws")).unwrap();
        bind(&c, Some("alice/ws")).unwrap();
        bind(&c, None).unwrap();
        let e = bind(&c, Some("bob/bob-ws")).unwrap_err();
        assert_eq!(
            e.downcast_ref::<IdentityError>(),
            Some(&IdentityError::Mismatch {
                stored: "alice/ws".into(),
                expected: "bob/bob-ws".into()
            })
        );
    }

    #[test]
    fn a_symlink_is_refused_and_a_missing_path_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        assert!(refuse_symlink(&real, IdentityError::SymlinkedRoot).is_ok());
        assert!(refuse_symlink(&tmp.path().join("missing"), IdentityError::SymlinkedRoot).is_ok());
        let e = refuse_symlink(&tmp.path().join("link"), IdentityError::SymlinkedRoot).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
