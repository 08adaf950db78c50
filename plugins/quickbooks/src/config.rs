//! The `config` table of a QuickBooks source. Every field is documented here; this file is
//! the reference `docs/quickbooks.md` summarises.

use std::time::Duration;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use tributary_sdk::toolkit::http::Secret;

/// Which date the manifest's window (`--start`/`--end`) filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowField {
    /// Transactions by business date (`TxnDate`), list entities by `LastUpdatedTime`.
    #[default]
    TxnDate,
    /// Every stream by `MetaData.LastUpdatedTime`.
    LastUpdatedTime,
}

/// Settings of one QuickBooks company (realm). Secrets are redacted from `Debug`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "QuickBooks Online")]
pub struct Config {
    /// The company id (`realmId`) shown in the QuickBooks developer portal.
    pub realm_id: String,
    /// OAuth 2.0 client id of your Intuit app.
    pub client_id: String,
    /// OAuth 2.0 client secret of your Intuit app.
    pub client_secret: Secret,
    /// The current refresh token. It rotates: the connector hands every new one to the
    /// host, which stores it in the credentials file and merges it over this value.
    pub refresh_token: Secret,
    /// An access token still valid from an earlier run (written by the host), if any.
    #[serde(default)]
    pub access_token: Option<Secret>,
    /// When `access_token` expires (RFC 3339), written by the host with it.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub access_token_expires_at: Option<String>,
    /// API host; the sandbox host or the local emulator for testing.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// OAuth token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// `minorversion` sent on every request.
    #[serde(default = "default_minor_version")]
    pub minor_version: u32,
    /// `MAXRESULTS` per query page (1..=1000).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: u32,
    /// Client-side budget: requests per minute per realm (QuickBooks allows 500).
    #[serde(default = "default_per_minute")]
    pub requests_per_minute: u32,
    /// Client-side budget: requests per second per realm (QuickBooks allows 10).
    #[serde(default = "default_per_second")]
    pub requests_per_second: u32,
    /// Client-side budget: requests in flight at once (QuickBooks allows 10).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// Length in seconds of the "minute" budget window. Only benchmarks and tests against
    /// a scaled-down emulator change it.
    #[serde(default = "default_budget_window_secs")]
    #[schemars(range(min = 1))]
    pub budget_window_secs: u64,
    /// Seconds to wait after a throttle fault that carries no `Retry-After` (QuickBooks
    /// documents 60 s; tests lower it).
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_default_secs: u64,
    /// Throttle faults tolerated in a row for one request before giving up.
    #[serde(default = "default_max_throttle_retries")]
    pub max_throttle_retries: u32,
    /// Attempts for one request on 5xx and timeouts, the first included.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// First backoff delay in milliseconds (doubles per attempt, with full jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Whole-request timeout in seconds (QuickBooks cuts queries off at 120 s).
    #[serde(default = "default_request_timeout_secs")]
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
    /// TCP/TLS connect timeout in seconds.
    #[serde(default = "default_connect_timeout_secs")]
    #[schemars(range(min = 1))]
    pub connect_timeout_secs: u64,
    /// Streams read at the same time (they share the budget).
    #[serde(default = "default_stream_concurrency")]
    #[schemars(range(min = 1))]
    pub stream_concurrency: u32,
    /// What the window's start/end filter on.
    #[serde(default)]
    pub window_field: WindowField,
    /// First date of the `transaction_list` report when neither the window nor saved
    /// state says otherwise (default: three years ago).
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    /// Days per `transaction_list` request (the report has no paging).
    #[serde(default = "default_report_chunk_days")]
    #[schemars(range(min = 1))]
    pub report_chunk_days: u32,
    /// Days before the saved position an incremental `transaction_list` re-reads, to
    /// pick up edits to recent transactions.
    #[serde(default = "default_report_lookback_days")]
    pub report_lookback_days: u32,
    /// Seconds subtracted from the server's time at the start of a complete read to get
    /// the next CDC `changedSince`: changes committed while the read was starting (or
    /// stamped by a server clock a little behind) are asked for again. Re-reading costs
    /// nothing but duplicates the exact position removes.
    #[serde(default = "default_cdc_margin_secs")]
    #[schemars(range(max = 86_400))]
    pub cdc_margin_secs: u64,
}

/// Production API host.
pub const PRODUCTION_BASE_URL: &str = "https://quickbooks.api.intuit.com";
/// Intuit's OAuth token endpoint (production and sandbox).
pub const INTUIT_TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";

fn default_base_url() -> String {
    PRODUCTION_BASE_URL.to_string()
}
fn default_token_url() -> String {
    INTUIT_TOKEN_URL.to_string()
}
const fn default_minor_version() -> u32 {
    75
}
const fn default_page_size() -> u32 {
    1000
}
const fn default_per_minute() -> u32 {
    500
}
const fn default_per_second() -> u32 {
    10
}
const fn default_concurrency() -> u32 {
    10
}
const fn default_budget_window_secs() -> u64 {
    60
}
const fn default_retry_after_secs() -> u64 {
    60
}
const fn default_max_throttle_retries() -> u32 {
    10
}
const fn default_max_attempts() -> u32 {
    6
}
const fn default_backoff_initial_ms() -> u64 {
    500
}
const fn default_backoff_max_ms() -> u64 {
    30_000
}
const fn default_request_timeout_secs() -> u64 {
    130
}
const fn default_connect_timeout_secs() -> u64 {
    10
}
const fn default_stream_concurrency() -> u32 {
    4
}
const fn default_report_chunk_days() -> u32 {
    30
}
const fn default_report_lookback_days() -> u32 {
    30
}
const fn default_cdc_margin_secs() -> u64 {
    300
}

impl Config {
    /// Parses and validates the config JSON; every problem is reported at once.
    pub fn from_value(value: serde_json::Value) -> Result<Config> {
        let config: Config = serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("invalid config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.realm_id.trim().is_empty()
            || !self.realm_id.chars().all(|c| c.is_ascii_alphanumeric())
        {
            problems.push("realm_id must be the numeric company id".to_string());
        }
        if self.client_id.trim().is_empty() {
            problems.push("client_id is empty".to_string());
        }
        if self.client_secret.expose().is_empty() {
            problems.push("client_secret is empty".to_string());
        }
        if self.refresh_token.expose().is_empty() {
            problems.push("refresh_token is empty".to_string());
        }
        if !(1..=1000).contains(&self.page_size) {
            problems.push(format!(
                "page_size must be between 1 and 1000 (QuickBooks' MAXRESULTS limit), not {}",
                self.page_size
            ));
        }
        for (name, url) in [("base_url", &self.base_url), ("token_url", &self.token_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!("{name} must be an http(s) URL"));
            }
        }
        if self.report_chunk_days == 0 {
            problems.push("report_chunk_days must be at least 1".to_string());
        }
        if self.cdc_margin_secs > 86_400 {
            problems.push(format!(
                "cdc_margin_secs must be at most 86400 (a day), not {}",
                self.cdc_margin_secs
            ));
        }
        if self.budget_window_secs == 0 {
            problems.push("budget_window_secs must be at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "invalid config: {}",
                problems.join("; ")
            )))
        }
    }

    /// The CDC safety margin.
    pub fn cdc_margin(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.cdc_margin_secs.min(86_400) as i64)
    }

    /// Per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// `https://host/v3/company/{realm}`.
    pub fn company_url(&self) -> String {
        format!(
            "{}/v3/company/{}",
            self.base_url.trim_end_matches('/'),
            self.realm_id
        )
    }
}

/// The JSON Schema `spec` returns, derived from [`Config`].
pub fn spec() -> serde_json::Value {
    tributary_sdk::config_spec::<Config>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = Config::from_value(serde_json::json!({"realm_id": "123", "client_id": "cid", "client_secret": "s3cret-value",
            "refresh_token": "refresh-value", "access_token": "access-value"}))
        .expect("valid");
        let text = format!("{c:?}");
        for secret in ["s3cret-value", "refresh-value", "access-value"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(c.page_size, 1000);
        assert_eq!(c.minor_version, 75);
    }

    /// The spec's required keys, defaults and unknown-key rule are serde's.
    #[test]
    fn spec_agrees_with_serde() {
        let minimal = serde_json::json!({"realm_id": "123", "client_id": "c", "client_secret": "s", "refresh_token": "r"});
        assert_eq!(tributary_sdk::spec_drift::<Config>(&minimal), Ok(()));
        let spec = spec();
        let props = &spec["properties"];
        for secret in ["client_secret", "refresh_token", "access_token"] {
            assert_eq!(props[secret]["secret"], true, "{secret}");
        }
        assert_eq!(
            props["window_field"]["enum"],
            serde_json::json!(["txn_date", "last_updated_time"])
        );
        assert_eq!(
            (
                &props["page_size"]["minimum"],
                &props["page_size"]["maximum"]
            ),
            (&1.into(), &1000.into())
        );
        assert_eq!(props["start_date"]["format"], "date");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_config_errors() {
        let e = Config::from_value(serde_json::json!({"realm_id": "123", "client_id": "c", "client_secret": "s", "refresh_token": "r", "pagesize": 5}))
            .expect_err("unknown key");
        assert!(e.to_string().contains("pagesize"));
        let e = Config::from_value(serde_json::json!({"realm_id": "123", "client_id": "c", "client_secret": "s", "refresh_token": "r", "page_size": 1500}))
            .expect_err("too large");
        assert!(e.to_string().contains("1000"));
    }
}
