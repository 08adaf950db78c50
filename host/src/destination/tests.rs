use std::io::Write;

use tributary_sdk::host::{KeyBatch, RecordBatch};
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
        .query_row("SELECT count(*) FROM src__s", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4, "upsert keeps one row per primary key");
    let v: String = conn
        .query_row(
            "SELECT json_extract(data, '$.v') FROM src__s WHERE _pk = '3'",
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
    let file = dir.path().join("src__s.jsonl");
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
    let line = std::fs::read_to_string(dir.path().join("src__s.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["_pk"], "k\"1");
    assert_eq!(v["_deleted"], true);
    assert_eq!(v["_cursor"], serde_json::Value::Null);
    assert_eq!(v["data"]["x"], 1);
}

fn keys(ids: &[u32]) -> KeyBatch {
    KeyBatch::from_keys(ids.iter().map(u32::to_string).collect())
}

/// (pk, deleted, v) of every row, ordered by pk.
fn sqlite_rows(path: &std::path::Path, table: &str) -> Vec<(String, bool, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT _pk, _deleted, json_extract(data, '$.v') FROM \"{table}\" ORDER BY CAST(_pk AS INTEGER)"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The last line per `_pk` of a JSONL file, as (pk, deleted, v), ordered by pk.
fn jsonl_view(path: &std::path::Path) -> Vec<(String, bool, String)> {
    let mut last = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let pk = v["_pk"].as_str().unwrap().to_string();
        last.insert(
            pk.parse::<u32>().unwrap(),
            (
                pk,
                v["_deleted"].as_bool().unwrap(),
                v["data"]["v"].as_str().unwrap().to_string(),
            ),
        );
    }
    last.into_values().collect()
}

/// The same sequence against any destination: rows 1..=5 land; a snapshot sees 1 and 2
/// as records and 4 as a key; 3 and 5 vanish. An abandoned snapshot concludes nothing, a
/// vanished row that comes back is live again.
fn snapshot_scenario(d: &mut dyn Destination) -> Vec<u64> {
    d.write("src", "s", &batch(&[1, 2, 3, 4, 5], "a"), "t0")
        .unwrap();
    d.commit().unwrap();
    let mut marks = Vec::new();
    // Abandoned (a limit, an error): nothing marked although 1..5 were not seen.
    d.begin_snapshot("src", "s").unwrap();
    d.snapshot_keys("src", "s", &keys(&[1])).unwrap();
    d.abandon_snapshot("src", "s");
    d.commit().unwrap();
    // Completed: 3 and 5 are gone at the source.
    d.begin_snapshot("src", "s").unwrap();
    d.write("src", "s", &batch(&[1, 2], "b"), "t1").unwrap();
    d.snapshot_keys("src", "s", &keys(&[4])).unwrap();
    marks.push(d.finish_snapshot("src", "s", "t2", None).unwrap());
    d.commit().unwrap();
    // Again: already-deleted rows are not marked twice.
    d.begin_snapshot("src", "s").unwrap();
    d.snapshot_keys("src", "s", &keys(&[1, 2, 4])).unwrap();
    marks.push(d.finish_snapshot("src", "s", "t3", None).unwrap());
    d.commit().unwrap();
    // Row 5 comes back.
    d.write("src", "s", &batch(&[5], "c"), "t4").unwrap();
    d.commit().unwrap();
    marks
}

fn expected_after_scenario() -> Vec<(String, bool, String)> {
    vec![
        ("1".into(), false, "b".into()),
        ("2".into(), false, "b".into()),
        ("3".into(), true, "a".into()),
        ("4".into(), false, "a".into()),
        ("5".into(), false, "c".into()),
    ]
}

#[test]
fn sqlite_snapshot_marks_exactly_the_unseen_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut d = SqliteDestination::open(&path).unwrap();
    assert_eq!(snapshot_scenario(&mut d), vec![2, 0]);
    drop(d);
    assert_eq!(sqlite_rows(&path, "src__s"), expected_after_scenario());
}

/// Marks rows 1 and 3 of three deleted by a snapshot that saw only 2, and checks the
/// rows handed out are the marked ones as last committed.
fn lists_the_rows_it_marks(d: &mut dyn Destination) {
    d.write("src", "s", &batch(&[1, 2, 3], "a"), "t0").unwrap();
    d.commit().unwrap();
    d.begin_snapshot("src", "s").unwrap();
    d.snapshot_keys("src", "s", &keys(&[2])).unwrap();
    let mut listed = Vec::new();
    let n = d
        .finish_snapshot("src", "s", "t1", Some(&mut |r| listed.push(r)))
        .unwrap();
    listed.sort_by(|a, b| a.pk.cmp(&b.pk));
    assert_eq!(n, 2);
    let want = |i: u32| MarkedRow {
        pk: i.to_string(),
        cursor: Some(format!("c{i}")),
        data: format!("{{\"id\":{i},\"v\":\"a\"}}"),
    };
    assert_eq!(listed, vec![want(1), want(3)]);
}

#[test]
fn sqlite_snapshot_lists_the_rows_it_marks_as_last_committed() {
    let dir = tempfile::tempdir().unwrap();
    lists_the_rows_it_marks(&mut SqliteDestination::open(&dir.path().join("w.db")).unwrap());
}

#[test]
fn jsonl_snapshot_lists_the_rows_it_marks_as_last_committed() {
    let dir = tempfile::tempdir().unwrap();
    lists_the_rows_it_marks(&mut JsonlDestination::open(dir.path()).unwrap());
}

#[test]
fn sqlite_snapshot_rolled_back_marks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut d = SqliteDestination::open(&path).unwrap();
    d.write("src", "s", &batch(&[1, 2], "a"), "t0").unwrap();
    d.commit().unwrap();
    d.begin_snapshot("src", "s").unwrap();
    assert_eq!(d.finish_snapshot("src", "s", "t1", None).unwrap(), 2);
    // The process dies before the commit.
    d.rollback();
    drop(d);
    assert!(sqlite_rows(&path, "src__s")
        .iter()
        .all(|(_, deleted, _)| !deleted));
}

#[test]
fn jsonl_snapshot_appends_one_delete_line_per_vanished_key_and_matches_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = JsonlDestination::open(dir.path()).unwrap();
    assert_eq!(snapshot_scenario(&mut d), vec![2, 0]);
    let file = dir.path().join("src__s.jsonl");
    assert_eq!(jsonl_view(&file), expected_after_scenario());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deletes: Vec<&serde_json::Value> = lines.iter().filter(|l| l["_deleted"] == true).collect();
    assert_eq!(
        deletes.len(),
        2,
        "one delete line per vanished key: {deletes:?}"
    );
    for line in deletes {
        assert_eq!(line["_extracted_at"], "t2");
        assert_eq!(
            line["_cursor"],
            format!("c{}", line["_pk"].as_str().unwrap())
        );
    }
}

/// The `.snapshot.sqlite` scratch files in `dir`.
fn scratch_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot.sqlite"))
        .collect()
}

#[test]
fn jsonl_snapshot_keys_live_on_disk_only_while_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = JsonlDestination::open(dir.path()).unwrap();
    // Into an empty file nothing can vanish: no scratch store at all.
    d.begin_snapshot("src", "s").unwrap();
    d.write("src", "s", &batch(&[1, 2, 3], "a"), "t0").unwrap();
    assert!(scratch_files(dir.path()).is_empty());
    assert_eq!(d.finish_snapshot("src", "s", "t1", None).unwrap(), 0);
    d.commit().unwrap();
    // Over existing lines, the seen keys go to a scratch store beside the file, which is
    // gone once the snapshot ends, completed or abandoned.
    d.begin_snapshot("src", "s").unwrap();
    d.snapshot_keys("src", "s", &keys(&[1])).unwrap();
    assert_eq!(scratch_files(dir.path()), [".src__s.jsonl.snapshot.sqlite"]);
    assert_eq!(d.finish_snapshot("src", "s", "t2", None).unwrap(), 2);
    assert!(scratch_files(dir.path()).is_empty());
    d.commit().unwrap();
    d.begin_snapshot("src", "s").unwrap();
    d.abandon_snapshot("src", "s");
    assert!(scratch_files(dir.path()).is_empty());
    // A crash leaves one behind: the next open removes it.
    d.begin_snapshot("src", "s").unwrap();
    std::mem::forget(d);
    assert_eq!(scratch_files(dir.path()).len(), 1);
    JsonlDestination::open(dir.path()).unwrap();
    assert!(scratch_files(dir.path()).is_empty());
}

#[test]
fn legacy_tables_and_files_are_renamed_when_they_hold_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE src_s (_pk TEXT PRIMARY KEY NOT NULL, _source TEXT NOT NULL, _stream TEXT NOT NULL,
                 _cursor TEXT, _extracted_at TEXT NOT NULL, _deleted INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO src_s VALUES ('9', 'src', 's', 'c9', 't', 0, '{\"v\":\"old\"}');",
        )
        .unwrap();
    }
    let mut d = SqliteDestination::open(&path).unwrap();
    d.write("src", "s", &batch(&[1], "a"), "t0").unwrap();
    d.commit().unwrap();
    drop(d);
    let rows = sqlite_rows(&path, "src__s");
    assert_eq!(rows.len(), 2, "the old rows moved with the table: {rows:?}");

    let jdir = tempfile::tempdir().unwrap();
    {
        let mut d = JsonlDestination::open(jdir.path()).unwrap();
        d.write("src", "s", &batch(&[9], "old"), "t").unwrap();
        d.commit().unwrap();
    }
    // Pretend an older version wrote it: move the file and its committed length back.
    std::fs::rename(
        jdir.path().join("src__s.jsonl"),
        jdir.path().join("src_s.jsonl"),
    )
    .unwrap();
    let state = std::fs::read_to_string(jdir.path().join("_state.json")).unwrap();
    std::fs::write(
        jdir.path().join("_state.json"),
        state.replace("src__s.jsonl", "src_s.jsonl"),
    )
    .unwrap();
    let mut d = JsonlDestination::open(jdir.path()).unwrap();
    d.write("src", "s", &batch(&[1], "a"), "t0").unwrap();
    d.commit().unwrap();
    drop(d);
    assert!(!jdir.path().join("src_s.jsonl").exists());
    let view = jsonl_view(&jdir.path().join("src__s.jsonl"));
    assert_eq!(view.len(), 2, "{view:?}");
    // Reopening keeps both lines (the new name is the committed one).
    JsonlDestination::open(jdir.path()).unwrap();
    assert_eq!(jsonl_view(&jdir.path().join("src__s.jsonl")).len(), 2);
}

#[test]
fn table_names_cannot_collide() {
    use std::collections::HashSet;
    let sources = ["acme", "x", "x_client", "a-b", "my_src", "m1"];
    let streams = [
        "client_contracts",
        "contracts",
        "client_profiles",
        "b_c",
        "c",
    ];
    let mut seen = HashSet::new();
    for src in sources {
        assert_eq!(source_name_problem(src), None, "{src}");
        for stream in streams {
            assert_eq!(stream_name_problem(stream), None, "{stream}");
            assert!(
                seen.insert(table_name(src, stream)),
                "{src}.{stream} collides"
            );
        }
    }
    for bad in ["a__b", "_a", "a_", "a-", "-a", "a-_b", "a.b", ""] {
        assert!(source_name_problem(bad).is_some(), "{bad} accepted");
    }
    for bad in ["_s", "s_", "a__b", "A", "a-b", ""] {
        assert!(stream_name_problem(bad).is_some(), "{bad} accepted");
    }
    assert!(state_key_is_of("tickets [clients=1]", "tickets"));
    assert!(!state_key_is_of("tickets_x", "tickets"));
}

#[test]
fn jsonl_commits_lines_past_the_latest_state_only_once_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src__s.jsonl");
    {
        let mut d = JsonlDestination::open(dir.path()).unwrap();
        d.write("src", "s", &batch(&[1, 2], "a"), "t0").unwrap();
        d.stage_state("src", "s", "{\"n\":2}").unwrap();
        // Page 3 arrived, its checkpoint not yet: a commit now must not make it durable,
        // or a crash would leave it committed while the state says "resume after 2".
        d.write("src", "s", &batch(&[3], "a"), "t1").unwrap();
        d.commit().unwrap();
    }
    JsonlDestination::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    {
        let mut d = JsonlDestination::open(dir.path()).unwrap();
        d.write("src", "s", &batch(&[3], "a"), "t1").unwrap();
        d.stage_state("src", "s", "{\"n\":3}").unwrap();
        d.write("src", "s", &batch(&[4], "a"), "t2").unwrap();
        // The source finished: what it sent after its last checkpoint is kept too.
        d.seal("src");
        d.commit().unwrap();
    }
    JsonlDestination::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 4);
}

/// Rows read back: pk → (cursor, deleted, violations, v).
type Back = std::collections::BTreeMap<String, (Option<String>, bool, Option<String>, String)>;

fn read_back(d: &dyn Destination, stream: &str) -> Back {
    let mut out = Back::new();
    d.for_each_row("src", stream, &mut |row| {
        let v: serde_json::Value = serde_json::from_str(row.data).expect("data is JSON");
        out.insert(
            row.pk.to_string(),
            (
                row.cursor.map(str::to_string),
                row.deleted,
                row.violations.map(str::to_string),
                v["v"].as_str().unwrap_or("").to_string(),
            ),
        );
    })
    .expect("rows read back");
    out
}

#[test]
fn both_destinations_read_back_the_newest_committed_version_of_each_row() {
    let dir = tempfile::tempdir().unwrap();
    let dests: Vec<Box<dyn Destination>> = vec![
        Box::new(SqliteDestination::open(&dir.path().join("w.db")).unwrap()),
        Box::new(JsonlDestination::open(&dir.path().join("jsonl")).unwrap()),
    ];
    for mut d in dests {
        d.write("src", "s", &batch(&[1, 2, 3], "a"), "t0").unwrap();
        let flags = [(1, "[{\"path\":\"/id\",\"message\":\"bad\"}]".to_string())];
        d.write_flagged("src", "s", &batch(&[2, 3], "b"), &flags, "t1")
            .unwrap();
        let gone =
            RecordBatch::from_records(vec![
                Record::from_json("1", "{\"v\":\"a\"}".to_string()).with_deleted(true)
            ]);
        d.write("src", "s", &gone, "t2").unwrap();
        d.stage_state("src", "s", "{}").unwrap();
        d.commit().unwrap();
        let rows = read_back(&*d, "s");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows["1"].1, "the delete line wins");
        assert_eq!(rows["2"].3, "b");
        assert_eq!(rows["2"].2, None);
        assert_eq!(
            rows["3"].2.as_deref(),
            Some("[{\"path\":\"/id\",\"message\":\"bad\"}]")
        );
        assert_eq!(rows["3"].0.as_deref(), Some("c3"));
        assert!(read_back(&*d, "absent").is_empty());
        assert_eq!(d.streams().unwrap(), [("src".to_string(), "s".to_string())]);
        assert_eq!(d.newest_cursor("src", "s").unwrap().as_deref(), Some("c3"));
    }
}
// PostgreSQL: the same contract against the real service (TRIBUTARY_TEST_POSTGRES_URL),
// each test in a fresh schema of its own, dropped at the end.

#[path = "../../../tests/tests/common/services.rs"]
mod services;

/// A fresh schema on the test server, with a connection for reading it back; dropped
/// (with everything in it) at the end.
struct PgSchema {
    url: String,
    name: String,
    rt: tokio::runtime::Runtime,
    conn: sqlx::PgConnection,
}

impl PgSchema {
    fn new() -> Option<PgSchema> {
        use sqlx::Connection;
        let url = services::service_url("TRIBUTARY_TEST_POSTGRES_URL")?;
        let name = format!("t_unit_{}", services::unique_suffix());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(sqlx::PgConnection::connect(&url)).unwrap();
        Some(PgSchema {
            url,
            name,
            rt,
            conn,
        })
    }

    fn open(&self) -> PostgresDestination {
        PostgresDestination::open(&self.url, &self.name).unwrap()
    }

    fn query<T>(&mut self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let sql = sql.replace("$schema", &self.name);
        self.rt
            .block_on(sqlx::query_as(&sql).fetch_all(&mut self.conn))
            .unwrap()
    }

    /// (pk, deleted, v) of every row, ordered by pk, like [`sqlite_rows`].
    fn rows(&mut self, table: &str) -> Vec<(String, bool, String)> {
        self.query(&format!(
            "SELECT _pk, _deleted, data->>'v' FROM $schema.\"{table}\" ORDER BY _pk::int"
        ))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let _ = self
            .rt
            .block_on(sqlx::Executor::execute(&mut self.conn, sql.as_str()));
    }
}

#[test]
fn postgres_upserts_and_commits_state_with_records() {
    let Some(mut pg) = PgSchema::new() else {
        return;
    };
    let mut d = pg.open();
    d.write("src", "s", &batch(&[1, 2, 3], "a"), "t0").unwrap();
    d.stage_state("src", "s", "{\"n\":3}").unwrap();
    d.commit().unwrap();
    d.write("src", "s", &batch(&[3, 4], "b"), "t1").unwrap();
    d.stage_state("src", "s", "{\"n\":4}").unwrap();
    // Not committed: a crash here must lose both the records and the state.
    d.rollback();
    assert_eq!(
        d.load_state().unwrap()["src"]["s"],
        serde_json::json!({"n": 3})
    );
    assert_eq!(pg.rows("src__s").len(), 3, "the rolled-back rows are gone");
    // One batch holding a key twice: the last version wins, as in SQLite.
    let twice = RecordBatch::from_records(vec![
        Record::from_json("3", "{\"v\":\"x\"}".into()),
        Record::from_json("4", "{\"v\":\"b\"}".into()),
        Record::from_json("3", "{\"v\":\"b\"}".into()).with_cursor("c3"),
    ]);
    d.write("src", "s", &twice, "t1").unwrap();
    d.commit().unwrap();
    drop(d);
    let rows: Vec<(String, String, bool, String, Option<String>)> = pg.query(
        "SELECT _pk, _source || '.' || _stream, _deleted, _extracted_at, _cursor
         FROM $schema.src__s ORDER BY _pk",
    );
    assert_eq!(rows.len(), 4, "upsert keeps one row per primary key");
    assert_eq!(rows[0].1, "src.s");
    assert_eq!(rows[2].3, "t1");
    assert_eq!(rows[2].4.as_deref(), Some("c3"));
    assert_eq!(pg.rows("src__s")[2].2, "b", "the newest version wins");
    let state: Vec<(String,)> =
        pg.query("SELECT state FROM $schema._tributary_state WHERE source = 'src'");
    assert_eq!(state, [("{\"n\":3}".to_string(),)]);
}

#[test]
fn postgres_reset_state_by_source_and_stream() {
    let Some(pg) = PgSchema::new() else {
        return;
    };
    let mut d = pg.open();
    for (src, stream) in [("a", "x"), ("a", "y"), ("a", "x [clients=1]"), ("b", "x")] {
        d.stage_state(src, stream, "1").unwrap();
    }
    d.commit().unwrap();
    assert_eq!(d.reset_state(Some("a"), Some("x")).unwrap(), 2);
    assert_eq!(d.reset_state(Some("a"), None).unwrap(), 1);
    let state = d.load_state().unwrap();
    assert!(!state.contains_key("a"));
    assert!(state["b"].contains_key("x"));
    assert_eq!(d.reset_state(None, None).unwrap(), 1);
    assert!(d.load_state().unwrap().is_empty());
}

#[test]
fn postgres_snapshot_marks_exactly_the_unseen_rows_like_sqlite() {
    let Some(mut pg) = PgSchema::new() else {
        return;
    };
    let mut d = pg.open();
    assert_eq!(snapshot_scenario(&mut d), vec![2, 0]);
    drop(d);
    assert_eq!(pg.rows("src__s"), expected_after_scenario());
    let marked: Vec<(String, String, Option<String>)> = pg.query(
        "SELECT _pk, _extracted_at, _cursor FROM $schema.src__s WHERE _deleted ORDER BY _pk",
    );
    assert_eq!(marked, [("3".into(), "t2".into(), Some("c3".into()))]);
}

#[test]
fn postgres_snapshot_rolled_back_marks_nothing() {
    let Some(mut pg) = PgSchema::new() else {
        return;
    };
    let mut d = pg.open();
    d.write("src", "s", &batch(&[1, 2], "a"), "t0").unwrap();
    d.commit().unwrap();
    d.begin_snapshot("src", "s").unwrap();
    assert_eq!(d.finish_snapshot("src", "s", "t1", None).unwrap(), 2);
    // The process dies before the commit.
    d.rollback();
    // A snapshot of a stream with no table yet marks nothing.
    d.begin_snapshot("src", "never").unwrap();
    assert_eq!(d.finish_snapshot("src", "never", "t1", None).unwrap(), 0);
    d.commit().unwrap();
    drop(d);
    assert!(pg.rows("src__s").iter().all(|(_, deleted, _)| !deleted));
}

#[test]
fn postgres_keeps_what_jsonb_refuses_byte_for_byte_in_raw() {
    let Some(mut pg) = PgSchema::new() else {
        return;
    };
    let awkward = [
        (
            "1",
            "{\"v\":\"tab\\there, newline\\nand \\\\ backslash\",\"u\":\"é ✓\"}",
        ),
        ("2", "{\"v\":\"nul \\u0000 inside\"}"),
        ("3", "{\"v\":\"lone \\ud800 surrogate\"}"),
        ("4", "not json at all\twith a tab\nand a newline \\N"),
        ("5", "{\"v\":\"a pair \\ud83d\\ude00 is fine\"}"),
    ];
    let mut d = pg.open();
    let records = awkward
        .iter()
        .map(|(pk, data)| {
            Record::from_json(format!("k\t{pk}\\N\n"), data.to_string()).with_cursor("c\\\t")
        })
        .collect();
    d.write_flagged(
        "src",
        "s",
        &RecordBatch::from_records(records),
        &[(1, "[\"too \\\"long\\\"\"]".into())],
        "t0",
    )
    .unwrap();
    d.commit().unwrap();
    drop(d);
    /// _pk, _cursor, data, _raw, _violations.
    type Stored = (String, String, String, Option<Vec<u8>>, Option<String>);
    let rows: Vec<Stored> = pg.query(
        "SELECT _pk, _cursor, data::text, _raw, _violations::text FROM $schema.src__s ORDER BY _pk",
    );
    assert_eq!(rows.len(), 5);
    for ((pk, cursor, data, raw, violations), (id, original)) in rows.iter().zip(awkward) {
        assert_eq!(pk, &format!("k\t{id}\\N\n"), "keys survive COPY escaping");
        assert_eq!(cursor, "c\\\t");
        let accepted = matches!(id, "1" | "5");
        assert_eq!(jsonb_accepts_for_tests(original), accepted, "{id}");
        if accepted {
            assert_eq!(raw, &None);
            let stored: serde_json::Value = serde_json::from_str(data).unwrap();
            let sent: serde_json::Value = serde_json::from_str(original).unwrap();
            assert_eq!(stored, sent);
        } else {
            assert_eq!(data, "null", "{id}");
            assert_eq!(raw.as_deref(), Some(original.as_bytes()), "{id}: lossless");
        }
        let flagged = (id == "2").then(|| "[\"too \\\"long\\\"\"]".to_string());
        assert_eq!(violations, &flagged);
    }
}

fn jsonb_accepts_for_tests(text: &str) -> bool {
    super::postgres::jsonb_accepts(text)
}

#[test]
fn postgres_a_failed_batch_names_the_table_not_the_records() {
    let Some(pg) = PgSchema::new() else {
        return;
    };
    let mut d = pg.open();
    // PostgreSQL text cannot hold NUL, in a key no more than anywhere else.
    let b = RecordBatch::from_records(vec![Record::from_json(
        "secret\0key",
        "{\"v\":\"secret value\"}".into(),
    )]);
    let err = d.write("src", "s", &b, "t0").unwrap_err().to_string();
    d.rollback();
    assert!(err.contains("src__s"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    // The destination is usable again after the rollback.
    d.write("src", "s", &batch(&[1], "a"), "t1").unwrap();
    d.commit().unwrap();
}

#[test]
fn postgres_advisory_lock_admits_one_holder() {
    let Some(pg) = PgSchema::new() else {
        return;
    };
    let held = AdvisoryLock::acquire(&pg.url, &pg.name, false).unwrap();
    let err = AdvisoryLock::acquire(&pg.url, &pg.name, false)
        .err()
        .expect("a second holder is refused")
        .to_string();
    assert!(
        err.contains("is in use by another tributary process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the holder: {err}"
    );
    assert!(!err.contains(&pg.url), "never the URL: {err}");
    drop(held);
    AdvisoryLock::acquire(&pg.url, &pg.name, false).expect("free again after drop");
}

#[test]
fn jsonb_acceptance_follows_postgres() {
    use super::postgres::jsonb_accepts;
    assert!(jsonb_accepts(
        "{\"a\":[1,2.5e3,null,true],\"b\":\"\\\\u0000\"}"
    ));
    assert!(jsonb_accepts("\"\\u00e9\\ud83d\\ude00\""));
    assert!(!jsonb_accepts("{\"a\":\"\\u0000\"}"));
    assert!(!jsonb_accepts("\"\\udc00\""));
    assert!(!jsonb_accepts("\"\\ud800x\""));
    assert!(!jsonb_accepts("{\"a\":"));
    assert!(!jsonb_accepts(""));
}

#[test]
fn both_file_destinations_keep_the_newest_schema_of_each_stream_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let old = serde_json::json!({"properties": {"a": {}}});
    let new = serde_json::json!({"properties": {"a": {}, "b": {}}});
    let other = serde_json::json!({"properties": {"z": {}}});
    let mut opened: Vec<Box<dyn Fn() -> Box<dyn Destination>>> = Vec::new();
    let (db, files) = (dir.path().join("w.db"), dir.path().join("jsonl"));
    opened.push(Box::new(move || {
        Box::new(SqliteDestination::open(&db).unwrap())
    }));
    opened.push(Box::new(move || {
        Box::new(JsonlDestination::open(&files).unwrap())
    }));
    for open in &opened {
        let mut d = open();
        assert!(d.schemas().unwrap().is_empty());
        d.save_schemas("My Source", &[("s", &old), ("t", &other)])
            .unwrap();
        d.save_schemas("My Source", &[("s", &new)]).unwrap();
        drop(d);
        let kept = open().schemas().unwrap();
        let prefix = table_prefix("My Source");
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[&(prefix.clone(), "s".to_string())], new);
        assert_eq!(kept[&(prefix, "t".to_string())], other);
        assert!(open().streams().unwrap().is_empty(), "no stream table");
    }
}
