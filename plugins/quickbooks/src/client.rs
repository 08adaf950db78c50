//! The HTTP client: the SDK's request loop ([`Requester`]: budget, bearer token, retries)
//! with this connector's fault reading and the classification table of
//! [`crate::error::TABLE`].
//!
//! It also keeps the server's clock: every envelope `time` it is shown moves its estimate
//! of the offset between our clock and QuickBooks', so horizons (CDC's 30 days) are judged
//! by the server's time, not ours.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};

use tributary_sdk::toolkit::http::{
    self, Action, ClientSettings, Failure, Reply, Requester, RetryPolicy,
};
use tributary_sdk::toolkit::{Backoff, Budget, Limits};
use tributary_sdk::Emitter;

use crate::auth::Tokens;
use crate::config::Config;
use crate::error::{classify, parse_fault, Error, Result};

/// A QuickBooks API client for one realm.
#[derive(Debug)]
pub struct Client {
    requester: Requester<Tokens>,
    company_url: String,
    minor_version: String,
    /// Server clock minus ours, in milliseconds; [`UNKNOWN_OFFSET`] until a response told.
    server_offset_ms: AtomicI64,
}

const UNKNOWN_OFFSET: i64 = i64::MIN;

/// Builds the reqwest client with the configured timeouts.
pub fn http_client(config: &Config) -> Result<reqwest::Client> {
    http::client(&ClientSettings {
        user_agent: concat!("tributary-quickbooks/", env!("CARGO_PKG_VERSION")).to_string(),
        timeout: config.request_timeout(),
        connect_timeout: Some(Duration::from_secs(config.connect_timeout_secs.max(1))),
    })
    .map_err(Error::Config)
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
        let window = Duration::from_secs(config.budget_window_secs);
        let limits = Limits {
            per_window: config.requests_per_minute,
            window,
            per_second: config.requests_per_second,
            concurrency: config.max_concurrency,
            margin: Limits::default_margin(window),
            learn: true,
        };
        let budget = Budget::shared(&format!("{}|{}", config.base_url, config.realm_id), limits);
        let policy = RetryPolicy {
            backoff: backoff.clone(),
            max_throttle_waits: config.max_throttle_retries,
            throttle_wait: Duration::from_secs(config.retry_after_default_secs),
            throttle_wait_doubles: false,
        };
        let tokens = Tokens::new(config, http.clone(), out, backoff);
        Ok(Client {
            requester: Requester::new("quickbooks", http, budget, tokens, policy),
            company_url: config.company_url(),
            minor_version: config.minor_version.to_string(),
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
        self.requester.budget().throttles()
    }

    /// Requests sent through this client's (shared) budget so far.
    pub fn requests_sent(&self) -> u64 {
        self.requester.budget().sent()
    }

    /// GET `{company_url}/{path}?{params}&minorversion=..`, retried and classified.
    /// `what` names the request in errors and logs (no secrets).
    // The classifier's error is built once per fault, a rare path: its size is no cost.
    #[allow(clippy::result_large_err)]
    pub async fn get(&self, path: &str, params: &[(&str, &str)], what: &str) -> Result<Vec<u8>> {
        let url = format!("{}/{}", self.company_url, path);
        let build = |http: &reqwest::Client, token: &str| {
            http.get(&url)
                .query(params)
                .query(&[("minorversion", self.minor_version.as_str())])
                .bearer_auth(token)
                .header(reqwest::header::ACCEPT, "application/json")
        };
        match self
            .requester
            .send(what, build, |reply| self.classify(reply, what))
            .await
        {
            Ok(body) => Ok(body),
            Err(Failure::Failed(e) | Failure::Token(e)) => Err(e),
            Err(Failure::GaveUp {
                action: Action::Wait,
                attempts,
                ..
            }) => Err(Error::Throttled {
                what: what.to_string(),
                attempts,
            }),
            Err(Failure::GaveUp { error, .. }) => Err(error),
            Err(Failure::Transport { message, attempts }) => Err(Error::Transport {
                what: what.to_string(),
                message: format!("{message} (after {attempts} attempts)"),
            }),
        }
    }

    /// The body of a success, or the action and error for a fault (a 200 can carry one).
    #[allow(clippy::result_large_err)]
    fn classify(&self, reply: Reply, what: &str) -> std::result::Result<Vec<u8>, (Action, Error)> {
        let status = reply.status;
        let tid = reply
            .headers
            .get("intuit_tid")
            .and_then(|v| v.to_str().ok())
            .map(|t| format!(" (intuit_tid {t})"))
            .unwrap_or_default();
        let success = (200..300).contains(&status);
        let fault = if !success || looks_like_fault(&reply.body) {
            parse_fault(&reply.body)
        } else {
            None
        };
        tracing::debug!(
            request = what,
            status,
            intuit_tid = tid.as_str(),
            "quickbooks response"
        );
        let Some(fault) = fault.or_else(|| (!success).then(Default::default)) else {
            return Ok(reply.body);
        };
        self.observe_server_time(fault.time);
        let action = classify(status, fault.code.as_deref(), fault.throttle);
        let error = Error::Fault {
            what: what.to_string(),
            status,
            code: fault.code.unwrap_or_else(|| "-".into()),
            fault_type: fault.fault_type,
            message: if fault.message.is_empty() {
                "no fault in body".into()
            } else {
                fault.message
            },
            tid,
            kind: action.kind(),
        };
        Err((action, error))
    }

    /// Runs a query (documented GET form) and returns the raw body.
    pub async fn query(&self, query: &str, what: &str) -> Result<Vec<u8>> {
        self.get("query", &[("query", query)], what).await
    }

    /// Makes sure a token can be had (refreshing if needed): for `check`.
    pub async fn authenticate(&self) -> Result<()> {
        self.requester.tokens().access().await.map(|_| ())
    }
}
