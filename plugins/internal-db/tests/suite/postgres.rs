use super::common::TestDb;
use super::{deletions, migrations, scenarios};

macro_rules! pg_tests {
    ($module:ident: $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(db) = TestDb::postgres() else { return };
            $module::$name(&db.url);
        }
    )*};
}

pg_tests!(
    scenarios:
    check,
    incremental,
    equal_timestamp_paging,
    window_bounds,
    limit,
    client_filter,
    same_data_as_sqlite,
);

pg_tests!(
    deletions:
    reconciliation_lists_every_live_id,
    reconcile_interval_is_kept_in_state,
    soft_deletes_are_deletion_records,
    narrowed_and_limited_reads,
);

pg_tests!(migrations: migrate_is_idempotent);
