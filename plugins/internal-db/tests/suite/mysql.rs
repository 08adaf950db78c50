use super::common::TestDb;
use super::scenarios;

macro_rules! mysql_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(db) = TestDb::mysql() else { return };
            scenarios::$name(&db.url);
        }
    )*};
}

mysql_tests!(
    check,
    incremental,
    equal_timestamp_paging,
    window_bounds,
    limit,
    client_filter,
    same_data_as_sqlite,
);

#[test]
fn migrate_is_idempotent() {
    let Some(db) = TestDb::mysql() else { return };
    super::common::block_on(async {
        tributary_internal_db::migrate(&db.url).await.unwrap();
        tributary_internal_db::migrate(&db.url).await.unwrap();
    });
}
