//! Prometheus metrics served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Default)]
pub struct Metrics {
    pub sessions_started: Counter,
    pub sessions_running: Gauge,
    pub connections: Gauge,
    pub output_bytes: Counter,
    pub input_bytes: Counter,
    pub resyncs: Counter,
    pub errors: Family<CodeLabel, Counter>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics::default();
        let mut registry = Registry::with_prefix("dispatch_agent");
        registry.register(
            "sessions_started",
            "Sessions started",
            m.sessions_started.clone(),
        );
        registry.register(
            "sessions_running",
            "Sessions running now",
            m.sessions_running.clone(),
        );
        registry.register(
            "ws_connections",
            "WebSocket connections open now",
            m.connections.clone(),
        );
        registry.register(
            "output_bytes",
            "Terminal output bytes read from PTYs",
            m.output_bytes.clone(),
        );
        registry.register(
            "input_bytes",
            "Input bytes written to sessions",
            m.input_bytes.clone(),
        );
        registry.register(
            "resyncs",
            "Times a subscriber fell behind and was resynced with a snapshot",
            m.resyncs.clone(),
        );
        registry.register(
            "errors",
            "Error replies sent to clients, by code",
            m.errors.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn error(&self, code: dispatch_api::ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str().to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
