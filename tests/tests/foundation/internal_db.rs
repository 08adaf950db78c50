use std::collections::BTreeSet;

use crate::common::{count, Scratch};

const STREAMS: [&str; 5] = [
    "client_profiles",
    "service_history",
    "satisfaction_scores",
    "communication_engagement",
    "contracts",
];

/// A manifest with one internal-db source on a sample SQLite database of `clients` clients.
fn setup(clients: u32, extra: &str) -> Scratch {
    let s = Scratch::new();
    let body = format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\n{extra}\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 500\nsample_data = {{ clients = {clients}, seed = 7 }}\n",
        s.header(),
        s.path("internal.db").display()
    );
    s.manifest(&body);
    // `check` creates the sample database, so tests can inspect the source first.
    let check = s.run(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    s
}

fn source(s: &Scratch) -> rusqlite::Connection {
    rusqlite::Connection::open(s.path("internal.db")).expect("source db")
}

/// Primary keys in a warehouse table (none if no record ever created it).
fn pks(conn: &rusqlite::Connection, table: &str) -> BTreeSet<String> {
    let Ok(mut stmt) = conn.prepare(&format!("SELECT _pk FROM {table}")) else {
        return BTreeSet::new();
    };
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn source_ids(conn: &rusqlite::Connection, sql: &str) -> BTreeSet<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap().to_string())
        .collect()
}

#[test]
fn full_then_incremental_then_modified_rows_only() {
    let s = setup(20, "");
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    let src = source(&s);
    let wh = s.warehouse();
    for stream in STREAMS {
        let n = count(&src, stream);
        assert!(n > 0, "sample data has {stream}");
        assert_eq!(
            report.records(&format!("internal.{stream}")),
            n as u64,
            "{stream} emitted once each"
        );
        assert_eq!(
            count(&wh, &format!("internal__{stream}")),
            n,
            "{stream} landed"
        );
        assert_eq!(
            pks(&wh, &format!("internal__{stream}")),
            source_ids(&src, &format!("SELECT id FROM {stream}")),
            "{stream}: same keys"
        );
    }

    // Nothing changed: nothing moves.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.total(),
        0,
        "rerun without changes reads nothing: {report:?}"
    );

    // Modify five rows: exactly those move, with their new content.
    src.execute_batch(
        "UPDATE service_history SET resolution = 'rewritten by test', updated_at = '2026-11-01T00:00:00.000000Z'
         WHERE id IN (SELECT id FROM service_history ORDER BY id LIMIT 5)",
    )
    .unwrap();
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 5, "{report:?}");
    assert_eq!(report.total(), 5);
    let rewritten: i64 = wh
        .query_row(
            "SELECT count(*) FROM internal__service_history WHERE json_extract(data, '$.resolution') = 'rewritten by test'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rewritten, 5);
    assert_eq!(
        count(&wh, "internal__service_history"),
        count(&src, "service_history")
    );

    // Full refresh reads everything again; upserts keep one row per key.
    let (run, report) = s.sync(&["--full-refresh"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for stream in STREAMS {
        let n = count(&src, stream);
        assert_eq!(report.records(&format!("internal.{stream}")), n as u64);
        assert_eq!(count(&wh, &format!("internal__{stream}")), n);
    }
}

#[test]
fn limit_is_per_stream_and_the_next_run_continues() {
    let s = setup(10, "");
    let src = source(&s);
    let total = count(&src, "service_history");
    assert!(total > 40, "enough rows for the test");
    let (run, report) = s.sync(&["--stream", "service_history", "--limit", "17"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("internal.service_history"), 17);
    assert_eq!(
        report.streams.len(),
        1,
        "--stream selects one stream: {report:?}"
    );
    let wh = s.warehouse();
    assert_eq!(count(&wh, "internal__service_history"), 17);

    // Runs with the limit continue where the last stopped, without duplicates.
    let mut seen = 17;
    while seen < total {
        let (run, report) = s.sync(&["--stream", "internal.service_history", "--limit", "17"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let n = report.records("internal.service_history") as i64;
        assert!(n > 0, "progress");
        seen += n;
    }
    assert_eq!(
        seen, total,
        "every row emitted exactly once across limited runs"
    );
    assert_eq!(count(&wh, "internal__service_history"), total);
}

#[test]
fn since_until_window_and_client_filter() {
    let s = setup(12, "");
    let src = source(&s);
    let (run, report) = s.sync(&["--since", "2025-01-01", "--until", "2025-07-01"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for stream in STREAMS {
        let expected = source_ids(
            &src,
            &format!("SELECT id FROM {stream} WHERE updated_at >= '2025-01-01' AND updated_at < '2025-07-01'"),
        );
        assert_eq!(
            report.records(&format!("internal.{stream}")),
            expected.len() as u64,
            "{stream}"
        );
        assert_eq!(
            pks(&s.warehouse(), &format!("internal__{stream}")),
            expected,
            "{stream}"
        );
    }

    let t = setup(12, "");
    let src = source(&t);
    let client: i64 = src
        .query_row("SELECT client_id FROM service_history GROUP BY client_id ORDER BY count(*) DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let client = client.to_string();
    let (run, _) = t.sync(&["--client", &client, "--full-refresh"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for stream in STREAMS {
        let column = if stream == "client_profiles" {
            "id"
        } else {
            "client_id"
        };
        let expected = source_ids(
            &src,
            &format!("SELECT id FROM {stream} WHERE {column} = {client}"),
        );
        assert!(!expected.is_empty() || stream != "service_history");
        assert_eq!(
            pks(&t.warehouse(), &format!("internal__{stream}")),
            expected,
            "{stream} for client {client}"
        );
    }
}

#[test]
fn jsonl_destination_appends_each_record_once() {
    let s = Scratch::new();
    let body = format!(
        "[host]\nplugin_dir = \"{}\"\n[destination]\nkind = \"jsonl\"\npath = \"{}\"\n[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 8, seed = 3 }}\n",
        crate::common::target_dir().display(),
        s.path("out").display(),
        s.path("internal.db").display()
    );
    s.manifest(&body);
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let src = source(&s);
    for stream in STREAMS {
        let text =
            std::fs::read_to_string(s.path(&format!("out/internal__{stream}.jsonl"))).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as i64, count(&src, stream), "{stream}");
        assert_eq!(
            report.records(&format!("internal.{stream}")),
            lines.len() as u64
        );
        let first = &lines[0];
        for key in [
            "_source",
            "_stream",
            "_pk",
            "_cursor",
            "_extracted_at",
            "_deleted",
            "data",
        ] {
            assert!(first.get(key).is_some(), "{stream} line has {key}");
        }
        assert_eq!(
            first["_pk"].as_str(),
            first["data"]["id"]
                .as_i64()
                .map(|i| i.to_string())
                .as_deref()
        );
    }
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.total(), 0);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/_state.json")).unwrap()).unwrap();
    assert!(
        state["state"]["internal"]["service_history"].is_object(),
        "{state}"
    );
}

#[test]
fn state_show_and_reset() {
    let s = setup(5, "");
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let show = s.run(&["state", "show", "internal.contracts"]);
    assert_eq!(show.code, 0, "{}", show.all());
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(shown["internal"]["contracts"].is_object(), "{shown}");
    assert!(shown["internal"].get("service_history").is_none());

    let reset = s.run(&["state", "reset", "internal.contracts"]);
    assert_eq!(reset.code, 0, "{}", reset.all());
    let (_, report) = s.sync(&[]);
    assert_eq!(
        report.records("internal.contracts") as i64,
        count(&source(&s), "contracts")
    );
    assert_eq!(report.records("internal.service_history"), 0);
}
