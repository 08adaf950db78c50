//! The embedded migrations, on every dialect.

use serde_json::json;
use tributary_internal_db::sample;

use super::common::*;
use super::scenarios::setup;

/// Which dialect a test URL is.
fn dialect(url: &str) -> &'static str {
    match url.split(':').next() {
        Some("sqlite") => "sqlite",
        Some("postgres" | "postgresql") => "postgres",
        _ => "mysql",
    }
}

/// Every table, column and index of the database, one line each.
async fn schema(url: &str) -> Vec<String> {
    let queries: &[&str] = match dialect(url) {
        "sqlite" => &["SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema \
                       WHERE name NOT LIKE 'sqlite_%' ORDER BY name"],
        "postgres" => &[
            "SELECT table_name::text || '.' || column_name::text || ' ' || data_type::text || ' ' \
             || is_nullable::text || ' ' || coalesce(column_default::text, '') \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             ORDER BY table_name, ordinal_position",
            "SELECT indexdef::text FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname",
        ],
        _ => &[
            "SELECT CAST(CONCAT(table_name, '.', column_name, ' ', column_type, ' ', is_nullable, ' ', \
             coalesce(column_default, '')) AS CHAR(1024)) FROM information_schema.columns \
             WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position",
            "SELECT CAST(CONCAT(table_name, '.', index_name, ' ', column_name, ' ', seq_in_index) AS CHAR(1024)) \
             FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1",
        ],
    };
    let mut out = Vec::new();
    for q in queries {
        out.extend(strings_or_ids::<String>(url, q).await);
    }
    out
}

/// `version|success|installed_on` of every applied migration, by version.
async fn applied(url: &str) -> Vec<String> {
    let sql = match dialect(url) {
        "sqlite" => "SELECT version || '|' || success || '|' || installed_on FROM _sqlx_migrations ORDER BY version",
        "postgres" => "SELECT version::text || '|' || success::text || '|' || installed_on::text FROM _sqlx_migrations ORDER BY version",
        _ => "SELECT CAST(CONCAT(version, '|', success, '|', installed_on) AS CHAR(1024)) FROM _sqlx_migrations ORDER BY version",
    };
    strings_or_ids::<String>(url, sql).await
}

/// The versions of the migration files shipped for the dialect.
fn shipped(url: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect(url));
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| n.split('_').next().unwrap().to_string())
        .collect();
    versions.sort();
    versions
}

/// Migrating a database that is already up to date changes nothing: the same schema,
/// the same rows (soft deletes included), each shipped migration recorded exactly once
/// and not re-applied.
pub fn migrate_is_idempotent(url: &str) {
    setup(url); // migrates, then fills
    block_on(sample::soft_delete(
        url,
        "contracts",
        &[1, 2],
        chrono::Utc::now(),
    ))
    .unwrap();
    let read = Read::new(url).full_refresh().set(
        "soft_delete",
        json!({"service_history": "deleted_at", "contracts": "is_deleted"}),
    );
    let rows_before = read.run().records;
    let schema_before = block_on(schema(url));
    let applied_before = block_on(applied(url));
    assert!(
        schema_before.iter().any(|l| l.contains("deleted_at")),
        "the soft-delete migration ran: {schema_before:?}"
    );
    let versions: Vec<String> = applied_before
        .iter()
        .map(|l| l.split('|').next().unwrap().to_string())
        .collect();
    assert_eq!(
        versions,
        shipped(url),
        "each shipped migration recorded once"
    );
    assert!(
        applied_before.iter().all(|l| {
            let success = l.split('|').nth(1).unwrap();
            success == "1" || success == "true"
        }),
        "{applied_before:?}"
    );

    block_on(tributary_internal_db::migrate(url)).unwrap();
    block_on(tributary_internal_db::migrate(url)).unwrap();
    assert_eq!(block_on(applied(url)), applied_before, "nothing re-applied");
    assert_eq!(block_on(schema(url)), schema_before);
    let rows_after = read.run().records;
    assert_eq!(rows_after, rows_before);
    assert_eq!(
        rows_after["contracts"].iter().filter(|r| r.deleted).count(),
        2,
        "soft deletes survive"
    );
}
