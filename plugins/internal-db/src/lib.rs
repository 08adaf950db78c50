//! Tributary connector for an MSP's own SQL database: SQLite, PostgreSQL or MySQL/MariaDB,
//! chosen by the URL scheme.
//!
//! # Overview
//!
//! - [`InternalDb`] is the [`Connector`]; the cdylib exports it as plugin `internal-db`.
//! - [`Config`] is the manifest's `config` table (`url`, `pool_size`, `page_size`,
//!   `parallel_pages`, `connect_timeout_secs`, `reconcile_every`, `soft_delete`,
//!   `sample_data`).
//! - Five streams (`client_profiles`, `service_history`, `satisfaction_scores`,
//!   `communication_engagement`, `contracts`), each keyed by `id` with an `updated_at`
//!   cursor, are read by keyset pagination on `(updated_at, id)`; the database builds each
//!   record's JSON, so rows pass through without a parse/serialize round trip.
//! - Deletions: a soft-deleted row (its configured column set) is emitted as a deletion
//!   record; hard-deleted rows are found by a periodic listing of every live `id`, sent
//!   to the host as a snapshot of keys (see `reconcile.rs`).
//! - [`migrate`] applies the embedded schema; [`sample`] generates deterministic sample
//!   data at any scale and can touch, soft-delete and delete rows to simulate edits.
//!
//! # Example
//!
//! (Not compiled as a doctest: rustdoc can link a doctest against a second build of
//! `tributary-sdk` with other features, and then `InternalDb: Connector` no longer holds;
//! `tests/suite/` runs exactly this.)
//!
//! ```ignore
//! use std::sync::Arc;
//! use serde_json::json;
//! use tributary_internal_db::{sample, InternalDb};
//! use tributary_sdk::host::{CollectingHandler, InProcess};
//! use tributary_sdk::{ConfiguredCatalog, ConfiguredStream, ReadRequest, SyncMode};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite:{}", dir.path().join("msp.db").display());
//! tokio::runtime::Runtime::new().unwrap()
//!     .block_on(sample::generate(&url, &sample::SampleSpec::with_clients(5, 42)))
//!     .unwrap();
//!
//! let handler = CollectingHandler::new();
//! let request = ReadRequest {
//!     config: json!({ "url": url }),
//!     catalog: ConfiguredCatalog { streams: vec![ConfiguredStream {
//!         name: "client_profiles".into(), sync_mode: SyncMode::Incremental }] },
//!     state: Default::default(),
//!     window: Default::default(),
//! };
//! InProcess::<InternalDb>::read(&request, handler.clone()).unwrap();
//! assert_eq!(handler.collected().records["client_profiles"].len(), 5);
//! ```
#![deny(missing_docs)]

mod client;
mod config;
mod dialect;
mod error;
mod migrate;
mod read;
mod reconcile;
pub mod sample;
pub mod streams;
pub mod timestamp;

use serde_json::Value;
use tributary_sdk::{Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ReadRequest};

pub use config::Config;
pub use dialect::Dialect;
pub use error::{redact_url, Error, Result};
pub use migrate::migrate;
pub use read::Checkpoint;

/// The internal-database connector.
#[derive(Debug, Default)]
pub struct InternalDb;

impl Connector for InternalDb {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new(
            "internal-db",
            env!("CARGO_PKG_VERSION"),
            "MSP's own SQL database (SQLite, PostgreSQL, MySQL/MariaDB): client profiles, service history, satisfaction, engagement, contracts",
        )
    }

    fn spec(&self) -> Value {
        Config::spec()
    }

    async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::parse(config)?;
        let db = read::open(&config).await?;
        let result = client_check(&db, &config).await;
        db.close().await;
        result.map_err(Into::into)
    }

    async fn discover(&self, config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        // The schema is the crate's own, so the catalog needs no connection.
        Config::parse(config)?;
        Ok(streams::declared().catalog())
    }

    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        read::read(request, out).await
    }
}

/// Every stream table must exist with its key columns (and its soft-delete column, when
/// one is configured).
async fn client_check(db: &client::Db, config: &Config) -> Result<()> {
    let mut missing = Vec::new();
    for s in streams::ALL {
        let soft = config.soft_delete_column(s.name);
        let probe = dialect::Statement {
            sql: format!(
                "SELECT id, updated_at{} FROM {} s WHERE 1 = 0",
                soft.map(|c| format!(", {}", db.dialect().soft_deleted_expr(c)))
                    .unwrap_or_default(),
                s.name
            ),
            params: Vec::new(),
        };
        match db.execute(&probe, "probing tables").await {
            Ok(_) => {}
            Err(e) if e.class() == tributary_sdk::ErrorKind::Config => missing.push(match soft {
                Some(c) => format!("{} (with soft-delete column {c})", s.name),
                None => s.name.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{} has no usable table {} (each needs id and updated_at, plus the soft_delete column configured for it); apply the schema with tributary_internal_db::migrate or the SQL in plugins/internal-db/migrations",
            db.redacted_url(),
            missing.join(", ")
        )))
    }
}

tributary_sdk::export_connector!(InternalDb);
