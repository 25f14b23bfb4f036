//! Prometheus metrics (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `to_agent` or `to_client`.
    pub direction: &'static str,
}

#[derive(Clone, Default)]
pub struct Metrics {
    /// Logins by result: ok, wrong_key, rate_limited.
    pub logins: Family<ResultLabel, Counter>,
    pub ws_open: Gauge,
    pub proxied_bytes: Family<DirectionLabel, Counter>,
    pub agent_restarts: Counter,
    /// Connections closed at once: their address had too many open.
    pub connections_refused: Counter,
    /// Agents whose Claude status the gateway watches now (one watch each).
    pub approval_watches: Gauge,
    /// Claude permission requests waiting for a person, all users.
    pub approvals_pending: Gauge,
}

impl Metrics {
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn encode(&self) -> String {
        let mut reg = Registry::with_prefix("dispatch_gateway");
        reg.register("logins", "Login attempts by result", self.logins.clone());
        reg.register(
            "ws_connections_open",
            "Proxied WebSocket connections open now",
            self.ws_open.clone(),
        );
        reg.register(
            "proxied_bytes",
            "Bytes of WebSocket frames passed through the proxy",
            self.proxied_bytes.clone(),
        );
        reg.register(
            "agent_restarts",
            "Agent processes restarted after dying",
            self.agent_restarts.clone(),
        );
        reg.register(
            "connections_refused",
            "Connections refused because their address had too many open",
            self.connections_refused.clone(),
        );
        reg.register(
            "approval_watches",
            "Agents whose Claude status is watched now (one long poll each)",
            self.approval_watches.clone(),
        );
        reg.register(
            "approvals_pending",
            "Claude permission requests waiting for a person",
            self.approvals_pending.clone(),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed() {
        let m = Metrics::default();
        m.login("ok");
        m.agent_restarts.inc();
        let text = m.encode();
        assert!(
            text.contains("dispatch_gateway_logins_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dispatch_gateway_agent_restarts_total 1"),
            "{text}"
        );
        assert!(
            text.contains("dispatch_gateway_ws_connections_open 0"),
            "{text}"
        );
    }
}
