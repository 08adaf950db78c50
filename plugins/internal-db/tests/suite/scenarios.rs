use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use tributary_internal_db::sample::{self, SampleSpec};
use tributary_internal_db::InternalDb;
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::{ErrorKind, StreamStatus, SyncMode, Window};

use super::common::*;

pub fn spec() -> SampleSpec {
    SampleSpec::with_clients(12, 42)
}

/// Generates the standard sample into `url` and returns the table counts.
pub fn setup(url: &str) -> BTreeMap<&'static str, u64> {
    let generated = block_on(sample::generate(url, &spec())).unwrap();
    let counted = block_on(sample::count_rows(url)).unwrap();
    assert_eq!(generated, counted);
    counted
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn is_canonical(ts: &str) -> bool {
    ts.len() == 27
        && ts.ends_with('Z')
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[19] == b'.'
        && DateTime::parse_from_rfc3339(ts).is_ok()
}

pub fn discover(url: &str) {
    let catalog =
        InProcess::<InternalDb>::discover(&json!({ "url": url }), CollectingHandler::new())
            .unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STREAMS);
    for s in &catalog.streams {
        assert_eq!(s.primary_key, vec!["id".to_string()]);
        assert_eq!(s.cursor_field.as_deref(), Some("updated_at"));
        assert_eq!(
            s.sync_modes,
            vec![SyncMode::FullRefresh, SyncMode::Incremental]
        );
        assert_eq!(s.json_schema["type"], "object");
        assert_eq!(
            s.json_schema["properties"]["updated_at"]["format"],
            "date-time"
        );
    }
    let clients = &catalog.streams[0].json_schema["properties"];
    assert!(clients.get("superops_account_id").is_some());
    assert!(clients.get("quickbooks_customer_id").is_some());
    let info = InProcess::<InternalDb>::info().unwrap();
    assert_eq!(info.name, "internal-db");
}

/// `check` passes on a migrated database.
pub fn check(url: &str) {
    setup(url);
    InProcess::<InternalDb>::check(&json!({ "url": url }), CollectingHandler::new()).unwrap();
}

/// A full read returns every row once, shaped as the catalog says, identical across
/// full-refresh and first incremental reads.
pub fn full_read_matches_tables(url: &str) -> BTreeMap<String, Vec<Value>> {
    let counts = setup(url);
    let collected = Read::new(url).full_refresh().run();
    let catalog =
        InProcess::<InternalDb>::discover(&json!({ "url": url }), CollectingHandler::new())
            .unwrap();
    let mut by_stream = BTreeMap::new();
    for s in &catalog.streams {
        let recs = records(&collected, &s.name);
        assert_eq!(recs.len() as u64, counts[s.name.as_str()], "{}", s.name);
        unique_pks(&collected, &s.name);
        let props = s.json_schema["properties"].as_object().unwrap();
        let mut rows = Vec::new();
        for r in &recs {
            let d = data(r);
            let obj = d.as_object().unwrap();
            let keys: BTreeSet<&String> = obj.keys().collect();
            assert_eq!(keys, props.keys().collect::<BTreeSet<_>>(), "{}", s.name);
            assert_eq!(d["id"].as_i64().unwrap().to_string(), r.pk);
            assert_eq!(Some(d["updated_at"].as_str().unwrap()), r.cursor.as_deref());
            assert!(is_canonical(r.cursor.as_deref().unwrap()), "{:?}", r.cursor);
            assert!(is_canonical(d["created_at"].as_str().unwrap()));
            for (k, schema) in props {
                let v = &d[k];
                let ok = match schema["type"].clone() {
                    Value::String(t) => type_ok(&t, v),
                    Value::Array(ts) => {
                        v.is_null() || ts.iter().any(|t| type_ok(t.as_str().unwrap(), v))
                    }
                    _ => false,
                };
                assert!(ok, "{}.{k} = {v} does not match {schema}", s.name);
            }
            rows.push(d);
        }
        // Key order: (updated_at, id) ascending.
        let keys: Vec<(String, i64)> = recs
            .iter()
            .map(|r| (r.cursor.clone().unwrap(), r.pk.parse().unwrap()))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "{} not in key order",
            s.name
        );
        by_stream.insert(s.name.clone(), rows);
    }
    let sh = &by_stream["service_history"][0];
    assert!(sh["hours_worked"].as_str().unwrap().contains('.'), "{sh}");
    assert!(sh["billable"].is_boolean());
    let contract = &by_stream["contracts"][0];
    assert!(
        contract["monthly_value"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .len()
            == 2
    );
    by_stream
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "integer" => v.is_i64(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Rerun with the saved state reads nothing; touched rows, and only they, come back.
pub fn incremental(url: &str) {
    setup(url);
    let first = Read::new(url).run();
    assert!(total(&first) > 0);
    for s in STREAMS {
        assert!(first.state.contains_key(s), "no state for {s}");
    }
    let second = Read::new(url).state(&first.state).run();
    assert_eq!(total(&second), 0, "rerun without changes must read nothing");
    // Nothing was read, so nothing was checkpointed: the state stays as it was.
    assert!(second.state.is_empty());

    let touched = [5i64, 77, 311];
    let n = block_on(sample::touch(
        url,
        "service_history",
        &touched,
        at(2026, 7, 1),
    ))
    .unwrap();
    assert_eq!(n, 3);
    block_on(sample::touch(url, "client_profiles", &[2], at(2026, 7, 2))).unwrap();
    let third = Read::new(url).state(&first.state).run();
    let pks = unique_pks(&third, "service_history");
    assert_eq!(pks, touched.iter().map(|i| i.to_string()).collect());
    assert_eq!(
        unique_pks(&third, "client_profiles"),
        BTreeSet::from(["2".to_string()])
    );
    assert_eq!(total(&third), 4);
    // The position of the last row; the time of the first run's reconciliation is
    // carried forward (no pass is due within the hour).
    assert_eq!(
        third.state["service_history"],
        json!({
            "updated_at": "2026-07-01T00:00:00.000000Z",
            "id": 311,
            "reconciled_at": first.state["service_history"]["reconciled_at"],
        })
    );

    // Full refresh ignores the state.
    let mut state = first.state.clone();
    state.extend(third.state.clone());
    let full = Read::new(url)
        .streams(&["contracts"])
        .state(&state)
        .full_refresh()
        .run();
    assert_eq!(
        records(&full, "contracts").len() as u64,
        spec().row_counts()["contracts"]
    );
}

/// Many rows on one timestamp, paged 3 at a time and split over several runs by a limit:
/// every row arrives exactly once, whether pages are fetched in parallel key ranges
/// (parallel_pages > 1) or one after another (parallel_pages 1).
pub fn equal_timestamp_paging(url: &str) {
    let counts = setup(url);
    let stream = "satisfaction_scores";
    let total_rows = counts[stream];
    // 40 rows share one updated_at, later than everything else; ids are not contiguous.
    let ids: Vec<i64> = (1..=80).filter(|i| i % 2 == 0).collect();
    block_on(sample::touch(url, stream, &ids, at(2026, 8, 1))).unwrap();

    for parallel in [1, 3] {
        let all = Read::new(url)
            .streams(&[stream])
            .page_size(3)
            .parallel_pages(parallel)
            .full_refresh()
            .run();
        let pks = unique_pks(&all, stream);
        assert_eq!(pks.len() as u64, total_rows);
        let keys: Vec<(String, i64)> = records(&all, stream)
            .iter()
            .map(|r| (r.cursor.clone().unwrap(), r.pk.parse().unwrap()))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "parallel_pages {parallel}: out of order"
        );
        // One checkpoint per page, and one after the full refresh's listing completed.
        assert_eq!(all.checkpoints.len() as u64, total_rows.div_ceil(3) + 1);
        let last = keys.last().unwrap();
        assert_eq!(all.state[stream]["updated_at"], json!(last.0));
        assert_eq!(all.state[stream]["id"], json!(last.1));

        // Now in runs of at most 7 records, resuming from the state each time.
        let mut state = BTreeMap::new();
        let mut seen = Vec::new();
        for run in 0.. {
            assert!(run < 100, "does not terminate");
            let w = Window {
                limit: Some(7),
                ..Window::default()
            };
            let c = Read::new(url)
                .streams(&[stream])
                .page_size(3)
                .parallel_pages(parallel)
                .state(&state)
                .window(w)
                .run();
            let recs = records(&c, stream);
            assert!(recs.len() <= 7);
            if recs.is_empty() {
                break;
            }
            seen.extend(recs.into_iter().map(|r| r.pk));
            state.extend(c.state);
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "parallel_pages {parallel}: a row was read twice"
        );
        assert_eq!(unique, pks, "parallel_pages {parallel}: a row was lost");
    }
}

/// start (inclusive) and end (exclusive) select exactly the rows in between.
pub fn window_bounds(url: &str) {
    setup(url);
    let all = Read::new(url).full_refresh().run();
    let (start, end) = (at(2024, 9, 1), at(2025, 3, 1));
    let w = Window {
        start: Some(start),
        end: Some(end),
        ..Window::default()
    };
    let windowed = Read::new(url).window(w).run();
    let (lo, hi) = ("2024-09-01T00:00:00.000000Z", "2025-03-01T00:00:00.000000Z");
    for s in STREAMS {
        let expected: BTreeSet<String> = records(&all, s)
            .into_iter()
            .filter(|r| {
                let c = r.cursor.as_deref().unwrap();
                c >= lo && c < hi
            })
            .map(|r| r.pk)
            .collect();
        assert_eq!(unique_pks(&windowed, s), expected, "{s}");
    }
    assert!(!unique_pks(&windowed, "service_history").is_empty());
    assert!(
        unique_pks(&windowed, "service_history").len() < records(&all, "service_history").len()
    );
}

/// The limit applies per stream; the state is the last record emitted.
pub fn limit(url: &str) {
    setup(url);
    let w = Window {
        limit: Some(7),
        ..Window::default()
    };
    let c = Read::new(url).page_size(5).window(w).run();
    for s in STREAMS {
        let recs = records(&c, s);
        assert_eq!(recs.len(), 7, "{s}");
        let last = recs.last().unwrap();
        assert_eq!(c.state[s]["id"].as_i64().unwrap().to_string(), last.pk);
        assert_eq!(c.state[s]["updated_at"].as_str(), last.cursor.as_deref());
    }
}

/// Only the chosen clients' rows are read.
pub fn client_filter(url: &str) {
    setup(url);
    let all = Read::new(url).full_refresh().run();
    let w = Window {
        clients: vec!["3".into(), "5".into()],
        ..Window::default()
    };
    let filtered = Read::new(url).window(w).run();
    for s in STREAMS {
        let column = if s == "client_profiles" {
            "id"
        } else {
            "client_id"
        };
        let expected: BTreeSet<String> = records(&all, s)
            .iter()
            .filter(|r| matches!(data(r)[column].as_i64(), Some(3 | 5)))
            .map(|r| r.pk.clone())
            .collect();
        assert!(!expected.is_empty(), "{s}");
        assert_eq!(unique_pks(&filtered, s), expected, "{s}");
    }
    let w = Window {
        clients: vec!["SO-123".into()],
        ..Window::default()
    };
    let (result, _) = Read::new(url).window(w).try_run();
    assert_eq!(result.unwrap_err().kind, ErrorKind::Config);
}

/// An unknown stream fails alone; the others complete.
pub fn unknown_stream_fails_alone(url: &str) {
    setup(url);
    let (result, c) = Read::new(url)
        .streams(&["no_such_stream", "contracts"])
        .try_run();
    let e = result.unwrap_err();
    assert!(
        e.message
            .starts_with("stream no_such_stream: unknown stream"),
        "{e}"
    );
    assert!(matches!(
        c.status.get("no_such_stream"),
        Some(StreamStatus::Incomplete { error }) if error.kind == ErrorKind::Config
    ));
    assert_eq!(c.status.get("contracts"), Some(&StreamStatus::Complete));
}

/// The same spec gives the same records on this database as on SQLite.
pub fn same_data_as_sqlite(url: &str) {
    let here = full_read_matches_tables(url);
    let sqlite = TestDb::sqlite();
    let there = full_read_matches_tables(&sqlite.url);
    for s in STREAMS {
        assert_eq!(here[s].len(), there[s].len(), "{s}");
        for (a, b) in here[s].iter().zip(&there[s]) {
            assert_eq!(a, b, "{s}");
        }
    }
}
