use super::common::TestDb;
use super::{deletions, migrations, scenarios};

macro_rules! mysql_tests {
    ($module:ident: $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(db) = TestDb::mysql() else { return };
            $module::$name(&db.url);
        }
    )*};
}

mysql_tests!(
    scenarios:
    check,
    incremental,
    equal_timestamp_paging,
    window_bounds,
    limit,
    client_filter,
    same_data_as_sqlite,
);

mysql_tests!(
    deletions:
    reconciliation_lists_every_live_id,
    reconcile_interval_is_kept_in_state,
    soft_deletes_are_deletion_records,
    narrowed_and_limited_reads,
);

mysql_tests!(migrations: migrate_is_idempotent);
