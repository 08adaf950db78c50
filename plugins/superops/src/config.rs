//! The `config` table of a SuperOps source.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tributary_sdk::toolkit::ReconcileEvery;

use crate::error::{Error, Result};

pub use tributary_sdk::toolkit::http::Secret;

/// Settings of one SuperOps tenant, from `[sources.<name>.config]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "SuperOps MSP")]
pub struct Config {
    /// GraphQL endpoint: `https://api.superops.ai/msp` (US, the default),
    /// `https://euapi.superops.ai/msp` (EU), or any URL (an emulator).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The tenant subdomain (Settings → MSP Information), sent as `CustomerSubDomain`.
    pub subdomain: String,
    /// API token (Settings → My Profile → API token). Reference it as `${ENV_VAR}` in the
    /// manifest; it is never logged.
    pub api_token: Secret,
    /// Rows per page, 1–100 (the API maximum).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 100))]
    pub page_size: u32,
    /// Client-side request budget per rolling minute; 0 turns it off (emulators only).
    /// The default, 100, is the conservative reading of the documented limits (100 or
    /// 800 per minute); raise it to 800 if your tenant allows it.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Length in seconds of the window `requests_per_minute` counts over: 60, the
    /// documented minute. Only an emulator with a shortened window needs another value.
    #[serde(default = "default_rate_window_seconds")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub rate_window_seconds: f64,
    /// Pages fetched concurrently during full scans.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: u32,
    /// How far before the saved cursor incremental ticket reads start again, to catch
    /// late-committed edits; rows already delivered are recognised and skipped.
    #[serde(default = "default_overlap_seconds")]
    pub overlap_seconds: u64,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub timeout_seconds: f64,
    /// First wait after `rate_limit_exceeded`, in seconds; doubles on each repeat (the API
    /// sends no Retry-After; one is honoured if it ever appears).
    #[serde(default = "default_rate_limit_wait_seconds")]
    #[schemars(range(min = 0))]
    pub rate_limit_wait_seconds: f64,
    /// Retries of one request after throttling, 5xx or network errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// How often the tickets stream lists every ticket id to find deleted tickets (the API
    /// has no deletion feed): `"24h"`, `"30m"`, `"7d"`, `"always"` (every run) or `"never"`
    /// (only on a full refresh). A first sync and every full refresh are such a listing
    /// anyway.
    #[serde(default = "default_reconcile_every")]
    pub reconcile_every: ReconcileEvery,
}

fn default_api_url() -> String {
    "https://api.superops.ai/msp".to_string()
}
const fn default_page_size() -> u32 {
    100
}
const fn default_requests_per_minute() -> u32 {
    100
}
const fn default_rate_window_seconds() -> f64 {
    60.0
}
fn default_reconcile_every() -> ReconcileEvery {
    ReconcileEvery::Every(chrono::Duration::hours(24))
}
const fn default_concurrency() -> u32 {
    4
}
const fn default_overlap_seconds() -> u64 {
    600
}
const fn default_timeout_seconds() -> f64 {
    60.0
}
const fn default_rate_limit_wait_seconds() -> f64 {
    30.0
}
const fn default_max_retries() -> u32 {
    5
}

impl Config {
    /// Parses and validates `value`.
    pub fn from_value(value: Value) -> Result<Config> {
        let mut config: Config = serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("invalid config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values without any I/O, reporting every problem at once.
    pub fn validate(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        // The ingress rejects a whitespace-padded subdomain with an empty 400, so trim it.
        self.subdomain = self.subdomain.trim().to_string();
        if self.subdomain.is_empty() {
            problems.push("subdomain is empty: set it to your SuperOps subdomain (Settings → MSP Information)".to_string());
        }
        if self.api_token.expose().trim().is_empty() {
            problems.push(
                "api_token is empty: generate one under Settings → My Profile → API token"
                    .to_string(),
            );
        }
        if !(self.api_url.starts_with("http://") || self.api_url.starts_with("https://")) {
            problems.push(format!("api_url {:?} is not an http(s) URL", self.api_url));
        }
        if !(1..=100).contains(&self.page_size) {
            problems.push(format!(
                "page_size {} is outside 1..=100 (the API maximum is 100)",
                self.page_size
            ));
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_string());
        }
        if self.timeout_seconds.is_nan() || self.timeout_seconds <= 0.0 {
            problems.push("timeout_seconds must be positive".to_string());
        }
        if !(self.rate_window_seconds.is_finite() && self.rate_window_seconds > 0.0) {
            problems.push("rate_window_seconds must be positive".to_string());
        }
        if self.rate_limit_wait_seconds.is_nan() || self.rate_limit_wait_seconds < 0.0 {
            problems.push("rate_limit_wait_seconds must not be negative".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }

    /// The overlap window.
    pub fn overlap(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.overlap_seconds.min(i64::MAX as u64 / 1000) as i64)
    }
}

/// JSON Schema of [`Config`], for `spec`.
pub fn spec() -> Value {
    tributary_sdk::config_spec::<Config>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spec's required keys, defaults and unknown-key rule are serde's.
    #[test]
    fn spec_agrees_with_serde() {
        let minimal = json!({"subdomain": "acme", "api_token": "t"});
        assert_eq!(tributary_sdk::spec_drift::<Config>(&minimal), Ok(()));
        let spec = spec();
        let props = &spec["properties"];
        assert_eq!(props["api_token"]["secret"], true);
        assert_eq!(props["page_size"]["maximum"], 100);
        assert_eq!(props["timeout_seconds"]["exclusiveMinimum"], 0);
        assert_eq!(props["reconcile_every"]["default"], "1d"); // 24h, as Display writes it
    }
}
