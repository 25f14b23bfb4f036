//! A cost limit for Claude in one workspace over a period, from the CLI's
//! own cost in its result events: a warning at 80 %, new turns refused at
//! 100 %. What was spent in the current period is kept in a small file in
//! the state directory, so a restarted (or resumed) agent still knows it.

use std::path::PathBuf;
use std::sync::Mutex;

use dispatch_api::ErrorCode;
use dispatch_api::approvals::BudgetStatus;
use serde::{Deserialize, Serialize};

use crate::lock::lock;
use crate::session::ClientError;

/// Share of the limit at which the warning begins.
pub const WARN_AT: f64 = 0.8;

/// The limit: so many US dollars per so many seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub usd: f64,
    pub period_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Exhausted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Exhausted => "exhausted",
        }
    }
}

/// What was spent since when.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub period_start: i64,
    pub spent_usd: f64,
}

impl Ledger {
    /// Moves to the period that holds `now` (whole periods after the
    /// current one's start), forgetting what was spent before it.
    fn roll(&mut self, limit: &Limit, now: i64) {
        let period = (limit.period_secs.max(1) as i64).saturating_mul(1000);
        if self.period_start <= 0 || now < self.period_start {
            *self = Ledger {
                period_start: now,
                spent_usd: 0.0,
            };
        } else if now - self.period_start >= period {
            let periods = (now - self.period_start) / period;
            self.period_start += periods * period;
            self.spent_usd = 0.0;
        }
    }

    pub fn level(&self, limit: &Limit) -> Level {
        if self.spent_usd >= limit.usd {
            Level::Exhausted
        } else if self.spent_usd >= limit.usd * WARN_AT {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

/// The workspace's budget; without a limit it only counts.
pub struct Budget {
    limit: Option<Limit>,
    file: Option<PathBuf>,
    ledger: Mutex<Ledger>,
}

impl Budget {
    /// Reads what the file says was spent; a missing or unreadable file is
    /// a fresh start (said in the log when unreadable).
    pub fn open(limit: Option<Limit>, file: Option<PathBuf>) -> Self {
        let ledger = file
            .as_ref()
            .and_then(|f| match std::fs::read(f) {
                Ok(b) => serde_json::from_slice::<Ledger>(&b)
                    .map_err(|e| tracing::warn!(file = %f.display(), "budget ledger unreadable, starting afresh: {e}"))
                    .ok(),
                Err(_) => None,
            })
            .filter(|l| l.spent_usd.is_finite() && l.spent_usd >= 0.0)
            .unwrap_or_default();
        Budget {
            limit,
            file,
            ledger: Mutex::new(ledger),
        }
    }

    /// Counts a turn's cost; the new level when it changed.
    pub fn spend(&self, usd: f64, now: i64) -> Option<Level> {
        let limit = self.limit?;
        if !(usd.is_finite() && usd > 0.0) {
            return None;
        }
        let (before, after, ledger) = {
            let mut l = lock(&self.ledger);
            l.roll(&limit, now);
            let before = l.level(&limit);
            l.spent_usd += usd;
            (before, l.level(&limit), *l)
        };
        self.save(&ledger);
        (after != before).then_some(after)
    }

    /// Whether a new turn may begin, or the message that says why not.
    pub fn allows_a_turn(&self, now: i64) -> Result<(), ClientError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let l = {
            let mut l = lock(&self.ledger);
            l.roll(&limit, now);
            *l
        };
        if l.level(&limit) == Level::Exhausted {
            let resets = l.period_start + (limit.period_secs as i64).saturating_mul(1000);
            return Err((
                ErrorCode::BudgetExhausted,
                format!(
                    "Claude's budget for this workspace is used up: ${:.2} of ${:.2} spent in this period; \
                     new turns are refused until the period ends ({}), or raise the budget",
                    l.spent_usd,
                    limit.usd,
                    at_text(resets)
                ),
            ));
        }
        Ok(())
    }

    pub fn status(&self, now: i64) -> Option<BudgetStatus> {
        let limit = self.limit?;
        let l = {
            let mut l = lock(&self.ledger);
            l.roll(&limit, now);
            *l
        };
        Some(BudgetStatus {
            limit_usd: limit.usd,
            spent_usd: l.spent_usd,
            period_secs: limit.period_secs,
            period_start: l.period_start,
            level: l.level(&limit).as_str().to_owned(),
        })
    }

    /// The event a pane shows when the level changed: `dispatch/budget`
    /// with `level`, `spentUsd`, `limitUsd`, `periodStart`, `text`.
    pub fn notice(&self, now: i64) -> Option<serde_json::Value> {
        let st = self.status(now)?;
        let text = match st.level.as_str() {
            "warning" => format!(
                "Claude has used ${:.2} of this workspace's ${:.2} budget for the period ({:.0} %).",
                st.spent_usd,
                st.limit_usd,
                100.0 * st.spent_usd / st.limit_usd.max(f64::MIN_POSITIVE)
            ),
            "exhausted" => format!(
                "Claude's budget for this workspace is used up (${:.2} of ${:.2}): new turns are refused until {}.",
                st.spent_usd,
                st.limit_usd,
                at_text(st.period_start + (st.period_secs as i64).saturating_mul(1000))
            ),
            _ => return None,
        };
        Some(serde_json::json!({
            "type": "dispatch", "subtype": "budget", "level": st.level,
            "spentUsd": st.spent_usd, "limitUsd": st.limit_usd,
            "periodStart": st.period_start, "text": text,
        }))
    }

    fn save(&self, l: &Ledger) {
        let Some(f) = &self.file else { return };
        let tmp = f.with_extension("tmp");
        let r = serde_json::to_vec(l)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, f));
        if let Err(e) = r {
            tracing::warn!(file = %f.display(), "could not save the budget ledger: {e}");
        }
    }
}

/// A Unix time in ms as RFC 3339 (UTC), for messages.
fn at_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Limit = Limit {
        usd: 1.0,
        period_secs: 3600,
    };

    #[test]
    fn warns_at_80_percent_and_refuses_at_100() {
        let b = Budget::open(Some(HOUR), None);
        assert!(b.allows_a_turn(1000).is_ok());
        assert_eq!(b.spend(0.5, 1000), None);
        assert_eq!(b.notice(1000), None);
        assert_eq!(b.spend(0.3, 2000), Some(Level::Warning));
        let n = b.notice(2000).unwrap();
        assert_eq!(n["level"], "warning");
        assert!(n["text"].as_str().unwrap().contains("$0.80 of"), "{n}");
        assert!(b.allows_a_turn(2000).is_ok());
        assert_eq!(b.status(2000).unwrap().level, "warning");
        assert_eq!(b.spend(0.2, 3000), Some(Level::Exhausted));
        let (code, msg) = b.allows_a_turn(3000).unwrap_err();
        assert_eq!(code, ErrorCode::BudgetExhausted);
        assert!(msg.contains("$1.00 of $1.00"), "{msg}");
        assert!(msg.contains("1970-01-01T01:00:01Z"), "{msg}");
        // The next period starts afresh.
        assert!(b.allows_a_turn(1000 + 3_600_000).is_ok());
        assert_eq!(b.status(1000 + 3_600_000).unwrap().spent_usd, 0.0);
        assert_eq!(b.status(1000 + 3_600_000).unwrap().period_start, 3_601_000);
    }

    #[test]
    fn without_a_limit_nothing_is_refused_and_nonsense_costs_count_nothing() {
        let b = Budget::open(None, None);
        assert_eq!(b.spend(100.0, 1), None);
        assert!(b.allows_a_turn(1).is_ok());
        assert!(b.status(1).is_none());
        let b = Budget::open(Some(HOUR), None);
        for bad in [f64::NAN, f64::INFINITY, -5.0, 0.0] {
            assert_eq!(b.spend(bad, 1), None);
        }
        assert_eq!(b.status(1).unwrap().spent_usd, 0.0);
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("budget.json");
        let b = Budget::open(Some(HOUR), Some(f.clone()));
        b.spend(1.5, 10);
        drop(b);
        let b = Budget::open(Some(HOUR), Some(f.clone()));
        assert!(b.allows_a_turn(20).is_err());
        std::fs::write(&f, b"garbage").unwrap();
        let b = Budget::open(Some(HOUR), Some(f));
        assert!(b.allows_a_turn(20).is_ok());
    }

    #[test]
    fn dates_are_printed_as_utc() {
        assert_eq!(at_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(at_text(1_796_558_400_000), "2026-12-06T12:00:00Z");
    }
}
