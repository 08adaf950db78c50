//! Schema migrations, embedded in the crate: `migrations/<dialect>/*.sql`.
//!
//! sqlx records applied versions in `_sqlx_migrations`, so running them again is a no-op.
//! The first migration's DDL also uses `IF NOT EXISTS`, so it can adopt tables that
//! already exist; the second adds the sample's soft-delete columns (`ALTER TABLE`, which
//! SQLite and MySQL cannot make conditional, so it relies on that record).

use std::time::Duration;

use crate::client::{Db, PoolSettings};
use crate::error::Result;

/// Creates (or brings up to date) the five stream tables at `url`. A missing SQLite file
/// is created. Safe to call any number of times.
pub async fn migrate(url: &str) -> Result<()> {
    let db = Db::open(
        url,
        &PoolSettings {
            pool_size: 1,
            connect_timeout: Duration::from_secs(30),
            create_if_missing: true,
            bulk_load: false,
        },
    )
    .await?;
    let result = db.migrate().await;
    db.close().await;
    result
}
