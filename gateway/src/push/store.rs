//! Push subscriptions in the gateway's SQLite (`gateway.db`, table
//! `push_subscriptions`), one row per browser endpoint, at most
//! `MAX_PER_USER` per user (subscribing one more drops that user's oldest).
//! Calls run on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, params};

use super::ece::ReceiverKeys;
use super::subscription::{Prefs, Subscription};

/// Browsers one user may have subscribed at once.
pub const MAX_PER_USER: usize = 16;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    prefs TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS push_subscriptions_user ON push_subscriptions (user, created);
";

#[derive(Clone)]
pub struct SubscriptionStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SubscriptionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionStore(..)")
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Subscription>> {
    let endpoint: String = r.get(0)?;
    let p256dh: String = r.get(1)?;
    let auth: String = r.get(2)?;
    let prefs: String = r.get(3)?;
    // A row that no longer parses is skipped rather than failing every send.
    let keys = URL_SAFE_NO_PAD
        .decode(&p256dh)
        .ok()
        .zip(URL_SAFE_NO_PAD.decode(&auth).ok())
        .and_then(|(p, a)| ReceiverKeys::new(&p, &a).ok());
    let prefs = serde_json::from_str::<Prefs>(&prefs).ok();
    Ok(keys.zip(prefs).map(|(keys, prefs)| Subscription {
        endpoint,
        keys,
        prefs,
    }))
}

impl SubscriptionStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SubscriptionStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(|e| format!("database: {e}"))
        })
        .await
        .map_err(|e| format!("database task: {e}"))?
    }

    /// Adds or updates (keys, prefs, owner) the browser's subscription; the
    /// user's oldest beyond `MAX_PER_USER` are dropped. Returns how many.
    pub async fn upsert(&self, user: &str, sub: Subscription, now: i64) -> Result<usize, String> {
        let user = user.to_owned();
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO push_subscriptions (endpoint, user, p256dh, auth, prefs, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (endpoint) DO UPDATE SET user = ?2, p256dh = ?3, auth = ?4,
                   prefs = ?5, created = CASE WHEN user = ?2 THEN created ELSE ?6 END",
                params![
                    sub.endpoint,
                    user,
                    URL_SAFE_NO_PAD.encode(sub.keys.p256dh),
                    URL_SAFE_NO_PAD.encode(sub.keys.auth),
                    serde_json::to_string(&sub.prefs).unwrap_or_else(|_| "{}".into()),
                    now
                ],
            )?;
            let dropped = tx.execute(
                "DELETE FROM push_subscriptions WHERE user = ?1 AND endpoint NOT IN (
                   SELECT endpoint FROM push_subscriptions WHERE user = ?1
                   ORDER BY created DESC, rowid DESC LIMIT ?2)",
                params![user, MAX_PER_USER as i64],
            )?;
            tx.commit()?;
            Ok(dropped)
        })
        .await
    }

    /// Removes the user's subscription with this endpoint; false when none.
    pub async fn remove(&self, user: &str, endpoint: &str) -> Result<bool, String> {
        let (user, endpoint) = (user.to_owned(), endpoint.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM push_subscriptions WHERE user = ?1 AND endpoint = ?2",
                params![user, endpoint],
            )? > 0)
        })
        .await
    }

    /// Drops an endpoint the push service said is gone (404/410).
    pub async fn forget(&self, endpoint: &str) -> Result<(), String> {
        let endpoint = endpoint.to_owned();
        self.call(move |c| {
            c.execute(
                "DELETE FROM push_subscriptions WHERE endpoint = ?1",
                params![endpoint],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list(&self, user: &str) -> Result<Vec<Subscription>, String> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT endpoint, p256dh, auth, prefs FROM push_subscriptions
                 WHERE user = ?1 ORDER BY created",
            )?;
            let rows = st.query_map(params![user], row)?;
            Ok(rows
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(n: usize) -> Subscription {
        let mut p256dh = [7u8; 65];
        p256dh[0] = 4;
        Subscription {
            endpoint: format!("https://push.example.net/{n}"),
            keys: ReceiverKeys {
                p256dh,
                auth: [n as u8; 16],
            },
            prefs: Prefs::default(),
        }
    }

    #[tokio::test]
    async fn subscriptions_are_per_user_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let s = SubscriptionStore::open(&path).unwrap();
        for n in 0..MAX_PER_USER {
            assert_eq!(s.upsert("alice", sub(n), n as i64).await.unwrap(), 0);
        }
        // One more drops the oldest.
        assert_eq!(s.upsert("alice", sub(99), 100).await.unwrap(), 1);
        let list = s.list("alice").await.unwrap();
        assert_eq!(list.len(), MAX_PER_USER);
        assert!(!list.iter().any(|x| x.endpoint.ends_with("/0")));
        assert!(s.list("bob").await.unwrap().is_empty());
        // Bob cannot remove Alice's; the browser logging in as Bob takes it over.
        assert!(!s.remove("bob", &sub(1).endpoint).await.unwrap());
        s.upsert("bob", sub(1), 200).await.unwrap();
        assert_eq!(s.list("bob").await.unwrap(), vec![sub(1)]);
        assert_eq!(s.list("alice").await.unwrap().len(), MAX_PER_USER - 1);
        // Updating prefs keeps one row; survives a reopen.
        let mut changed = sub(1);
        changed.prefs.turn_finished = true;
        s.upsert("bob", changed.clone(), 300).await.unwrap();
        drop(s);
        let s = SubscriptionStore::open(&path).unwrap();
        assert_eq!(s.list("bob").await.unwrap(), vec![changed]);
        s.forget(&sub(1).endpoint).await.unwrap();
        assert!(s.list("bob").await.unwrap().is_empty());
        assert!(s.remove("alice", &sub(2).endpoint).await.unwrap());
    }
}
