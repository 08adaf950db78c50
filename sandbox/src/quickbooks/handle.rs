//! [`Emulator`]: the emulator as a library, for tests and benchmarks. It runs on its own
//! thread and runtime, so a test can block on a connector while the emulator answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{CdcCapOrder, CdcOldSince, EmulatorConfig, FaultSpec, Limits};
use super::server::{app, lock, Shared, Stats};
use super::webhooks::{WebhookConfig, WebhookError, WebhookStats};
use crate::mutate::{Change, MutationStats};

/// A running QuickBooks emulator on 127.0.0.1. Dropping it shuts the server down.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Generates the data and starts serving (and, as configured, sending webhooks and
    /// changing data on a timer); returns once the port is bound.
    pub fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let port = config.port;
        let shared = Arc::new(Shared::new(config)?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("qbo-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr().map_err(Into::into));
                    for_thread.spawn_background();
                    let _ = axum::serve(listener, app(for_thread))
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
            })?;
        let addr = ready_rx.recv()??;
        Ok(Emulator {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: the connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OAuth token endpoint: the connector's `token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v1/tokens/bearer", self.base_url())
    }

    /// The company id.
    pub fn realm_id(&self) -> &str {
        &self.shared.config.realm_id
    }

    /// The accepted OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.shared.config.client_id
    }

    /// The accepted OAuth client secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.config.client_secret
    }

    /// The refresh token the emulator started with.
    pub fn initial_refresh_token(&self) -> &str {
        &self.shared.config.refresh_token
    }

    /// The refresh token that works right now (rotated ones die).
    pub fn current_refresh_token(&self) -> String {
        lock(&self.shared.auth).current_refresh().to_string()
    }

    /// A complete connector config pointing at this emulator, with its initial refresh
    /// token; tests add or override keys.
    pub fn connector_config(&self) -> serde_json::Value {
        serde_json::json!({
            "realm_id": self.realm_id(),
            "client_id": self.client_id(),
            "client_secret": self.client_secret(),
            "refresh_token": self.initial_refresh_token(),
            "base_url": self.base_url(),
            "token_url": self.token_url(),
        })
    }

    /// Live objects of `entity` (inactive list objects included).
    pub fn count(&self, entity: &str) -> usize {
        lock(&self.shared.store).count(entity)
    }

    /// Live object ids of `entity`, ascending.
    pub fn ids(&self, entity: &str) -> Vec<String> {
        lock(&self.shared.store).ids(entity)
    }

    /// The current JSON of one object.
    pub fn object(&self, entity: &str, id: &str) -> Option<serde_json::Value> {
        let id = id.parse::<u64>().ok()?;
        lock(&self.shared.store)
            .tables
            .get(entity)?
            .get(&id)
            .map(|o| o.value())
    }

    /// Creates `n` objects of `entity` stamped now; returns their ids.
    pub fn create(&self, entity: &str, n: usize) -> Vec<String> {
        let mut store = lock(&self.shared.store);
        (0..n).filter_map(|_| store.create(entity)).collect()
    }

    /// Updates one object (new SyncToken, LastUpdatedTime now). False if absent.
    pub fn update(&self, entity: &str, id: &str) -> bool {
        lock(&self.shared.store).update(entity, id)
    }

    /// Deletes one object (transactions: gone, with a CDC tombstone; lists: inactive).
    pub fn delete(&self, entity: &str, id: &str) -> bool {
        lock(&self.shared.store).delete(entity, id)
    }

    /// Creates `n` objects of `entity` stamped `at` (one second for all); returns their ids.
    pub fn create_at(&self, entity: &str, n: usize, at: DateTime<Utc>) -> Vec<String> {
        let mut store = lock(&self.shared.store);
        (0..n)
            .filter_map(|_| store.create_at(entity, at.timestamp()))
            .collect()
    }

    /// Updates one object (new SyncToken, a changed note) stamped `at`. False if absent.
    pub fn update_at(&self, entity: &str, id: &str, at: DateTime<Utc>) -> bool {
        lock(&self.shared.store).update_at(entity, id, at.timestamp())
    }

    /// Deletes one object stamped `at` (the tombstone's time). False if absent.
    pub fn delete_at(&self, entity: &str, id: &str, at: DateTime<Utc>) -> bool {
        lock(&self.shared.store).delete_at(entity, id, at.timestamp())
    }

    /// Server time now (the real clock plus whatever [`Emulator::advance_clock`] added).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now_utc()
    }

    /// Moves server time forward: weeks pass for the API (envelope `time`, stamps of later
    /// changes, the CDC horizon), not for access tokens.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.shared.clock.advance(by.num_seconds());
    }

    /// Ages the company: every object and deletion was last changed `by` earlier.
    pub fn age(&self, by: chrono::Duration) {
        lock(&self.shared.store).age(by.num_seconds());
    }

    /// How CDC answers a `changedSince` beyond its 30-day memory.
    pub fn set_cdc_old_since(&self, behaviour: CdcOldSince) {
        *lock(&self.shared.cdc_old_since) = behaviour;
    }

    /// Sends CDC deletion stubs without `MetaData` (no deletion time).
    pub fn set_bare_deletion_stubs(&self, bare: bool) {
        self.shared
            .bare_stubs
            .store(bare, std::sync::atomic::Ordering::Relaxed);
    }

    /// Which changes a CDC answer over the 1,000-object cap keeps.
    pub fn set_cdc_cap_order(&self, order: CdcCapOrder) {
        *lock(&self.shared.cdc_cap_order) = order;
    }

    /// Sets `LastUpdatedTime` of every live object of `entity` (or of all) to `at`.
    pub fn set_timestamps(&self, entity: Option<&str>, at: DateTime<Utc>) {
        lock(&self.shared.store).set_timestamps(entity, at.timestamp());
    }

    /// Stamps one object with `LastUpdatedTime` `at` (an edit at that time). False if absent.
    pub fn set_timestamp(&self, entity: &str, id: &str, at: DateTime<Utc>) -> bool {
        lock(&self.shared.store).set_timestamp(entity, id, at.timestamp())
    }

    /// Expires every access token now: the next request gets the lower-case 401.
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.auth).expire_all();
    }

    /// Expires every access token after `n` more authorized data requests (mid-sync).
    pub fn expire_access_tokens_after(&self, n: u64) {
        lock(&self.shared.auth).expire_after(n);
    }

    /// Kills the current refresh token, as a user revoking the app would.
    pub fn revoke_refresh_token(&self) {
        lock(&self.shared.auth).revoke_refresh();
    }

    /// Whether `access_token` has authorized a request yet.
    pub fn access_token_used(&self, access_token: &str) -> bool {
        lock(&self.shared.auth).was_used(access_token)
    }

    /// Every token the emulator ever issued or accepted at start (for leak checks).
    pub fn issued_secrets(&self) -> Vec<String> {
        lock(&self.shared.auth).issued().to_vec()
    }

    /// Replaces the request limits.
    pub fn set_limits(&self, limits: Limits) {
        *lock(&self.shared.limits) = limits;
    }

    /// Queues an injected fault.
    pub fn inject(&self, fault: FaultSpec) {
        self.shared.inject(fault);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Resets the counters (not the data).
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    /// Sets the webhook receiver, or with `None` stops announcing changes. Callable at
    /// any time: a test binds its receiver (or the host's watch server) first, then
    /// points the emulator at it. Refuses non-loopback and non-`http://` URLs.
    pub fn set_webhook(&self, config: Option<WebhookConfig>) -> Result<(), WebhookError> {
        self.shared.webhooks.set(config)
    }

    /// A copy of the webhook delivery counters.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.shared.webhooks.stats.get()
    }

    /// Blocks until the webhook counters satisfy `until` (then returns them) or `timeout`
    /// passes (`None`). For synchronous tests: do not call it on a runtime worker.
    pub fn wait_for_webhooks(
        &self,
        timeout: Duration,
        until: impl Fn(&WebhookStats) -> bool,
    ) -> Option<WebhookStats> {
        let (stats, ok) = self.shared.webhooks.stats.wait(timeout, until);
        ok.then_some(stats)
    }

    /// Makes one change now, as the mutation timer would (an invoice's balance, a
    /// customer's name, a new payment, sometimes a deletion), announces it by webhook and
    /// returns it. `None` only if the company has nothing to change.
    pub fn mutate(&self) -> Option<Change> {
        self.shared.mutate_now()
    }

    /// Changes made so far by the timer and by [`Emulator::mutate`].
    pub fn mutation_stats(&self) -> MutationStats {
        self.shared.mutations.get()
    }

    /// Blocks until the mutation counters satisfy `until` (then returns them) or
    /// `timeout` passes (`None`), e.g. `|s| s.timer_finished`.
    pub fn wait_for_mutations(
        &self,
        timeout: Duration,
        until: impl Fn(&MutationStats) -> bool,
    ) -> Option<MutationStats> {
        let (stats, ok) = self.shared.mutations.wait(timeout, until);
        ok.then_some(stats)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
