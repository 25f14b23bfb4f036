//! Bounds on the event log (`events` in `agent.db`): what one row may hold,
//! how many rows one connection may add of each kind, and how many rows and
//! how old a row the table keeps. Clients cause most events (attach, error,
//! stop), so without these a client grows the database without end (three
//! connections once added 264 MiB).
//!
//! Pure bookkeeping here; [`prune`] is the one SQL statement pair.

use std::collections::HashMap;

use rusqlite::{Connection, params};

/// Longest `detail` stored with an event.
pub const MAX_DETAIL: usize = 256;

/// Limits on the event log, from the agent's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventBounds {
    /// Rows kept in all (the newest).
    pub max_rows: u64,
    /// Oldest row kept, in milliseconds of age.
    pub max_age_ms: i64,
    /// Rows of one kind one connection may add.
    pub per_connection: u32,
}

impl EventBounds {
    /// Inserts between two prunes: the table overshoots `max_rows` by at most
    /// this much, and pruning costs one indexed delete per this many inserts.
    pub fn prune_every(&self) -> u64 {
        (self.max_rows / 8).clamp(1, 1024)
    }
}

/// `detail` as stored: at most [`MAX_DETAIL`] bytes.
pub fn clip_detail(detail: Option<String>) -> Option<String> {
    detail.map(|d| match dispatch_api::protocol::clip(&d, MAX_DETAIL) {
        std::borrow::Cow::Borrowed(_) => d,
        std::borrow::Cow::Owned(c) => c,
    })
}

/// What one connection has logged so far, by kind.
#[derive(Debug, Default)]
pub struct ConnectionBudget {
    used: HashMap<&'static str, u32>,
}

impl ConnectionBudget {
    /// Whether this connection may log one more event of `kind` (and counts it).
    pub fn take(&mut self, kind: &'static str, bounds: &EventBounds) -> bool {
        let n = self.used.entry(kind).or_default();
        if *n >= bounds.per_connection {
            return false;
        }
        *n += 1;
        true
    }
}

/// Deletes rows older than the age bound and all but the newest `max_rows`;
/// returns how many went.
pub fn prune(conn: &Connection, bounds: &EventBounds, now_ms: i64) -> rusqlite::Result<usize> {
    let old = conn.execute(
        "DELETE FROM events WHERE ts < ?1",
        params![now_ms.saturating_sub(bounds.max_age_ms)],
    )?;
    let over = conn.execute(
        "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
        params![bounds.max_rows as i64],
    )?;
    Ok(old + over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(max_rows: u64, per_connection: u32) -> EventBounds {
        EventBounds {
            max_rows,
            max_age_ms: 1000,
            per_connection,
        }
    }

    #[test]
    fn details_are_clipped() {
        assert_eq!(clip_detail(None), None);
        assert_eq!(clip_detail(Some("short".into())).as_deref(), Some("short"));
        let long = clip_detail(Some("é".repeat(10_000))).unwrap();
        assert!(long.len() <= MAX_DETAIL && long.ends_with('…'), "{long}");
    }

    #[test]
    fn a_connection_logs_at_most_its_share_of_each_kind() {
        let b = bounds(100, 3);
        let mut c = ConnectionBudget::default();
        let attaches: Vec<bool> = (0..5).map(|_| c.take("attach", &b)).collect();
        assert_eq!(attaches, [true, true, true, false, false]);
        assert!(c.take("error", &b), "other kinds have their own share");
    }

    #[test]
    fn pruning_keeps_the_newest_rows_and_drops_old_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Connection::open(tmp.path().join("agent.db")).unwrap();
        crate::db::init(&c).unwrap();
        for ts in 0..50 {
            crate::db::insert_event(&c, ts * 100, None, "attach", None).unwrap();
        }
        // Now 5000: rows older than 4000 go by age, then all but the newest 5.
        let gone = prune(&c, &bounds(5, 1), 5000).unwrap();
        assert_eq!(gone, 45);
        let left: Vec<i64> = c
            .prepare("SELECT ts FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, [4500, 4600, 4700, 4800, 4900]);
        assert_eq!(prune(&c, &bounds(5, 1), 5000).unwrap(), 0);
        assert_eq!(bounds(10_000, 1).prune_every(), 1024);
        assert_eq!(bounds(3, 1).prune_every(), 1);
    }
}
