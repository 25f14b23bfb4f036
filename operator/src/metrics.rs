//! Prometheus metrics: reconciles, failures by reason, reconcile duration,
//! Workspaces by phase.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dispatch_api::crd::{ClaudeState, ClaudeWorkspaceStatus, WorkspacePhase};
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
    claude_by_state: Family<Labels, Gauge>,
    claude_pending: Family<Labels, Gauge>,
    claude_sessions: Family<Labels, Gauge>,
    claude_cost: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    claude_states: Mutex<HashMap<String, ClaudeState>>,
    warm_ready: Gauge,
    warm_taken: Counter,
}

/// Claude's states, for metrics.
const CLAUDE_STATES: [ClaudeState; 3] = [
    ClaudeState::Idle,
    ClaudeState::Working,
    ClaudeState::AwaitingApproval,
];

fn claude_state_name(s: ClaudeState) -> &'static str {
    match s {
        ClaudeState::Idle => "Idle",
        ClaudeState::Working => "Working",
        ClaudeState::AwaitingApproval => "AwaitingApproval",
    }
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
        let claude_by_state = Family::<Labels, Gauge>::default();
        registry.register(
            "claude_workspaces",
            "Running workspaces by Claude's state",
            claude_by_state.clone(),
        );
        for s in CLAUDE_STATES {
            claude_by_state
                .get_or_create(&vec![("state", claude_state_name(s).to_string())])
                .set(0);
        }
        let claude_pending = Family::<Labels, Gauge>::default();
        registry.register(
            "claude_pending_approvals",
            "Claude permission requests waiting for a person, per workspace",
            claude_pending.clone(),
        );
        let claude_sessions = Family::<Labels, Gauge>::default();
        registry.register(
            "claude_sessions_running",
            "Claude sessions running, per workspace",
            claude_sessions.clone(),
        );
        let claude_cost = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "claude_cost_usd",
            "What the CLI reported Claude cost in the running agent, per workspace",
            claude_cost.clone(),
        );
        let warm_ready = Gauge::default();
        registry.register(
            "warm_volumes_ready",
            "Claims made ahead, bound and unused",
            warm_ready.clone(),
        );
        let warm_taken = Counter::default();
        registry.register(
            "warm_volumes_taken",
            "Warm volumes taken by new Workspaces",
            warm_taken.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            by_phase,
            phases: Mutex::default(),
            claude_by_state,
            claude_pending,
            claude_sessions,
            claude_cost,
            claude_states: Mutex::default(),
            warm_ready,
            warm_taken,
        }
    }
}

impl Metrics {
    /// Warm volumes bound and unused now.
    pub fn set_warm_ready(&self, n: usize) {
        self.warm_ready.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn warm_taken(&self) {
        self.warm_taken.inc();
    }

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

    /// Records Claude's state in workspace `key`; `None` when its agent stopped.
    pub fn set_claude(&self, key: &str, claude: Option<&ClaudeWorkspaceStatus>) {
        let labels = vec![("workspace", key.to_string())];
        match claude {
            Some(c) => {
                self.claude_pending
                    .get_or_create(&labels)
                    .set(i64::from(c.pending_approvals));
                self.claude_sessions
                    .get_or_create(&labels)
                    .set(i64::from(c.sessions_running));
                self.claude_cost.get_or_create(&labels).set(c.cost_usd);
            }
            None => {
                self.claude_pending.remove(&labels);
                self.claude_sessions.remove(&labels);
                self.claude_cost.remove(&labels);
            }
        }
        let Ok(mut states) = self.claude_states.lock() else {
            return;
        };
        match claude.and_then(|c| c.state) {
            Some(s) => states.insert(key.to_string(), s),
            None => states.remove(key),
        };
        for s in CLAUDE_STATES {
            let n = states.values().filter(|v| **v == s).count();
            self.claude_by_state
                .get_or_create(&vec![("state", claude_state_name(s).to_string())])
                .set(n as i64);
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
    fn claude_gauges_follow_and_are_forgotten() {
        let m = Metrics::default();
        let c = ClaudeWorkspaceStatus {
            state: Some(ClaudeState::AwaitingApproval),
            pending_approvals: 2,
            sessions_running: 1,
            cost_usd: 0.5,
            ..Default::default()
        };
        m.set_claude("a/x", Some(&c));
        let text = m.render();
        assert!(
            text.contains("dispatch_operator_claude_pending_approvals{workspace=\"a/x\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dispatch_operator_claude_workspaces{state=\"AwaitingApproval\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dispatch_operator_claude_cost_usd{workspace=\"a/x\"} 0.5"),
            "{text}"
        );
        m.set_claude("a/x", None);
        let text = m.render();
        assert!(!text.contains("workspace=\"a/x\""), "{text}");
        assert!(
            text.contains("dispatch_operator_claude_workspaces{state=\"AwaitingApproval\"} 0"),
            "{text}"
        );
    }

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
