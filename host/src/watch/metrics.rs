//! Prometheus metrics of `watch`, in a registry of their own (no global recorder, so tests
//! can run several watches in one process). `GET /metrics` serves [`Metrics::encode`].

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tributary_sdk::usage::Usage;

/// `{source, stream}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Source name.
    pub source: String,
    /// Stream name.
    pub stream: String,
}

/// `{source, kind}`: an error class (`config`, `auth`, `transient`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Source name.
    pub source: String,
    /// Error class.
    pub kind: String,
}

/// `{source}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Source name.
    pub source: String,
}

/// `{source, outcome}`: what happened to a webhook (`accepted`, `duplicate`,
/// `bad_signature`, `too_large`, `malformed`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// Source name (`unknown` when no source matched).
    pub source: String,
    /// Outcome.
    pub outcome: String,
}

/// `{sink}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// Sink name.
    pub sink: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric `watch` exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `tributary_records_total{source,stream}`: records committed.
    pub records: Family<StreamLabels, Counter>,
    /// `tributary_deletes_total{source,stream}`: deletions committed.
    pub deletes: Family<StreamLabels, Counter>,
    /// `tributary_errors_total{source,kind}`: failed streams, by error class.
    pub errors: Family<ErrorLabels, Counter>,
    /// `tributary_cycles_total{source}`: incremental cycles run.
    pub cycles: Family<SourceLabels, Counter>,
    /// `tributary_requests_total{source}`: requests the plugin sent to its API.
    pub requests: Family<SourceLabels, Counter>,
    /// `tributary_throttles_total{source}`: answers from the API that said "slow down".
    pub throttles: Family<SourceLabels, Counter>,
    /// `tributary_last_success_timestamp_seconds{source,stream}`.
    pub last_success: Family<StreamLabels, FloatGauge>,
    /// `tributary_newest_cursor_timestamp_seconds{source,stream}`: the newest committed
    /// cursor that reads as an instant.
    pub newest_cursor: Family<StreamLabels, FloatGauge>,
    /// `tributary_lag_seconds{source,stream}`: now − newest committed cursor, at scrape.
    pub lag: Family<StreamLabels, FloatGauge>,
    /// `tributary_webhooks_total{source,outcome}`.
    pub webhooks: Family<WebhookLabels, Counter>,
    /// `tributary_events_total`: events published to subscribers.
    pub events: Counter,
    /// `tributary_subscribers`: WebSocket subscribers connected.
    pub subscribers: Gauge,
    /// `tributary_subscriber_drops_total`: subscribers dropped for lagging.
    pub subscriber_drops: Counter,
    /// `tributary_sink_events_total{sink}`: events a sink acknowledged.
    pub sink_events: Family<SinkLabels, Counter>,
    /// The newest cursor instant per stream, to compute `lag` at scrape time.
    newest: Mutex<HashMap<StreamLabels, f64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            records: Family::default(),
            deletes: Family::default(),
            errors: Family::default(),
            cycles: Family::default(),
            requests: Family::default(),
            throttles: Family::default(),
            last_success: Family::default(),
            newest_cursor: Family::default(),
            lag: Family::default(),
            webhooks: Family::default(),
            events: Counter::default(),
            subscribers: Gauge::default(),
            subscriber_drops: Counter::default(),
            sink_events: Family::default(),
            newest: Mutex::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register("tributary_records", "Records committed", m.records.clone());
        registry.register(
            "tributary_deletes",
            "Deletions committed",
            m.deletes.clone(),
        );
        registry.register(
            "tributary_errors",
            "Failed streams by error class",
            m.errors.clone(),
        );
        registry.register(
            "tributary_cycles",
            "Incremental cycles run",
            m.cycles.clone(),
        );
        registry.register(
            "tributary_requests",
            "Requests a source's plugin sent to its API",
            m.requests.clone(),
        );
        registry.register(
            "tributary_throttles",
            "Throttled answers a source's plugin met",
            m.throttles.clone(),
        );
        registry.register(
            "tributary_last_success_timestamp_seconds",
            "When a stream last completed (Unix seconds)",
            m.last_success.clone(),
        );
        registry.register(
            "tributary_newest_cursor_timestamp_seconds",
            "Newest committed cursor of a stream (Unix seconds)",
            m.newest_cursor.clone(),
        );
        registry.register(
            "tributary_lag_seconds",
            "Now minus the newest committed cursor",
            m.lag.clone(),
        );
        registry.register(
            "tributary_webhooks",
            "Webhooks received by outcome",
            m.webhooks.clone(),
        );
        registry.register(
            "tributary_events",
            "Change events published",
            m.events.clone(),
        );
        registry.register(
            "tributary_subscribers",
            "WebSocket subscribers connected",
            m.subscribers.clone(),
        );
        registry.register(
            "tributary_subscriber_drops",
            "WebSocket subscribers dropped for lagging",
            m.subscriber_drops.clone(),
        );
        registry.register(
            "tributary_sink_events",
            "Events a sink acknowledged",
            m.sink_events.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records that `labels` committed a cursor at `at`; keeps the newest.
    pub fn observe_cursor(&self, labels: &StreamLabels, at: chrono::DateTime<chrono::Utc>) {
        let at = seconds(at);
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let slot = newest.entry(labels.clone()).or_insert(f64::MIN);
        if at > *slot {
            *slot = at;
            self.newest_cursor.get_or_create(labels).set(at);
        }
    }

    /// Counts what `source`'s plugin used of its API in one cycle.
    pub fn add_usage(&self, source: &str, used: Usage) {
        let labels = SourceLabels {
            source: source.to_string(),
        };
        self.requests.get_or_create(&labels).inc_by(used.requests);
        self.throttles.get_or_create(&labels).inc_by(used.throttles);
    }

    /// The Prometheus text exposition, with `lag` computed for `now`.
    pub fn encode(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let now = seconds(now);
        for (labels, at) in self.newest.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.lag.get_or_create(labels).set((now - at).max(0.0));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics do not encode: {e}");
        }
        out
    }
}

fn seconds(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}
