use std::io::Write;

use tributary_sdk::host::RecordBatch;
use tributary_sdk::Record;

use super::*;

fn batch(ids: &[u32], version: &str) -> RecordBatch {
    RecordBatch::from_records(
        ids.iter()
            .map(|i| {
                Record::from_json(i.to_string(), format!("{{\"id\":{i},\"v\":\"{version}\"}}"))
                    .with_cursor(format!("c{i}"))
            })
            .collect(),
    )
}

#[test]
fn sqlite_upserts_and_commits_state_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut d = SqliteDestination::open(&path).unwrap();
    d.write("src", "s", &batch(&[1, 2, 3], "a"), "t0").unwrap();
    d.stage_state("src", "s", "{\"n\":3}").unwrap();
    d.commit().unwrap();
    d.write("src", "s", &batch(&[3, 4], "b"), "t1").unwrap();
    d.stage_state("src", "s", "{\"n\":4}").unwrap();
    // Not committed: a crash here must lose both the records and the state.
    d.rollback();
    let state = d.load_state().unwrap();
    assert_eq!(state["src"]["s"], serde_json::json!({"n": 3}));
    d.write("src", "s", &batch(&[3, 4], "b"), "t1").unwrap();
    d.commit().unwrap();
    drop(d);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM src_s", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4, "upsert keeps one row per primary key");
    let v: String = conn
        .query_row(
            "SELECT json_extract(data, '$.v') FROM src_s WHERE _pk = '3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, "b", "the newest version wins");
}

#[test]
fn sqlite_reset_state_by_source_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = SqliteDestination::open(&dir.path().join("w.db")).unwrap();
    for (src, stream) in [("a", "x"), ("a", "y"), ("b", "x")] {
        d.stage_state(src, stream, "1").unwrap();
    }
    d.commit().unwrap();
    assert_eq!(d.reset_state(Some("a"), Some("x")).unwrap(), 1);
    assert_eq!(d.reset_state(Some("a"), None).unwrap(), 1);
    let state = d.load_state().unwrap();
    assert!(!state.contains_key("a"));
    assert!(state["b"].contains_key("x"));
}

#[test]
fn jsonl_truncates_uncommitted_tail_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut d = JsonlDestination::open(dir.path()).unwrap();
        d.write("src", "s", &batch(&[1, 2], "a"), "t0").unwrap();
        d.stage_state("src", "s", "{\"n\":2}").unwrap();
        d.commit().unwrap();
        // Written and flushed, but never committed: a crash right here.
        d.write("src", "s", &batch(&[3], "a"), "t1").unwrap();
        for f in d.files.values_mut() {
            f.writer.flush().unwrap();
        }
    }
    let file = dir.path().join("src_s.jsonl");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);
    let d = JsonlDestination::open(dir.path()).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let pks: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_pk"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(pks, ["1", "2"]);
    assert_eq!(
        d.load_state().unwrap()["src"]["s"],
        serde_json::json!({"n": 2})
    );
}

#[test]
fn jsonl_lines_carry_metadata_and_raw_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = JsonlDestination::open(dir.path()).unwrap();
    let b = RecordBatch::from_records(vec![
        Record::from_json("k\"1", "{\"x\":1}".to_string()).with_deleted(true)
    ]);
    d.write("src", "s", &b, "2026-01-01T00:00:00Z").unwrap();
    d.commit().unwrap();
    let line = std::fs::read_to_string(dir.path().join("src_s.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["_pk"], "k\"1");
    assert_eq!(v["_deleted"], true);
    assert_eq!(v["_cursor"], serde_json::Value::Null);
    assert_eq!(v["data"]["x"], 1);
}
