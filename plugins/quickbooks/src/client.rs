//! The HTTP client: budget, bearer token, retries and the fault classification of
//! [`crate::error::classify`], in one loop every request goes through.
//!
//! It also keeps the server's clock: every envelope `time` it is shown moves its estimate
//! of the offset between our clock and QuickBooks', so horizons (CDC's 30 days) are judged
//! by the server's time, not ours.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};

use tributary_sdk::toolkit::{Backoff, Budget, Limits};
use tributary_sdk::{Emitter, ErrorKind};

use crate::auth::{transport_message, Tokens};
use crate::config::Config;
use crate::error::{classify, parse_fault, Action, Error, Result};

/// Status, `intuit_tid`, `Retry-After` seconds and body of one response.
type Reply = (u16, Option<String>, Option<u64>, Vec<u8>);

/// A QuickBooks API client for one realm.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    company_url: String,
    minor_version: String,
    tokens: Tokens,
    budget: Arc<Budget>,
    retry_after_default: Duration,
    max_throttle_retries: u32,
    backoff: Backoff,
    /// Server clock minus ours, in milliseconds; [`UNKNOWN_OFFSET`] until a response told.
    server_offset_ms: AtomicI64,
}

const UNKNOWN_OFFSET: i64 = i64::MIN;

impl Drop for Client {
    fn drop(&mut self) {
        self.budget.leave();
    }
}

/// Builds the reqwest client with the configured timeouts.
pub fn http_client(config: &Config) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.request_timeout())
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
        .user_agent(concat!("tributary-quickbooks/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .build()
        .map_err(|e| {
            Error::Config(format!(
                "cannot build the HTTP client: {}",
                transport_message(&e)
            ))
        })
}

fn looks_like_fault(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if body.get(start) == Some(&b'<') {
        return true;
    }
    // A 200 can carry a Fault; real pages are large, faults are small.
    body.len() < 16 * 1024 && (contains(body, b"\"Fault\"") || contains(body, b"\"fault\":{"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Client {
    /// A client for `config`, sending control messages (rotated tokens) through `out`.
    pub fn new(config: &Config, out: Emitter) -> Result<Client> {
        let http = http_client(config)?;
        let backoff = Backoff {
            initial: Duration::from_millis(config.backoff_initial_ms),
            max: Duration::from_millis(config.backoff_max_ms.max(config.backoff_initial_ms)),
            max_attempts: config.max_attempts.max(1),
        };
        let limits = Limits {
            per_window: config.requests_per_minute,
            window: Duration::from_secs(config.budget_window_secs),
            per_second: config.requests_per_second,
            concurrency: config.max_concurrency,
            margin: Limits::default_margin(Duration::from_secs(config.budget_window_secs)),
            learn: true,
        };
        let budget = Budget::shared(&format!("{}|{}", config.base_url, config.realm_id), limits);
        budget.join();
        Ok(Client {
            tokens: Tokens::new(config, http.clone(), out, backoff.clone()),
            budget,
            http,
            company_url: config.company_url(),
            minor_version: config.minor_version.to_string(),
            retry_after_default: Duration::from_secs(config.retry_after_default_secs),
            max_throttle_retries: config.max_throttle_retries,
            backoff,
            server_offset_ms: AtomicI64::new(UNKNOWN_OFFSET),
        })
    }

    /// Learns the server's clock from an envelope `time` received just now.
    pub fn observe_server_time(&self, time: Option<DateTime<FixedOffset>>) {
        if let Some(t) = time {
            let offset = (t.with_timezone(&Utc) - Utc::now()).num_milliseconds();
            self.server_offset_ms.store(offset, Ordering::Relaxed);
        }
    }

    /// The server's time now, as far as responses told; our clock until one did.
    pub fn server_now(&self) -> DateTime<Utc> {
        match self.server_offset_ms.load(Ordering::Relaxed) {
            UNKNOWN_OFFSET => Utc::now(),
            ms => Utc::now() + chrono::Duration::milliseconds(ms),
        }
    }

    /// Throttle faults this client's (shared) budget has seen.
    pub fn throttles(&self) -> u64 {
        self.budget.throttles()
    }

    /// Requests sent through this client's (shared) budget so far.
    pub fn requests_sent(&self) -> u64 {
        self.budget.sent()
    }

    /// GET `{company_url}/{path}?{params}&minorversion=..`, retried and classified.
    /// `what` names the request in errors and logs (no secrets).
    pub async fn get(&self, path: &str, params: &[(&str, &str)], what: &str) -> Result<Vec<u8>> {
        let url = format!("{}/{}", self.company_url, path);
        let mut attempt = 1u32;
        let mut throttles = 0u32;
        let mut refreshes = 0u32;
        // After a rejection, the token to retry with (and its generation).
        let mut retry_with: Option<(String, u64)> = None;
        loop {
            let mut permit = self.budget.acquire().await;
            // The token is taken after the budget's wait, which can be long: a token
            // fetched before it could expire in the queue.
            let (token, generation) = match retry_with.take() {
                Some(t) => t,
                None => self.tokens.access().await?,
            };
            permit.leaving();
            let started = std::time::Instant::now();
            let sent = self
                .http
                .get(&url)
                .query(params)
                .query(&[("minorversion", self.minor_version.as_str())])
                .bearer_auth(&token)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await;
            let outcome: std::result::Result<Reply, String> = match sent {
                Err(e) => Err(transport_message(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let tid = resp
                        .headers()
                        .get("intuit_tid")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    read_body(resp)
                        .await
                        .map(|body| (status, tid, retry_after, body))
                }
            };
            // The permit is kept until the answer is classified: after a throttle the
            // budget lets one probe go, and must hear about it before the next one.
            let ticket = permit.ticket;
            let (status, tid, retry_after, body) = match outcome {
                Ok(v) => v,
                Err(message) => {
                    drop(permit);
                    if attempt >= self.backoff.max_attempts {
                        return Err(Error::Transport {
                            what: what.to_string(),
                            message: format!("{message} (after {attempt} attempts)"),
                        });
                    }
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(
                        request = what,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "{message}; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    continue;
                }
            };
            let success = (200..300).contains(&status);
            let fault = if !success || looks_like_fault(&body) {
                parse_fault(&body)
            } else {
                None
            };
            tracing::debug!(
                request = what,
                status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                intuit_tid = tid.as_deref().unwrap_or("-"),
                "quickbooks response"
            );
            if success && fault.is_none() {
                self.tokens.confirm(generation);
                self.budget.answered(&ticket);
                return Ok(body);
            }
            let fault = fault.unwrap_or_default();
            self.observe_server_time(fault.time);
            let fail = |kind: ErrorKind| Error::Fault {
                what: what.to_string(),
                status,
                code: fault.code.clone().unwrap_or_else(|| "-".into()),
                fault_type: fault.fault_type.clone(),
                message: if fault.message.is_empty() {
                    "no fault in body".into()
                } else {
                    fault.message.clone()
                },
                tid: tid
                    .as_deref()
                    .map(|t| format!(" (intuit_tid {t})"))
                    .unwrap_or_default(),
                kind,
            };
            let action = classify(status, fault.code.as_deref(), fault.throttle);
            if action != Action::RefreshAndRetry {
                // Anything but an authentication failure means the token was accepted.
                self.tokens.confirm(generation);
            }
            let wait = retry_after
                .map(Duration::from_secs)
                .unwrap_or(self.retry_after_default);
            // Every request of the realm waits after a throttle (the budget pauses), and
            // the budget may learn a lower rate from it.
            let lowered = if action == Action::WaitAndRetry {
                self.budget.throttled(&ticket, wait)
            } else {
                self.budget.answered(&ticket);
                None
            };
            drop(permit);
            match action {
                Action::WaitAndRetry => {
                    throttles += 1;
                    if throttles > self.max_throttle_retries {
                        return Err(Error::Throttled {
                            what: what.to_string(),
                            attempts: throttles,
                        });
                    }
                    match lowered {
                        Some(limits) => tracing::warn!(
                            request = what,
                            status,
                            wait_ms = wait.as_millis() as u64,
                            "throttled by quickbooks (3001); waiting, and lowering the client-side budget for the rest of the run to {limits}"
                        ),
                        None => tracing::warn!(
                            request = what,
                            status,
                            wait_ms = wait.as_millis() as u64,
                            "throttled by quickbooks (3001); waiting"
                        ),
                    }
                }
                Action::RefreshAndRetry => {
                    // A token that worked before has simply expired (say during a long
                    // throttle wait): refresh and go on, as long as the refresh token is
                    // valid. A token this request just got by refreshing, refused before
                    // it ever worked, means the server does not take our tokens.
                    let fresh_and_refused = refreshes > 0 && !self.tokens.was_confirmed(generation);
                    if fresh_and_refused || refreshes >= self.backoff.max_attempts {
                        return Err(fail(ErrorKind::Auth));
                    }
                    refreshes += 1;
                    tracing::info!(request = what, status, "access token rejected; refreshing");
                    retry_with = Some(self.tokens.after_rejection(generation).await?);
                }
                Action::Backoff => {
                    if attempt >= self.backoff.max_attempts {
                        return Err(fail(ErrorKind::Transient));
                    }
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(
                        request = what,
                        status,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "server error; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Action::Fail(kind) => return Err(fail(kind)),
            }
        }
    }

    /// Runs a query (documented GET form) and returns the raw body.
    pub async fn query(&self, query: &str, what: &str) -> Result<Vec<u8>> {
        self.get("query", &[("query", query)], what).await
    }

    /// Makes sure a token can be had (refreshing if needed): for `check`.
    pub async fn authenticate(&self) -> Result<()> {
        self.tokens.access().await.map(|_| ())
    }
}

async fn read_body(resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    resp.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| transport_message(&e))
}
