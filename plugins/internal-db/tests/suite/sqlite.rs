use std::collections::BTreeMap;

use serde_json::json;
use tributary_internal_db::sample::{self, SampleSpec};
use tributary_internal_db::InternalDb;
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::ErrorKind;

use super::common::*;
use super::{deletions, migrations, scenarios};

macro_rules! sqlite_tests {
    ($module:ident: $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let db = TestDb::sqlite();
            $module::$name(&db.url);
        }
    )*};
}

sqlite_tests!(
    scenarios:
    discover,
    check,
    incremental,
    equal_timestamp_paging,
    window_bounds,
    limit,
    client_filter,
    unknown_stream_fails_alone,
);

sqlite_tests!(
    deletions:
    reconciliation_lists_every_live_id,
    reconcile_interval_is_kept_in_state,
    soft_deletes_are_deletion_records,
    narrowed_and_limited_reads,
);

sqlite_tests!(migrations: migrate_is_idempotent);

#[test]
fn full_read_matches_tables() {
    let db = TestDb::sqlite();
    scenarios::full_read_matches_tables(&db.url);
}

/// Same seed, same data; another seed, other data.
#[test]
fn generator_is_deterministic() {
    let (a, b, c) = (TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite());
    let spec = SampleSpec::with_clients(8, 42);
    block_on(sample::generate(&a.url, &spec)).unwrap();
    block_on(sample::generate(&b.url, &spec)).unwrap();
    block_on(sample::generate(
        &c.url,
        &SampleSpec {
            seed: 43,
            ..spec.clone()
        },
    ))
    .unwrap();
    let data = |url: &str| -> BTreeMap<String, Vec<String>> {
        let collected = Read::new(url).full_refresh().run();
        collected
            .records
            .into_iter()
            .map(|(s, r)| (s, r.into_iter().map(|r| r.data).collect()))
            .collect()
    };
    let (da, db_, dc) = (data(&a.url), data(&b.url), data(&c.url));
    assert_eq!(da, db_);
    assert_ne!(da, dc);
    assert_eq!(da["service_history"].len(), 8 * 40);
}

/// Many rows share one updated_at in generated data (bulk imports).
#[test]
fn generated_data_has_shared_timestamps_and_spans_the_range() {
    let db = TestDb::sqlite();
    block_on(sample::generate(&db.url, &SampleSpec::with_clients(20, 42))).unwrap();
    let c = Read::new(&db.url)
        .streams(&["service_history"])
        .full_refresh()
        .run();
    let mut per_ts: BTreeMap<String, usize> = BTreeMap::new();
    for r in records(&c, "service_history") {
        *per_ts.entry(r.cursor.unwrap()).or_default() += 1;
    }
    assert!(
        per_ts.values().any(|n| *n >= 20),
        "no bulk-import timestamps"
    );
    let first = per_ts.keys().next().unwrap();
    let last = per_ts.keys().last().unwrap();
    assert!(
        first.as_str() < "2024-02-01" && first.as_str() >= "2024-01-01",
        "{first}"
    );
    assert!(
        last.as_str() > "2026-05-01" && last.as_str() < "2026-07-01",
        "{last}"
    );
}

/// `sample_data` creates a missing file once; an existing file is left alone.
#[test]
fn sample_data_setting_creates_missing_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("msp.db");
    let url = format!("sqlite:{}", path.display());
    let mut read = Read::new(&url).full_refresh();
    read.config = json!({ "url": url, "sample_data": { "clients": 3, "seed": 42 } });
    let first = read.run();
    assert_eq!(records(&first, "client_profiles").len(), 3);
    assert_eq!(records(&first, "service_history").len(), 3 * 40);
    assert!(path.exists());
    // A change to the file survives: it is not regenerated.
    block_on(sample::touch(&url, "contracts", &[1], chrono::Utc::now())).unwrap();
    let second = read.run();
    assert_eq!(
        first.records["client_profiles"],
        second.records["client_profiles"]
    );
    assert_ne!(first.records["contracts"], second.records["contracts"]);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

/// Bad URLs are config errors and never show the password.
#[test]
fn bad_url_is_config_error_without_password() {
    for url in [
        "postgres://admin:hunter2@db.example:notaport/msp",
        "oracle://admin:hunter2@db.example/msp",
        "mysql://admin:hunter2@db.example:99999/msp",
    ] {
        let config = json!({ "url": url });
        let e = InProcess::<InternalDb>::check(&config, CollectingHandler::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config, "{url}: {e}");
        assert!(!e.message.contains("hunter2"), "{e}");
        let (result, _) = Read {
            config,
            ..Read::new(url)
        }
        .try_run();
        let e = result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config, "{url}: {e}");
        assert!(!e.message.contains("hunter2"), "{e}");
    }
    // A missing SQLite file without sample_data is a config error too.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("absent.db").display());
    let e = InProcess::<InternalDb>::check(&json!({ "url": url }), CollectingHandler::new())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
}

/// Nobody listening: a transient error (retryable), password still hidden.
#[test]
fn refused_connection_is_transient() {
    let config =
        json!({ "url": "postgres://admin:hunter2@127.0.0.1:1/msp", "connect_timeout_secs": 1 });
    let e = InProcess::<InternalDb>::check(&config, CollectingHandler::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(!e.message.contains("hunter2"), "{e}");
}

/// A database without the tables fails `check` with a config error naming them.
#[test]
fn check_reports_missing_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap(); // an empty file is an empty SQLite database
    let url = format!("sqlite:{}", path.display());
    let e = InProcess::<InternalDb>::check(&json!({ "url": url }), CollectingHandler::new())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.message.contains("service_history"), "{e}");
}
