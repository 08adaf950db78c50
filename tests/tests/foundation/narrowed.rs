//! A run narrowed by `--client` or `--since/--until` never moves the main sync's position
//! past rows it did not read (issue 7): the next plain run picks up every change of
//! every client, and every row lands exactly once at its newest version.

use crate::common::Scratch;

fn setup() -> Scratch {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 100\nsample_data = {{ clients = 12, seed = 11 }}\n",
        s.header(),
        s.path("internal.db").display()
    ));
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    s
}

fn source(s: &Scratch) -> rusqlite::Connection {
    rusqlite::Connection::open(s.path("internal.db")).expect("source db")
}

/// Ids of `n` service_history rows of `client`.
fn rows_of(src: &rusqlite::Connection, client: i64, n: usize) -> Vec<i64> {
    let mut stmt = src
        .prepare("SELECT id FROM service_history WHERE client_id = ?1 ORDER BY id LIMIT ?2")
        .expect("query");
    let ids: Vec<i64> = stmt
        .query_map(rusqlite::params![client, n as i64], |r| r.get(0))
        .expect("rows")
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.len(), n, "client {client} has {n} rows to change");
    ids
}

/// Rewrites rows with a new resolution and `updated_at`.
fn change(src: &rusqlite::Connection, ids: &[i64], text: &str, at: &str) {
    for id in ids {
        src.execute(
            "UPDATE service_history SET resolution = ?1, updated_at = ?2 WHERE id = ?3",
            rusqlite::params![text, at, id],
        )
        .expect("update");
    }
}

/// Every service_history row of the source, as (id, updated_at, resolution).
fn source_rows(src: &rusqlite::Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = src
        .prepare("SELECT id, updated_at, resolution FROM service_history ORDER BY id")
        .expect("query");
    stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?, r.get(2)?))
    })
    .expect("rows")
    .map(Result::unwrap)
    .collect()
}

fn warehouse_rows(s: &Scratch) -> Vec<(String, String, Option<String>)> {
    let wh = s.warehouse();
    let mut stmt = wh
        .prepare(
            "SELECT _pk, _cursor, json_extract(data, '$.resolution') FROM internal__service_history
             WHERE _deleted = 0 ORDER BY CAST(_pk AS INTEGER)",
        )
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

fn main_state(s: &Scratch) -> String {
    s.warehouse()
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'internal' AND stream = 'service_history'",
            [],
            |r| r.get(0),
        )
        .expect("main state")
}

#[test]
fn a_client_run_leaves_other_clients_changes_for_the_next_plain_run() {
    let s = setup();
    let src = source(&s);
    let one = rows_of(&src, 1, 4);
    let two = rows_of(&src, 2, 7);
    change(
        &src,
        &one,
        "client 1 changed",
        "2026-11-20T10:00:00.000000Z",
    );
    change(
        &src,
        &two,
        "client 2 changed",
        "2026-11-20T10:00:00.000000Z",
    );
    let before = main_state(&s);

    let (run, report) = s.sync(&["--client", "1", "--stream", "service_history"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 4, "{report:?}");
    assert_eq!(
        main_state(&s),
        before,
        "the client run left the main position alone"
    );

    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("internal.service_history"),
        11,
        "the plain run reads both clients' changes from the main position: {report:?}"
    );
    assert_eq!(
        warehouse_rows(&s),
        source_rows(&src),
        "warehouse equals the source"
    );

    // The narrowed scope keeps its own position: the same client run again reads nothing.
    let (run, report) = s.sync(&["--client", "1", "--stream", "service_history"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 0, "{report:?}");
    let scoped: i64 = s
        .warehouse()
        .query_row(
            "SELECT count(*) FROM _tributary_state WHERE source = 'internal' AND stream = 'service_history [clients=1]'",
            [],
            |r| r.get(0),
        )
        .expect("scoped state");
    assert_eq!(
        scoped, 1,
        "the client run's position is kept under its own key"
    );
}

#[test]
fn a_date_window_run_leaves_changes_outside_it_for_the_next_plain_run() {
    let s = setup();
    let src = source(&s);
    let inside = rows_of(&src, 3, 5);
    let outside = rows_of(&src, 4, 6);
    change(
        &src,
        &inside,
        "inside the window",
        "2026-11-20T10:00:00.000000Z",
    );
    change(
        &src,
        &outside,
        "after the window",
        "2026-11-25T10:00:00.000000Z",
    );
    let before = main_state(&s);

    let (run, report) = s.sync(&[
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-21",
        "--stream",
        "service_history",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 5, "{report:?}");
    assert_eq!(
        main_state(&s),
        before,
        "the windowed run left the main position alone"
    );

    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 11, "{report:?}");
    assert_eq!(
        warehouse_rows(&s),
        source_rows(&src),
        "warehouse equals the source"
    );
}
