//! The `config` table of a QuickBooks source. Every field is documented here; this file is
//! the reference `docs/quickbooks.md` summarises.

use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::error::{Error, Result};

pub use tributary_sdk::toolkit::http::Secret;

/// Which date the manifest's window (`--start`/`--end`) filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowField {
    /// Transactions by business date (`TxnDate`), list entities by `LastUpdatedTime`.
    #[default]
    TxnDate,
    /// Every stream by `MetaData.LastUpdatedTime`.
    LastUpdatedTime,
}

/// Settings of one QuickBooks company (realm). Secrets are redacted from `Debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub max_attempts: u32,
    /// First backoff delay in milliseconds (doubles per attempt, with full jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Whole-request timeout in seconds (QuickBooks cuts queries off at 120 s).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// TCP/TLS connect timeout in seconds.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Streams read at the same time (they share the budget).
    #[serde(default = "default_stream_concurrency")]
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

/// The JSON Schema `spec` returns.
pub fn spec() -> serde_json::Value {
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "QuickBooks Online",
        "type": "object",
        "required": ["realm_id", "client_id", "client_secret", "refresh_token"],
        "additionalProperties": false,
        "properties": {
            "realm_id": {"type": "string", "description": "Company id (realmId)"},
            "client_id": {"type": "string", "description": "OAuth client id of the Intuit app"},
            "client_secret": {"type": "string", "description": "OAuth client secret", "secret": true},
            "refresh_token": {"type": "string", "description": "Current refresh token; rotates and is persisted by the host", "secret": true},
            "access_token": {"type": "string", "description": "Access token from an earlier run (host-managed)", "secret": true},
            "access_token_expires_at": {"type": "string", "format": "date-time", "description": "Expiry of access_token (host-managed)"},
            "base_url": {"type": "string", "default": PRODUCTION_BASE_URL},
            "token_url": {"type": "string", "default": INTUIT_TOKEN_URL},
            "minor_version": {"type": "integer", "default": 75},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
            "requests_per_minute": {"type": "integer", "minimum": 0, "default": 500},
            "requests_per_second": {"type": "integer", "minimum": 0, "default": 10},
            "max_concurrency": {"type": "integer", "minimum": 0, "default": 10},
            "budget_window_secs": {"type": "integer", "minimum": 1, "default": 60},
            "retry_after_default_secs": {"type": "integer", "minimum": 0, "default": 60},
            "max_throttle_retries": {"type": "integer", "minimum": 0, "default": 10},
            "max_attempts": {"type": "integer", "minimum": 1, "default": 6},
            "backoff_initial_ms": {"type": "integer", "minimum": 0, "default": 500},
            "backoff_max_ms": {"type": "integer", "minimum": 0, "default": 30000},
            "request_timeout_secs": {"type": "integer", "minimum": 1, "default": 130},
            "connect_timeout_secs": {"type": "integer", "minimum": 1, "default": 10},
            "stream_concurrency": {"type": "integer", "minimum": 1, "default": 4},
            "window_field": {"type": "string", "enum": ["txn_date", "last_updated_time"], "default": "txn_date"},
            "start_date": {"type": "string", "format": "date"},
            "report_chunk_days": {"type": "integer", "minimum": 1, "default": 30},
            "report_lookback_days": {"type": "integer", "minimum": 0, "default": 30},
            "cdc_margin_secs": {"type": "integer", "minimum": 0, "maximum": 86400, "default": 300}
        }
    })
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
