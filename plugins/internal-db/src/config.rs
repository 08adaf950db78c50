//! The `[sources.<name>.config]` table of the manifest.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_sdk::toolkit::ReconcileEvery;

use crate::dialect::Dialect;
use crate::error::{redact_url, Error, Result};
use crate::sample::SampleSpec;
use crate::streams::{self, Kind};

/// Connector settings.
///
/// ```toml
/// [sources.msp_db.config]
/// url = "sqlite:data/internal.db"
/// pool_size = 4
/// page_size = 10000
/// parallel_pages = 1
/// reconcile_every = "1h"
/// soft_delete = { service_history = "deleted_at", contracts = "is_deleted" }
/// sample_data = { clients = 50, seed = 42 }
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "internal-db",
    description = "An MSP's own SQL database: SQLite, PostgreSQL, MySQL or MariaDB."
)]
pub struct Config {
    /// Database URL; the scheme picks the driver: `sqlite:path/to/file.db`,
    /// `postgres://user:password@host:5432/db` (or `postgresql://`),
    /// `mysql://user:password@host:3306/db` (or `mariadb://`). Use `${ENV_VAR}` in the
    /// manifest for the password; it never appears in logs or errors.
    #[schemars(regex(pattern = r"^(sqlite:|postgres(ql)?://|mysql://|mariadb://)"))]
    pub url: String,
    /// Largest number of open connections.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 256))]
    pub pool_size: u32,
    /// Rows per query page. Each page is emitted as one batch followed by one checkpoint.
    /// A reconciliation pass lists this many ids per query, sent as one batch of keys.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub page_size: u32,
    /// Pages of one stream fetched at the same time (at most `pool_size`). With more than
    /// one, the reader first walks the `(updated_at, id)` index to each page's last key and
    /// fetches key ranges concurrently. That helps when the database is remote or has
    /// idle cores; on a busy 2-core machine it measured slower than 1, hence the default.
    #[serde(default = "default_parallel_pages")]
    #[schemars(range(min = 1, max = 8))]
    pub parallel_pages: u32,
    /// Seconds to wait for a connection (or a locked SQLite file) before failing with a
    /// transient error.
    #[serde(default = "default_connect_timeout_secs")]
    #[schemars(range(min = 1, max = 3600))]
    pub connect_timeout_secs: u64,
    /// When set and `url` is a SQLite file that does not exist yet, create it, apply the
    /// schema and fill it with deterministic sample data. Ignored for other databases and
    /// for files that exist.
    #[serde(default)]
    pub sample_data: Option<SampleSpec>,
    /// How often an incremental run also lists every live `id` of a stream, so that the
    /// host can mark rows deleted from the table (`"1h"`, `"30m"`, `"7d"`, `"always"`,
    /// `"never"`). The time of the last completed pass is kept in the stream's state. A
    /// `--full-refresh` read always reconciles ("never" included).
    #[serde(default = "default_reconcile_every")]
    pub reconcile_every: ReconcileEvery,
    /// Soft-delete column per stream, e.g. `{ service_history = "deleted_at" }`. A row
    /// whose column is non-NULL and not false (a timestamp that is set, a flag that is
    /// true) is emitted as a deletion record and left out of reconciliation listings.
    #[serde(default)]
    #[schemars(extend(
        "propertyNames" = {"enum": streams::ALL.map(|s| s.name)},
        "additionalProperties" = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": MAX_IDENTIFIER},
    ))]
    pub soft_delete: BTreeMap<String, String>,
}

/// Default [`Config::pool_size`].
pub const fn default_pool_size() -> u32 {
    4
}

/// Default [`Config::page_size`].
pub const fn default_page_size() -> u32 {
    10_000
}

/// Default [`Config::parallel_pages`].
pub const fn default_parallel_pages() -> u32 {
    1
}

/// Default [`Config::connect_timeout_secs`].
pub const fn default_connect_timeout_secs() -> u64 {
    15
}

/// Default [`Config::reconcile_every`]: one hour.
///
/// A pass reads only the primary-key index: a million rows took about 2 s end to end on a
/// 2-core machine, 0.4 s of it the listing (see `bench/src/bin/reconcile.rs`). Hourly
/// therefore costs well under 1% of the time of a sync that runs every minute, and a hard
/// delete reaches the warehouse within an hour, which a dashboard of open balances and
/// client counts can live with. Daily would save little and leave deleted invoices and
/// clients counted for a day.
pub fn default_reconcile_every() -> ReconcileEvery {
    ReconcileEvery::Every(chrono::Duration::hours(1))
}

/// Longest column name accepted in `soft_delete` (MySQL's identifier limit).
const MAX_IDENTIFIER: usize = 64;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("page_size", &self.page_size)
            .field("parallel_pages", &self.parallel_pages)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("sample_data", &self.sample_data)
            .field("reconcile_every", &self.reconcile_every)
            .field("soft_delete", &self.soft_delete)
            .finish()
    }
}

impl Config {
    /// Deserializes and validates the manifest's config table.
    pub fn parse(value: Value) -> Result<Config> {
        let config: Config =
            serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges and the URL scheme, without I/O.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.url.trim().is_empty() {
            problems.push("url must not be empty".to_string());
        }
        if !(1..=256).contains(&self.pool_size) {
            problems.push(format!("pool_size must be 1..=256, got {}", self.pool_size));
        }
        if !(1..=1_000_000).contains(&self.page_size) {
            problems.push(format!(
                "page_size must be 1..=1000000, got {}",
                self.page_size
            ));
        }
        if !(1..=8).contains(&self.parallel_pages) {
            problems.push(format!(
                "parallel_pages must be 1..=8, got {}",
                self.parallel_pages
            ));
        }
        if !(1..=3600).contains(&self.connect_timeout_secs) {
            problems.push(format!(
                "connect_timeout_secs must be 1..=3600, got {}",
                self.connect_timeout_secs
            ));
        }
        if let Some(spec) = &self.sample_data {
            if let Err(e) = spec.validate() {
                problems.push(format!("sample_data: {e}"));
            }
        }
        for (stream, column) in &self.soft_delete {
            if let Some(problem) = soft_delete_problem(stream, column) {
                problems.push(format!("soft_delete.{stream}: {problem}"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(problems.join("; ")));
        }
        Dialect::from_url(&self.url).map(|_| ())
    }

    /// The dialect `url` selects.
    pub fn dialect(&self) -> Result<Dialect> {
        Dialect::from_url(&self.url)
    }

    /// The soft-delete column of `stream`, if one is configured.
    pub fn soft_delete_column(&self, stream: &str) -> Option<&str> {
        self.soft_delete.get(stream).map(String::as_str)
    }

    /// JSON Schema of the config, for `tributary spec`, derived from [`Config`].
    pub fn spec() -> Value {
        tributary_sdk::config_spec::<Config>()
    }
}

/// Why `column` cannot be the soft-delete column of `stream`, if it cannot.
///
/// The name is spliced into SQL (quoted), so it must be a plain identifier. A column the
/// stream declares must be able to say "live": nullable, or a boolean; the key, the cursor
/// or any other NOT NULL column would make every row look deleted.
fn soft_delete_problem(stream: &str, column: &str) -> Option<String> {
    let Some(def) = streams::find(stream) else {
        return Some(format!(
            "unknown stream; internal-db has {}",
            streams::ALL.map(|s| s.name).join(", ")
        ));
    };
    let plain = column
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && column.len() <= MAX_IDENTIFIER;
    if !plain {
        return Some(format!(
            "{column:?} is not a column name (letters, digits and `_`, at most {MAX_IDENTIFIER})"
        ));
    }
    match def.columns.iter().find(|c| c.name.eq_ignore_ascii_case(column)) {
        Some(c) if !c.nullable && c.kind != Kind::Bool => Some(format!(
            "{column} is never NULL, so every row would count as deleted; name a nullable timestamp or a boolean column"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spec's required keys, defaults and unknown-key rule are serde's, the nested
    /// `sample_data` table's too.
    #[test]
    fn spec_agrees_with_serde() {
        assert_eq!(
            tributary_sdk::spec_drift::<Config>(&json!({"url": "sqlite:x.db"})),
            Ok(())
        );
        assert_eq!(tributary_sdk::spec_drift::<SampleSpec>(&json!({})), Ok(()));
        let spec = Config::spec();
        let props = &spec["properties"];
        assert_eq!(props["reconcile_every"]["default"], "1h");
        assert_eq!(props["sample_data"]["type"], "object");
        assert_eq!(props["sample_data"]["properties"]["clients"]["minimum"], 1);
        assert_eq!(
            props["soft_delete"]["propertyNames"]["enum"][0],
            streams::ALL[0].name
        );
        assert_eq!(
            props["soft_delete"]["additionalProperties"]["maxLength"],
            MAX_IDENTIFIER
        );
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c = Config::parse(json!({"url": "sqlite:x.db"})).expect("valid");
        assert_eq!((c.pool_size, c.page_size), (4, 10_000));
        assert!(c.sample_data.is_none());
        let e = Config::parse(json!({"url": "sqlite:x.db", "pool": 3})).expect_err("unknown key");
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = Config::parse(json!({"url": "sqlite:x.db", "page_size": 0})).expect_err("range");
        assert!(e.to_string().contains("page_size"), "{e}");
    }

    #[test]
    fn reconcile_every_and_soft_delete() {
        let c = Config::parse(json!({"url": "sqlite:x.db"})).expect("valid");
        assert_eq!(c.reconcile_every.to_string(), "1h");
        assert!(c.soft_delete.is_empty());
        let c = Config::parse(json!({
            "url": "sqlite:x.db",
            "reconcile_every": "always",
            "soft_delete": {"service_history": "deleted_at", "contracts": "is_deleted", "contracts_x": "a"}
        }));
        let e = c.expect_err("unknown stream");
        assert!(
            e.to_string()
                .contains("soft_delete.contracts_x: unknown stream"),
            "{e}"
        );
        let c = Config::parse(json!({
            "url": "sqlite:x.db",
            "reconcile_every": "never",
            "soft_delete": {"service_history": "deleted_at", "contracts": "auto_renew"}
        }))
        .expect("valid");
        assert_eq!(c.reconcile_every, ReconcileEvery::Never);
        assert_eq!(c.soft_delete_column("service_history"), Some("deleted_at"));
        assert_eq!(c.soft_delete_column("client_profiles"), None);
        for bad in ["updated_at", "id", "x; DROP TABLE contracts", "", "9lives"] {
            let e = Config::parse(json!({"url": "sqlite:x.db", "soft_delete": {"contracts": bad}}))
                .expect_err(bad);
            assert!(
                e.to_string().contains("soft_delete.contracts"),
                "{bad}: {e}"
            );
        }
        let e = Config::parse(json!({"url": "sqlite:x.db", "reconcile_every": "weekly"}))
            .expect_err("bad interval");
        assert!(e.to_string().contains("weekly"), "{e}");
    }

    #[test]
    fn debug_redacts_password() {
        let c = Config::parse(json!({"url": "postgres://u:topsecret@h/db"})).expect("valid");
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
