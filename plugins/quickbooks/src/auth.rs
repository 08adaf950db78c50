//! OAuth 2.0 tokens, refreshed single-flight. Every refresh response's refresh token is
//! handed to the host (a `ConfigUpdate` control message, persisted atomically before the
//! call returns) before the new access token is used: if the process dies right after a
//! rotation, the next run still holds the live refresh token.
//!
//! A token is renewed early by a fraction of its lifetime (a tenth, at most five
//! minutes), so a server issuing short-lived tokens gets one refresh per lifetime, not
//! one per request. Refreshes are single-flight and generation-counted: whoever sees a
//! stale or rejected token refreshes only if nobody did since, so all concurrently
//! running streams share one refresh per expiry.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;
use tributary_sdk::toolkit::http::{transport_message, TokenSource};
use tributary_sdk::toolkit::Backoff;
use tributary_sdk::{ControlMessage, Emitter};

use crate::config::Config;
use crate::error::{oauth_error, Error, Result};

/// The longest early-refresh margin.
const MAX_EARLY_REFRESH: Duration = Duration::from_secs(300);

/// How long before expiry a token of this lifetime is renewed: a tenth of it, at most
/// [`MAX_EARLY_REFRESH`].
pub fn early_refresh(lifetime: chrono::Duration) -> chrono::Duration {
    let cap = chrono::Duration::from_std(MAX_EARLY_REFRESH).unwrap_or_default();
    (lifetime / 10).clamp(chrono::Duration::zero(), cap)
}

#[derive(Debug, Default)]
struct State {
    access: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// Renew this long before `expires_at`.
    margin: chrono::Duration,
    refresh: String,
    /// Bumped on every refresh; a 401 for generation `g` refreshes only if no one else
    /// already did since `g` (single flight).
    generation: u64,
    /// Set after `invalid_grant`, so concurrent streams fail fast instead of retrying.
    dead: bool,
}

/// The token holder for one realm.
#[derive(Debug)]
pub struct Tokens {
    state: Mutex<State>,
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
    realm: String,
    out: Emitter,
    backoff: Backoff,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

impl Tokens {
    /// Tokens from the config (an access token from an earlier run is reused while valid).
    pub fn new(config: &Config, http: reqwest::Client, out: Emitter, backoff: Backoff) -> Self {
        let expires_at = config
            .access_token_expires_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        // A stored token's lifetime is unknown; what is left of it stands in for it.
        let margin =
            expires_at.map_or_else(chrono::Duration::zero, |e| early_refresh(e - Utc::now()));
        Tokens {
            state: Mutex::new(State {
                access: config
                    .access_token
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .filter(|s| !s.is_empty()),
                // Without a known expiry, trust the token until a 401 says otherwise.
                expires_at,
                margin,
                refresh: config.refresh_token.expose().to_string(),
                generation: 0,
                dead: false,
            }),
            http,
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.expose().to_string(),
            realm: config.realm_id.clone(),
            out,
            backoff,
        }
    }

    /// A usable access token and its generation, refreshing first if it is missing or
    /// about to expire.
    pub async fn access(&self) -> Result<(String, u64)> {
        let mut st = self.state.lock().await;
        let fresh = match (&st.access, st.expires_at) {
            (Some(_), Some(exp)) => exp - st.margin > Utc::now(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !fresh {
            self.refresh_locked(&mut st).await?;
        }
        match &st.access {
            Some(a) => Ok((a.clone(), st.generation)),
            None => Err(Error::TokenEndpoint {
                status: 0,
                error: "no access token issued".into(),
                retryable: false,
            }),
        }
    }

    /// Called after a 401 with the token of generation `seen`: refreshes unless another
    /// request already did, then returns the current token.
    pub async fn after_rejection(&self, seen: u64) -> Result<(String, u64)> {
        let mut st = self.state.lock().await;
        if st.generation == seen {
            self.refresh_locked(&mut st).await?;
        }
        match &st.access {
            Some(a) => Ok((a.clone(), st.generation)),
            None => Err(Error::TokenEndpoint {
                status: 0,
                error: "no access token issued".into(),
                retryable: false,
            }),
        }
    }

    async fn refresh_locked(&self, st: &mut State) -> Result<()> {
        if st.dead {
            return Err(Error::InvalidGrant {
                realm: self.realm.clone(),
            });
        }
        let mut attempt = 1;
        // The lifetime counts from the request, not the answer: never trust it longer.
        let asked_at = Utc::now();
        let response = loop {
            match self.call_token_endpoint(&st.refresh).await {
                Ok(r) => break r,
                Err(Error::TokenEndpoint {
                    retryable: true,
                    status,
                    error,
                }) if attempt < self.backoff.max_attempts => {
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(
                        attempt,
                        status,
                        delay_ms = delay.as_millis() as u64,
                        "token refresh failed ({error}); retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    if matches!(e, Error::InvalidGrant { .. }) {
                        st.dead = true;
                    }
                    return Err(e);
                }
            }
        };
        let refresh = response.refresh_token.unwrap_or_else(|| st.refresh.clone());
        let lifetime = chrono::Duration::seconds(response.expires_in.unwrap_or(3600) as i64);
        let expires_at = asked_at + lifetime;
        let rotated = refresh != st.refresh;
        // Persist first, use after: the old refresh token may already be dead.
        let mut values = BTreeMap::new();
        values.insert("refresh_token".to_string(), refresh.clone());
        values.insert("access_token".to_string(), response.access_token.clone());
        values.insert(
            "access_token_expires_at".to_string(),
            expires_at.to_rfc3339(),
        );
        self.out
            .control(&ControlMessage::ConfigUpdate { values })
            .map_err(|e| Error::Persist(e.message))?;
        st.refresh = refresh;
        st.access = Some(response.access_token);
        st.expires_at = Some(expires_at);
        st.margin = early_refresh(lifetime);
        st.generation += 1;
        tracing::info!(realm = %self.realm, rotated, generation = st.generation, lifetime_secs = lifetime.num_seconds(), renew_before_secs = st.margin.num_seconds(), "refreshed the access token; new credentials persisted");
        Ok(())
    }

    async fn call_token_endpoint(&self, refresh: &str) -> Result<TokenResponse> {
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .map_err(|e| Error::TokenEndpoint {
                status: 0,
                error: transport_message(&e),
                retryable: true,
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| Error::TokenEndpoint {
            status,
            error: transport_message(&e),
            retryable: true,
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice::<TokenResponse>(&body).map_err(|e| {
                Error::TokenEndpoint {
                    status,
                    error: format!("unreadable token response: {e}"),
                    retryable: false,
                }
            });
        }
        let error = oauth_error(&body).unwrap_or_else(|| "no OAuth error in body".to_string());
        Err(match error.as_str() {
            "invalid_grant" => Error::InvalidGrant {
                realm: self.realm.clone(),
            },
            "invalid_client" => Error::InvalidClient,
            _ => Error::TokenEndpoint {
                status,
                error,
                retryable: status >= 500 || status == 429,
            },
        })
    }
}

/// The request loop's token source: the access token, refreshed single-flight.
impl TokenSource for Tokens {
    type Error = Error;
    async fn token(&self) -> Result<(String, u64)> {
        self.access().await
    }
    async fn refresh(&self, seen: u64) -> Result<(String, u64)> {
        self.after_rejection(seen).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_early_refresh_margin_is_a_tenth_of_the_lifetime_capped() {
        let s = chrono::Duration::seconds;
        assert_eq!(early_refresh(s(20)), s(2));
        assert_eq!(early_refresh(s(3600)), s(300));
        assert_eq!(early_refresh(s(600)), s(60));
        assert_eq!(early_refresh(s(-5)), s(0));
    }
}
