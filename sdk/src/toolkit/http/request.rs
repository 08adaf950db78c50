use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;

use super::table::Action;
use super::transport::{retry_after, transport_message};
use super::Secret;
use crate::toolkit::{Backoff, Budget};

/// Where the loop gets the credential it sends, refreshed single-flight.
///
/// Tokens carry a generation, bumped by every refresh: a rejection of generation `g`
/// refreshes only if nobody did since `g`, so concurrent requests share one refresh.
pub trait TokenSource: Send + Sync {
    /// What a failed refresh is.
    type Error;
    /// A usable token and its generation (refreshing first if it is about to expire).
    fn token(&self) -> impl Future<Output = Result<(String, u64), Self::Error>> + Send;
    /// The server refused the token of generation `seen`: refresh unless someone already
    /// did, then return the current token.
    fn refresh(&self, seen: u64)
        -> impl Future<Output = Result<(String, u64), Self::Error>> + Send;
}

/// A fixed bearer token (an API key): nothing to refresh.
#[derive(Debug, Clone)]
pub struct StaticToken(pub Secret);

impl TokenSource for StaticToken {
    type Error = std::convert::Infallible;
    async fn token(&self) -> Result<(String, u64), Self::Error> {
        Ok((self.0.expose().to_string(), 0))
    }
    async fn refresh(&self, _seen: u64) -> Result<(String, u64), Self::Error> {
        self.token().await
    }
}

/// How often and how long the loop retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// For transport failures and [`Action::Retry`]; its `max_attempts` also caps
    /// refreshes per request.
    pub backoff: Backoff,
    /// Throttles ([`Action::Wait`]) one request may wait out.
    pub max_throttle_waits: u32,
    /// The wait after a throttle without `Retry-After`.
    pub throttle_wait: Duration,
    /// Whether that wait doubles with each throttle of the same request (up to 300 s).
    pub throttle_wait_doubles: bool,
}

impl RetryPolicy {
    fn default_wait(&self, throttles: u32) -> Duration {
        if self.throttle_wait_doubles {
            self.throttle_wait
                .saturating_mul(2u32.saturating_pow(throttles.saturating_sub(1)))
                .min(Duration::from_secs(300))
        } else {
            self.throttle_wait
        }
    }
}

/// One response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text (invalid UTF-8 replaced).
    pub fn into_text(self) -> String {
        String::from_utf8(self.body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Why [`Requester::send`] gave up.
#[derive(Debug)]
pub enum Failure<E, T> {
    /// The connector's classification said [`Action::Fail`] (or `Accept` with an error).
    Failed(E),
    /// Retries of this action ran out; `error` is the last response's.
    GaveUp {
        /// The action that could not be repeated any more.
        action: Action,
        /// The connector's error for the last response.
        error: E,
        /// Attempts of that action (throttle waits for `Wait`).
        attempts: u32,
    },
    /// The request never got an answer, after retries.
    Transport {
        /// What happened (see [`transport_message`]).
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The token source failed.
    Token(T),
}

/// Counters of one requester, for the end-of-read log line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Throttled responses.
    pub throttled: AtomicU64,
    /// Retries after transport failures and [`Action::Retry`].
    pub retried: AtomicU64,
}

/// The one request loop: budget, token, send, classify, retry.
///
/// Every request waits for the credential's [`Budget`], takes the token after that wait
/// (a token fetched before a long queue could expire in it), marks the permit as leaving,
/// and keeps it until the answer is classified (after a throttle the budget lets one
/// probe go and must hear of it before the next). The connector's classifier turns a
/// [`Reply`] into its output or an [`Action`] (usually from a [`super::Table`]) and its
/// own error; the loop acts on the action.
#[derive(Debug)]
pub struct Requester<S> {
    service: &'static str,
    http: reqwest::Client,
    budget: Arc<Budget>,
    tokens: S,
    policy: RetryPolicy,
    /// The newest generation that authorized a request: a later rejection of it means
    /// it expired, not that the server refuses our tokens.
    confirmed: AtomicU64,
    /// Counters.
    pub stats: Stats,
}

impl<S> Drop for Requester<S> {
    fn drop(&mut self) {
        self.budget.leave();
    }
}

impl<S: TokenSource> Requester<S> {
    /// A requester for `service` (its name in logs, e.g. `quickbooks`) sending through
    /// `http` within `budget` (joined until drop).
    pub fn new(
        service: &'static str,
        http: reqwest::Client,
        budget: Arc<Budget>,
        tokens: S,
        policy: RetryPolicy,
    ) -> Self {
        budget.join();
        Requester {
            service,
            http,
            budget,
            tokens,
            policy,
            confirmed: AtomicU64::new(0),
            stats: Stats::default(),
        }
    }

    /// The shared budget (for its counters).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The token source.
    pub fn tokens(&self) -> &S {
        &self.tokens
    }

    /// Sends the request `build` makes (given the client and the token) until `classify`
    /// accepts a reply or the policy runs out. `what` names the request in logs (no
    /// secrets).
    pub async fn send<T, E, B, C>(
        &self,
        what: &str,
        build: B,
        mut classify: C,
    ) -> Result<T, Failure<E, S::Error>>
    where
        B: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        C: FnMut(Reply) -> Result<T, (Action, E)>,
    {
        let mut attempt = 1u32;
        let mut throttles = 0u32;
        let mut refreshes = 0u32;
        // After a rejection, the token to retry with (and its generation).
        let mut retry_with: Option<(String, u64)> = None;
        loop {
            let mut permit = self.budget.acquire().await;
            let (token, generation) = match retry_with.take() {
                Some(t) => t,
                None => self.tokens.token().await.map_err(Failure::Token)?,
            };
            permit.leaving();
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            crate::usage::request();
            let outcome = match build(&self.http, &token).send().await {
                Err(e) => Err(transport_message(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok(Reply {
                            status,
                            headers,
                            body: body.to_vec(),
                        }),
                        Err(e) => Err(transport_message(&e)),
                    }
                }
            };
            let ticket = permit.ticket;
            let reply = match outcome {
                Ok(reply) => reply,
                Err(message) => {
                    drop(permit);
                    if attempt >= self.policy.backoff.max_attempts {
                        return Err(Failure::Transport {
                            message,
                            attempts: attempt,
                        });
                    }
                    self.back_off(what, attempt, &message).await;
                    attempt += 1;
                    continue;
                }
            };
            let status = reply.status;
            let wait_hint = retry_after(&reply.headers);
            let (action, error) = match classify(reply) {
                Ok(v) => {
                    self.confirmed.fetch_max(generation, Ordering::Relaxed);
                    self.budget.answered(&ticket);
                    return Ok(v);
                }
                Err(f) => f,
            };
            if action != Action::Refresh {
                // Anything but an authentication failure means the token was accepted.
                self.confirmed.fetch_max(generation, Ordering::Relaxed);
            }
            let lowered = if action == Action::Wait {
                throttles += 1;
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                crate::usage::throttle();
                let wait = wait_hint.unwrap_or_else(|| self.policy.default_wait(throttles));
                // Every request of the credential waits (the budget pauses), and the
                // budget may learn a lower rate.
                Some((wait, self.budget.throttled(&ticket, wait)))
            } else {
                self.budget.answered(&ticket);
                None
            };
            drop(permit);
            match action {
                Action::Wait => {
                    if throttles > self.policy.max_throttle_waits {
                        return Err(Failure::GaveUp {
                            action,
                            error,
                            attempts: throttles,
                        });
                    }
                    let (wait, lowered) = lowered.unwrap_or_default();
                    match lowered {
                        Some(limits) => tracing::warn!(
                            request = what,
                            status,
                            wait_ms = wait.as_millis() as u64,
                            "{} rate limit exceeded on {what}; waiting, and lowering the client-side budget for the rest of the run to {limits}", self.service
                        ),
                        None => tracing::warn!(
                            request = what,
                            status,
                            wait_ms = wait.as_millis() as u64,
                            "{} rate limit exceeded on {what}; waiting", self.service
                        ),
                    }
                    if !self.budget.limits().learn {
                        // A learning budget already pauses everyone for the wait.
                        tokio::time::sleep(wait).await;
                    }
                }
                Action::Refresh => {
                    // A token that worked before has simply expired: refresh and go on.
                    // A token this request just got by refreshing, refused before it
                    // ever worked, means the server does not take our tokens.
                    let fresh_and_refused =
                        refreshes > 0 && self.confirmed.load(Ordering::Relaxed) < generation;
                    if fresh_and_refused || refreshes >= self.policy.backoff.max_attempts {
                        return Err(Failure::GaveUp {
                            action,
                            error,
                            attempts: refreshes + 1,
                        });
                    }
                    refreshes += 1;
                    tracing::info!(request = what, status, "access token rejected; refreshing");
                    retry_with = Some(
                        self.tokens
                            .refresh(generation)
                            .await
                            .map_err(Failure::Token)?,
                    );
                }
                Action::Retry => {
                    if attempt >= self.policy.backoff.max_attempts {
                        return Err(Failure::GaveUp {
                            action,
                            error,
                            attempts: attempt,
                        });
                    }
                    self.back_off(
                        what,
                        attempt,
                        &format!("{} answered http {status}", self.service),
                    )
                    .await;
                    attempt += 1;
                }
                Action::Accept | Action::Fail(_) => return Err(Failure::Failed(error)),
            }
        }
    }

    async fn back_off(&self, what: &str, attempt: u32, why: &str) {
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        let delay = self.policy.backoff.delay(attempt);
        tracing::warn!(
            request = what,
            attempt,
            delay_ms = delay.as_millis() as u64,
            "{why}; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}
