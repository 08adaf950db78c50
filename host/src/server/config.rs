//! What the server is configured with.

use std::net::SocketAddr;
use std::time::Duration;

/// The watch server's configuration. Tokens are redacted from `Debug`.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token for `/events`, `/` and `/status.json`. Never logged.
    pub events_token: String,
    /// QuickBooks webhook endpoints, one per source (several may share a verifier token:
    /// Intuit issues one per app, and an app serves many realms).
    pub webhooks: Vec<QuickBooksWebhook>,
    /// Largest webhook body accepted; larger gets 413 unread. Intuit sends up to 100
    /// events, about 1 MB.
    pub max_body_bytes: usize,
    /// Events the bus keeps for `/events?since=` (the bus is built with it).
    pub replay: usize,
    /// `/health` answers 503 once a source has failed this many cycles in a row.
    pub health_failures: u32,
    /// A subscriber that does not take a message within this long is dropped.
    pub send_timeout: Duration,
}

/// 1 MiB plus room for a batch slightly over Intuit's "about 1 MB".
pub const fn default_max_body_bytes() -> usize {
    1024 * 1024 + 128 * 1024
}

/// Events kept for `since`.
pub const fn default_replay() -> usize {
    10_000
}

/// Failed cycles in a row before `/health` says 503.
pub const fn default_health_failures() -> u32 {
    3
}

/// How long a send to a subscriber may take.
pub const fn default_send_timeout() -> Duration {
    Duration::from_secs(5)
}

impl ServerConfig {
    /// A configuration with every default and no webhooks.
    pub fn new(listen: SocketAddr, events_token: impl Into<String>) -> ServerConfig {
        ServerConfig {
            listen,
            events_token: events_token.into(),
            webhooks: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
            replay: default_replay(),
            health_failures: default_health_failures(),
            send_timeout: default_send_timeout(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("events_token", &"<redacted>")
            .field("webhooks", &self.webhooks)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("replay", &self.replay)
            .field("health_failures", &self.health_failures)
            .field("send_timeout", &self.send_timeout)
            .finish()
    }
}

/// One source's QuickBooks webhook.
#[derive(Clone)]
pub struct QuickBooksWebhook {
    /// The source (manifest name) that fetches when this realm changes.
    pub source: String,
    /// The company (realm) id the source reads.
    pub realm_id: String,
    /// The app's webhook verifier token. Never logged.
    pub verifier_token: String,
}

impl std::fmt::Debug for QuickBooksWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickBooksWebhook")
            .field("source", &self.source)
            .field("realm_id", &self.realm_id)
            .field("verifier_token", &"<redacted>")
            .finish()
    }
}
