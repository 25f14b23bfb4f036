//! Prometheus metrics: reconciles, failures by reason, reconcile duration,
//! Workspaces by phase.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dispatch_api::crd::WorkspacePhase;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<Labels, Counter>,
    duration: Histogram,
    by_phase: Family<Labels, Gauge>,
    phases: Mutex<HashMap<String, WorkspacePhase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dispatch_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles of Workspaces", reconciles.clone());
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciles by reason",
            failures.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let by_phase = Family::<Labels, Gauge>::default();
        registry.register("workspaces", "Workspaces by phase", by_phase.clone());
        for p in WorkspacePhase::ALL {
            by_phase
                .get_or_create(&vec![("phase", p.as_str().to_string())])
                .set(0);
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
            by_phase,
            phases: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Records the phase of workspace `key`; `None` when it is gone.
    pub fn set_phase(&self, key: &str, phase: Option<WorkspacePhase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let changed = match phase {
            Some(p) => phases.insert(key.to_string(), p) != Some(p),
            None => phases.remove(key).is_some(),
        };
        if changed {
            for p in WorkspacePhase::ALL {
                let n = phases.values().filter(|v| **v == p).count();
                self.by_phase
                    .get_or_create(&vec![("phase", p.as_str().to_string())])
                    .set(n as i64);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_and_forgotten() {
        let m = Metrics::default();
        m.set_phase("a/x", Some(WorkspacePhase::Running));
        m.set_phase("a/y", Some(WorkspacePhase::Running));
        m.set_phase("a/y", Some(WorkspacePhase::Suspended));
        m.failed("ApplyFailed");
        m.reconciled(Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("dispatch_operator_workspaces{phase=\"Running\"} 1"),
            "{text}"
        );
        assert!(text.contains("dispatch_operator_workspaces{phase=\"Suspended\"} 1"));
        assert!(
            text.contains("dispatch_operator_reconcile_failures_total{reason=\"ApplyFailed\"} 1")
        );
        assert!(text.contains("dispatch_operator_reconciles_total 1"));
        m.set_phase("a/x", None);
        assert!(
            m.render()
                .contains("dispatch_operator_workspaces{phase=\"Running\"} 0")
        );
    }
}
