//! The GraphQL client: headers, the client-side request budget, retries, and the
//! classification of every HTTP and GraphQL failure into [`Error`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tributary_sdk::toolkit::Backoff;

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::json::{self, Body, Page};

/// A sliding-window request budget. The window is the nominal one plus a margin (1/60 of
/// it, one second for the documented minute, at least 50 ms): the server counts arrivals,
/// which latency can bunch closer together than our departures, and the margin keeps a
/// full-speed run strictly under the server's count.
#[derive(Debug)]
struct Budget {
    per_window: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl Budget {
    async fn acquire(&self) {
        if self.per_window == 0 {
            return;
        }
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < self.per_window {
                    sent.push_back(now);
                    return;
                }
                sent.front().map_or(Duration::ZERO, |t| {
                    self.window.saturating_sub(now.duration_since(*t))
                })
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// Counters of one client, for the end-of-read log line.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Responses that said `rate_limit_exceeded` (or 429).
    pub throttled: AtomicU64,
    /// Retries after transient failures.
    pub retried: AtomicU64,
}

/// A SuperOps GraphQL client; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    subdomain: String,
    token: Secret,
    budget: Budget,
    backoff: Backoff,
    max_retries: u32,
    rate_limit_wait: Duration,
    /// Counters.
    pub stats: ClientStats,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: &Config) -> Result<Arc<Client>> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .gzip(true)
            .user_agent(concat!("tributary-superops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Other(format!("cannot build the http client: {e}")))?;
        Ok(Arc::new(Client {
            http,
            url: config.api_url.clone(),
            subdomain: config.subdomain.clone(),
            token: config.api_token.clone(),
            budget: Budget {
                per_window: config.requests_per_minute as usize,
                window: budget_window(config.rate_window_seconds),
                sent: Mutex::new(VecDeque::new()),
            },
            backoff: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(30),
                max_attempts: config.max_retries + 1,
            },
            max_retries: config.max_retries,
            rate_limit_wait: Duration::from_secs_f64(config.rate_limit_wait_seconds),
            stats: ClientStats::default(),
        }))
    }

    /// Runs list query `query` (whose root field is `root`) with `variables`, retrying
    /// what may pass, and returns the page. `context` names stream and page for messages.
    pub async fn list(
        &self,
        query: &str,
        root: &str,
        list_key: &str,
        variables: &Value,
        context: &str,
    ) -> Result<Page> {
        let body = json!({"query": query, "variables": variables}).to_string();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.once(&body, root, list_key, context).await {
                Ok(page) => return Ok(page),
                Err(Error::RateLimited {
                    operation,
                    retry_after,
                }) if attempt <= self.max_retries => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after.map(Duration::from_secs_f64).unwrap_or_else(|| {
                        self.rate_limit_wait
                            .saturating_mul(2u32.saturating_pow(attempt - 1))
                            .min(Duration::from_secs(300))
                    });
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "superops rate limit exceeded on {operation}; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(Error::RateLimited { .. }) => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::RateLimited {
                        operation: context.to_string(),
                        retry_after: None,
                    });
                }
                Err(Error::Transient(msg)) if attempt <= self.max_retries => {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "{context}: {msg}; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn once(&self, body: &str, root: &str, list_key: &str, context: &str) -> Result<Page> {
        self.budget.acquire().await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(&self.url)
            .header("Authorization", format!("Bearer {}", self.token.expose()))
            .header("CustomerSubDomain", &self.subdomain)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                Error::Transient(format!(
                    "{context}: request to superops failed: {}",
                    describe(&e)
                ))
            })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let text = resp.text().await.map_err(|e| {
            Error::Transient(format!(
                "{context}: reading the response failed: {}",
                describe(&e)
            ))
        })?;
        match status {
            200 => {}
            400 if text.trim().is_empty() => {
                return Err(Error::BadSubdomain {
                    subdomain: self.subdomain.clone(),
                })
            }
            400 => return Err(Error::BadRequest(snippet(&text))),
            401 => return Err(Error::Unauthorized),
            403 => {
                return Err(Error::Forbidden {
                    context: context.to_string(),
                })
            }
            429 => {
                return Err(Error::RateLimited {
                    operation: context.to_string(),
                    retry_after,
                })
            }
            408 | 500..=599 => {
                return Err(Error::Transient(format!(
                    "{context}: superops answered http {status}"
                )))
            }
            other => {
                return Err(Error::Other(format!(
                    "{context}: unexpected http {other} from superops: {}",
                    snippet(&text)
                )))
            }
        }
        match json::parse_body(&text, root, context)? {
            Body::Data(result) => json::parse_list(result, list_key, context),
            Body::Errors { errors, partial } => {
                let codes: Vec<&str> = errors.iter().flat_map(|e| e.codes()).collect();
                if codes.contains(&"rate_limit_exceeded") {
                    return Err(Error::RateLimited {
                        operation: context.to_string(),
                        retry_after,
                    });
                }
                if codes.contains(&"forbidden") {
                    return Err(Error::Forbidden {
                        context: context.to_string(),
                    });
                }
                if let Some(code) = codes.iter().find(|c| c.starts_with("subscription_")) {
                    return Err(Error::Subscription {
                        code: code.to_string(),
                        context: context.to_string(),
                    });
                }
                let mut detail: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let codes: Vec<&str> = e.codes().collect();
                        let msg = e.message.as_deref().unwrap_or("(no message)");
                        if codes.is_empty() {
                            msg.to_string()
                        } else {
                            format!("{} ({msg})", codes.join(","))
                        }
                    })
                    .collect();
                if partial {
                    detail.insert(0, "partial data with errors, page rejected".to_string());
                }
                Err(Error::GraphQl {
                    operation: context.to_string(),
                    detail: detail.join("; "),
                })
            }
        }
    }
}

/// The budget's window for a nominal one of `seconds` (see [`Budget`]).
fn budget_window(seconds: f64) -> Duration {
    let nominal = Duration::from_secs_f64(seconds);
    nominal + (nominal / 60).max(Duration::from_millis(50))
}

/// A reqwest error without its URL's query (there is none) and with its cause chain; the
/// token is in a header, which reqwest never prints.
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    if t.len() > 300 {
        let mut end = 300;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &t[..end])
    } else {
        t.to_string()
    }
}
