//! Hands memory freed after a burst of work back to the system once the
//! operator has gone quiet. glibc keeps freed memory in its arenas for reuse;
//! after 1,000 Workspaces arrive at once that is megabytes the operator holds
//! for nothing until the next burst.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// How often activity is looked at; a tick with no new reconcile after one
/// with some counts as quiet.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Says when a burst of reconciles has ended, once per burst.
#[derive(Debug, Default)]
pub struct QuietAfterWork {
    last: u64,
    worked: bool,
}

impl QuietAfterWork {
    /// Takes the reconcile count at this tick; true when the work seen at
    /// earlier ticks has stopped.
    pub fn tick(&mut self, reconciles: u64) -> bool {
        if reconciles != self.last {
            self.last = reconciles;
            self.worked = true;
            false
        } else {
            std::mem::take(&mut self.worked)
        }
    }
}

/// Runs for the life of the process.
pub async fn when_quiet(metrics: Arc<Metrics>) {
    let mut quiet = QuietAfterWork::default();
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if quiet.tick(metrics.reconciles()) {
            trim();
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_when_a_burst_has_stopped() {
        let mut q = QuietAfterWork::default();
        assert!(!q.tick(0), "nothing happened yet");
        assert!(!q.tick(5), "working");
        assert!(!q.tick(900), "still working");
        assert!(q.tick(900), "quiet after work");
        assert!(!q.tick(900), "once per burst");
        assert!(!q.tick(901));
        assert!(q.tick(901));
    }
}
