//! What every handler shares.

use std::sync::{Arc, Mutex};

use super::config::ServerConfig;
use super::page::Throughput;
use super::webhooks::Dedupe;
use crate::events::EventBus;
use crate::watch::metrics::Metrics;
use crate::watch::status;

/// What the server can ask of watch: fetch now.
pub trait Trigger: Send + Sync + 'static {
    /// Asks `source` to fetch `entities` (QuickBooks entity names from the webhook, e.g.
    /// `Invoice`) now. Called off the request path, after the webhook was answered; it
    /// should return quickly (queue the request), since each call holds a blocking
    /// thread until it does.
    fn fetch_now(&self, source: &str, entities: Vec<String>);
}

/// The server's shared state: cheap to clone (every field is an `Arc`).
#[derive(Clone)]
pub struct ServerState {
    pub(super) bus: Arc<EventBus>,
    pub(super) status: Arc<status::Registry>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) trigger: Arc<dyn Trigger>,
    pub(super) config: Arc<ServerConfig>,
    pub(super) dedupe: Arc<Mutex<Dedupe>>,
    pub(super) throughput: Arc<Mutex<Throughput>>,
    /// Set when [`super::serve`]'s shutdown completes: WebSocket sessions, which the
    /// HTTP server does not track once upgraded, close on it.
    pub(super) closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Webhook keys remembered for de-duplication across Intuit's retries.
const DEDUPE_KEYS: usize = 10_000;

impl ServerState {
    /// The state of a server publishing `bus`, reporting `status` and `metrics`, and
    /// asking `trigger` to fetch when a webhook arrives.
    pub fn new(
        config: ServerConfig,
        bus: Arc<EventBus>,
        status: Arc<status::Registry>,
        metrics: Arc<Metrics>,
        trigger: Arc<dyn Trigger>,
    ) -> ServerState {
        ServerState {
            bus,
            status,
            metrics,
            trigger,
            config: Arc::new(config),
            dedupe: Arc::new(Mutex::new(Dedupe::new(DEDUPE_KEYS))),
            throughput: Arc::new(Mutex::new(Throughput::default())),
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
}
