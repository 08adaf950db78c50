//! Deletions in the internal database: hard deletes found by key reconciliation, soft
//! deletes honoured, crash safety of a reconciliation.
//!
//! Each scenario is written once over a [`Source`] (a database URL plus direct SQL access
//! that does not go through the connector) and runs here on SQLite; `services.rs` runs
//! the same functions on PostgreSQL and MariaDB. Expected values come from the source
//! database and from what the test itself deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tributary_internal_db::sample::{self, SampleSpec};

use crate::common::{count, Report, Scratch};

/// The soft-delete columns the sample schema has, as the connector's setting.
const SOFT_DELETE: &str = "{ service_history = \"deleted_at\", contracts = \"is_deleted\" }";

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The source database of a scenario.
pub struct Source {
    pub url: String,
}

impl Source {
    /// A SQLite source file in the scratch directory.
    pub fn sqlite(s: &Scratch) -> Source {
        Source {
            url: format!("sqlite:{}", s.path("internal.db").display()),
        }
    }

    /// Generates the sample data (the tables must be empty).
    pub fn generate(&self, spec: &SampleSpec) -> BTreeMap<&'static str, u64> {
        rt().block_on(sample::generate(&self.url, spec))
            .expect("sample data generated")
    }

    /// `id → canonical updated_at` of every row of `table`, read with plain SQL.
    pub fn rows(&self, table: &str) -> BTreeMap<String, String> {
        let cursor = match self.url.split(':').next() {
            Some("sqlite") => "updated_at".to_string(),
            Some("postgres" | "postgresql") => {
                "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                    .to_string()
            }
            _ => "CAST(DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%s.%fZ') AS CHAR(40))".to_string(),
        };
        let sql = format!("SELECT id, {cursor} FROM {table} ORDER BY id");
        rt().block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&self.url)
                .await
                .expect("source opens");
            let rows: Vec<(i64, String)> = sqlx::query_as(&sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
            rows.into_iter()
                .map(|(id, c)| (id.to_string(), c))
                .collect()
        })
    }

    /// Ids of `table`, ascending.
    pub fn ids(&self, table: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .rows(table)
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn delete(&self, stream: &str, ids: &[i64]) {
        let n = rt()
            .block_on(sample::delete(&self.url, stream, ids))
            .expect("delete");
        assert_eq!(n, ids.len() as u64, "{stream}: every id existed");
    }

    pub fn soft_delete(&self, stream: &str, ids: &[i64]) {
        let n = rt()
            .block_on(sample::soft_delete(
                &self.url,
                stream,
                ids,
                chrono::Utc::now(),
            ))
            .expect("soft delete");
        assert_eq!(n, ids.len() as u64, "{stream}: every id existed");
    }

    pub fn touch(&self, stream: &str, ids: &[i64]) {
        let n = rt()
            .block_on(sample::touch(&self.url, stream, ids, chrono::Utc::now()))
            .expect("touch");
        assert_eq!(n, ids.len() as u64, "{stream}: every id existed");
    }
}

/// A manifest body: the scratch's SQLite warehouse (or `destination`), one internal-db
/// source `ops` on `url` with the sample's soft-delete columns, reconciling on every run,
/// paging `page_size` rows (and ids) at a time.
fn manifest(
    s: &Scratch,
    url: &str,
    page_size: u32,
    extra: &str,
    destination: Option<&str>,
) -> String {
    manifest_reconciling(s, url, page_size, "always", extra, destination)
}

/// [`manifest`] with another `reconcile_every`.
fn manifest_reconciling(
    s: &Scratch,
    url: &str,
    page_size: u32,
    reconcile_every: &str,
    extra: &str,
    destination: Option<&str>,
) -> String {
    let header = match destination {
        None => s.header(),
        Some(d) => format!(
            "[host]\nplugin_dir = \"{}\"\n\n[destination]\n{d}\n\n",
            crate::common::target_dir().display()
        ),
    };
    format!(
        "{header}[sources.ops]\nplugin = \"internal-db\"\n{extra}\n[sources.ops.config]\nurl = \"{url}\"\npage_size = {page_size}\nreconcile_every = \"{reconcile_every}\"\nsoft_delete = {SOFT_DELETE}\n"
    )
}

/// A warehouse row: (_deleted, _cursor).
type WarehouseRows = BTreeMap<String, (bool, Option<String>)>;

fn warehouse_rows(wh: &rusqlite::Connection, table: &str) -> WarehouseRows {
    let mut stmt = wh
        .prepare(&format!("SELECT _pk, _deleted, _cursor FROM \"{table}\""))
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn marked(rows: &WarehouseRows) -> BTreeSet<String> {
    rows.iter()
        .filter(|(_, (d, _))| *d)
        .map(|(k, _)| k.clone())
        .collect()
}

fn strings(ids: &[i64]) -> BTreeSet<String> {
    ids.iter().map(i64::to_string).collect()
}

fn sync_ok(s: &Scratch, args: &[&str]) -> Report {
    let (run, report) = s.sync(args);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    report
}

/// `n` ids spread over `ids` (first, last and evenly in between), skipping `taken`.
fn spread(ids: &[i64], n: usize, taken: &BTreeSet<i64>) -> Vec<i64> {
    let free: Vec<i64> = ids.iter().copied().filter(|i| !taken.contains(i)).collect();
    assert!(free.len() > n * 2, "enough rows to choose from");
    (0..n)
        .map(|k| free[k * (free.len() - 1) / (n - 1).max(1)])
        .collect()
}

/// What a scenario did to the source, per stream.
#[derive(Default)]
struct Changes {
    hard: BTreeMap<&'static str, Vec<i64>>,
    soft: BTreeMap<&'static str, Vec<i64>>,
    touched: BTreeMap<&'static str, Vec<i64>>,
}

impl Changes {
    fn apply(src: &Source) -> Changes {
        let mut c = Changes::default();
        for (stream, hard, soft, touched) in [
            ("service_history", 5, 3, 4),
            ("satisfaction_scores", 2, 0, 0),
            ("communication_engagement", 0, 0, 2),
            ("contracts", 1, 2, 0),
        ] {
            let ids = src.ids(stream);
            let mut taken = BTreeSet::new();
            let mut pick = |n: usize| {
                if n == 0 {
                    return Vec::new();
                }
                let chosen = spread(&ids, n, &taken);
                taken.extend(chosen.iter().copied());
                chosen
            };
            let (h, so, t) = (pick(hard), pick(soft), pick(touched));
            src.delete(stream, &h);
            if !so.is_empty() {
                src.soft_delete(stream, &so);
            }
            if !t.is_empty() {
                src.touch(stream, &t);
            }
            c.hard.insert(stream, h);
            c.soft.insert(stream, so);
            c.touched.insert(stream, t);
        }
        c
    }

    fn hard(&self, stream: &str) -> Vec<i64> {
        self.hard.get(stream).cloned().unwrap_or_default()
    }

    fn soft(&self, stream: &str) -> Vec<i64> {
        self.soft.get(stream).cloned().unwrap_or_default()
    }

    fn gone(&self, stream: &str) -> BTreeSet<String> {
        let mut all = strings(&self.hard(stream));
        all.extend(strings(&self.soft(stream)));
        all
    }

    /// The same changes before a pass found the hard deletes: only the soft deletes are
    /// marked.
    fn soft_only(&self) -> Changes {
        Changes {
            hard: BTreeMap::new(),
            soft: self.soft.clone(),
            touched: self.touched.clone(),
        }
    }

    fn touched(&self, stream: &str) -> Vec<i64> {
        self.touched.get(stream).cloned().unwrap_or_default()
    }
}

const STREAMS: [&str; 5] = [
    "client_profiles",
    "service_history",
    "satisfaction_scores",
    "communication_engagement",
    "contracts",
];

/// After a sync: exactly what `changes` deleted is marked deleted; every other source row
/// is live at its newest version; deleted rows kept their data; nothing else is in the
/// table.
fn assert_exact(src: &Source, wh: &rusqlite::Connection, stream: &str, changes: &Changes) {
    assert_marked(src, wh, stream, changes, &[]);
}

/// [`assert_exact`], with `unmarked` hard-deleted rows that no pass has found yet: they
/// are still in the table, live.
fn assert_marked(
    src: &Source,
    wh: &rusqlite::Connection,
    stream: &str,
    changes: &Changes,
    unmarked: &[i64],
) {
    let table = format!("ops__{stream}");
    let rows = warehouse_rows(wh, &table);
    let source = src.rows(stream);
    let gone = changes.gone(stream);
    assert_eq!(marked(&rows), gone, "{stream}: marked deleted");
    for (id, cursor) in &source {
        let (deleted, at) = rows
            .get(id)
            .unwrap_or_else(|| panic!("{stream} {id} missing"));
        assert_eq!(
            at.as_deref(),
            Some(cursor.as_str()),
            "{stream} {id}: newest version"
        );
        assert_eq!(*deleted, gone.contains(id), "{stream} {id}");
    }
    let hard = strings(&changes.hard(stream));
    let unmarked = strings(unmarked);
    assert!(hard
        .iter()
        .chain(&unmarked)
        .all(|id| !source.contains_key(id)));
    assert!(unmarked.iter().all(|id| rows.get(id).is_some_and(|r| !r.0)));
    assert_eq!(
        rows.len(),
        source.len() + hard.len() + unmarked.len(),
        "{stream}: nothing else"
    );
    // Marked rows keep their data.
    let kept: i64 = wh
        .query_row(
            &format!("SELECT count(*) FROM \"{table}\" WHERE _deleted = 1 AND CAST(json_extract(data, '$.id') AS TEXT) = _pk"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept as usize, gone.len(), "{stream}: data kept");
}

/// Hard and soft deletes (and edits) in four tables. A run with no pass due marks the
/// soft deletes (deletion records) and nothing else; the next run's pass marks the hard
/// deletes; the report's `deleted` is exact each time, every other row is live at its
/// newest version; a run after that marks nothing more.
pub fn deletes_are_marked(src: &Source, s: &Scratch) {
    src.generate(&SampleSpec::with_clients(10, 21));
    // Small pages: records and keys cross in many batches. A day between passes: the
    // first run reconciles (none yet), the second does not.
    s.manifest(&manifest_reconciling(s, &src.url, 7, "24h", "", None));
    let first = sync_ok(s, &[]);
    for stream in STREAMS {
        assert_eq!(first.deleted(&format!("ops.{stream}")), 0, "{stream}");
    }
    let changes = Changes::apply(src);

    let second = sync_ok(s, &[]);
    let wh = s.warehouse();
    let soft = changes.soft_only();
    for stream in STREAMS {
        let key = format!("ops.{stream}");
        assert_eq!(
            second.deleted(&key),
            changes.soft(stream).len() as u64,
            "{stream}: {second:?}"
        );
        // Soft deletes and edits are records; hard deletes are not.
        assert_eq!(
            second.records(&key),
            (changes.soft(stream).len() + changes.touched(stream).len()) as u64,
            "{stream}"
        );
        assert_marked(src, &wh, stream, &soft, &changes.hard(stream));
    }

    s.manifest(&manifest(s, &src.url, 7, "", None));
    let third = sync_ok(s, &[]);
    for stream in STREAMS {
        let key = format!("ops.{stream}");
        assert_eq!(
            third.deleted(&key),
            changes.hard(stream).len() as u64,
            "{stream}: {third:?}"
        );
        assert_eq!(third.records(&key), 0, "{stream}");
        assert_exact(src, &wh, stream, &changes);
    }

    let fourth = sync_ok(s, &[]);
    for stream in STREAMS {
        assert_eq!(
            fourth.deleted(&format!("ops.{stream}")),
            0,
            "{stream} marked twice"
        );
        assert_exact(src, &wh, stream, &changes);
    }
    assert_eq!(fourth.total(), 0);
}

/// The committed state of `ops.<stream>` (main scope).
fn state(wh: &rusqlite::Connection, stream: &str) -> serde_json::Value {
    let text: String = wh
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'ops' AND stream = ?1",
            [stream],
            |r| r.get(0),
        )
        .expect("state");
    serde_json::from_str(&text).expect("json")
}

/// `kill -9` of the host while a reconciliation is under way (seen in its log), then a
/// rerun: the killed run marked nothing and recorded no pass; the rerun marks exactly
/// the vanished rows.
pub fn kill_9_mid_reconciliation(src: &Source, s: &Scratch, spec: &SampleSpec, page_size: u32) {
    let rows = src.generate(spec)["service_history"];
    s.manifest(&manifest(
        s,
        &src.url,
        page_size,
        "streams = [\"service_history\"]",
        None,
    ));
    sync_ok(s, &[]);
    let wh = s.warehouse();
    assert_eq!(count(&wh, "ops__service_history") as u64, rows);
    let before = state(&wh, "service_history");
    let ids = src.ids("service_history");
    let gone = spread(&ids, 9, &BTreeSet::new());
    src.delete("service_history", &gone);

    let mut child = s
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Bounded wait for the observable start of the pass; the pipe is drained meanwhile.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no reconciliation started in time:\n{}",
            log.join("\n")
        );
        match rx.recv_timeout(left) {
            Ok(line) => {
                let started = line.contains("reconciliation started");
                log.push(line);
                if started {
                    break;
                }
            }
            Err(_) => panic!("the host ended before reconciling:\n{}", log.join("\n")),
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    reader.join().expect("reader");
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(
        !log.contains("reconciliation listed every live id"),
        "the kill must land mid-pass (enlarge the table):\n{log}"
    );

    let rows_now = warehouse_rows(&wh, "ops__service_history");
    assert!(
        marked(&rows_now).is_empty(),
        "an unfinished pass marked rows"
    );
    assert_eq!(state(&wh, "service_history"), before, "no pass recorded");

    let (run, rerun) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(rerun.all_complete(), "{rerun:?}");
    // How long a whole pass takes here: the margin the kill had.
    if let Some(line) = run
        .stderr
        .lines()
        .find(|l| l.contains("listed every live id"))
    {
        eprintln!("rerun: {line}");
    }
    assert_eq!(rerun.deleted("ops.service_history"), gone.len() as u64);
    assert_eq!(rerun.records("ops.service_history"), 0);
    let rows_after = warehouse_rows(&wh, "ops__service_history");
    assert_eq!(marked(&rows_after), strings(&gone));
    assert_eq!(rows_after.len() as u64, rows);
    assert!(state(&wh, "service_history")["reconciled_at"] != before["reconciled_at"]);
}

#[test]
fn sqlite_hard_and_soft_deletes_are_marked() {
    let s = Scratch::new();
    deletes_are_marked(&Source::sqlite(&s), &s);
}

#[test]
fn sqlite_kill_9_mid_reconciliation_marks_nothing_then_the_rerun_marks_the_vanished() {
    let s = Scratch::new();
    let spec = SampleSpec {
        service_history_per_client: 500,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
        ..SampleSpec::with_clients(400, 5)
    };
    kill_9_mid_reconciliation(&Source::sqlite(&s), &s, &spec, 50);
}

/// One JSONL line.
#[derive(serde::Deserialize)]
struct Line {
    _pk: String,
    _deleted: bool,
    _cursor: Option<String>,
    data: serde_json::Value,
}

fn lines(path: &std::path::Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The same source synced to a SQLite warehouse and to JSONL: after hard and soft
/// deletes, JSONL has one delete line per vanished key, and its last line per `_pk`
/// equals the warehouse row; a further run adds no line.
#[test]
fn jsonl_delete_lines_once_per_key_and_last_lines_equal_the_warehouse() {
    let a = Scratch::new();
    let b = Scratch::new();
    let src = Source::sqlite(&a);
    src.generate(&SampleSpec::with_clients(10, 22));
    a.manifest(&manifest(&a, &src.url, 50, "", None));
    let out = b.path("out");
    b.manifest(&manifest(
        &b,
        &src.url,
        50,
        "",
        Some(&format!("kind = \"jsonl\"\npath = \"{}\"", out.display())),
    ));
    sync_ok(&a, &[]);
    sync_ok(&b, &[]);
    let changes = Changes::apply(&src);
    let report_a = sync_ok(&a, &[]);
    let report_b = sync_ok(&b, &[]);
    let wh = a.warehouse();
    let mut sizes = BTreeMap::new();
    for stream in STREAMS {
        let key = format!("ops.{stream}");
        assert_eq!(report_b.deleted(&key), report_a.deleted(&key), "{stream}");
        let path = out.join(format!("ops__{stream}.jsonl"));
        let all = lines(&path);
        let mut deletes: BTreeMap<String, usize> = BTreeMap::new();
        for l in all.iter().filter(|l| l._deleted) {
            *deletes.entry(l._pk.clone()).or_default() += 1;
        }
        assert_eq!(
            deletes.keys().cloned().collect::<BTreeSet<_>>(),
            changes.gone(stream),
            "{stream}"
        );
        assert!(deletes.values().all(|n| *n == 1), "{stream}: {deletes:?}");
        // Every key has its first line, plus one for its one change (an edit, a soft
        // delete's deletion record, a hard delete's delete line), nothing more.
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for l in &all {
            *per_key.entry(l._pk.clone()).or_default() += 1;
        }
        let mut changed = changes.gone(stream);
        changed.extend(strings(&changes.touched(stream)));
        assert_eq!(
            per_key.len(),
            src.ids(stream).len() + changes.hard(stream).len()
        );
        for (pk, n) in &per_key {
            assert_eq!(*n, 1 + usize::from(changed.contains(pk)), "{stream} {pk}");
        }
        // The last line per _pk is the warehouse row.
        let mut last: BTreeMap<String, &Line> = BTreeMap::new();
        for l in &all {
            last.insert(l._pk.clone(), l);
        }
        let mut stmt = wh
            .prepare(&format!(
                "SELECT _pk, _deleted, _cursor, data FROM \"ops__{stream}\""
            ))
            .unwrap();
        let rows: BTreeMap<String, (bool, Option<String>, serde_json::Value)> = stmt
            .query_map([], |r| {
                let data: String = r.get(3)?;
                Ok((
                    r.get(0)?,
                    (r.get(1)?, r.get(2)?, serde_json::from_str(&data).unwrap()),
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let view: BTreeMap<String, (bool, Option<String>, serde_json::Value)> = last
            .into_iter()
            .map(|(k, l)| (k, (l._deleted, l._cursor.clone(), l.data.clone())))
            .collect();
        assert_eq!(view, rows, "{stream}");
        sizes.insert(stream, std::fs::metadata(&path).unwrap().len());
        assert_exact(&src, &wh, stream, &changes);
    }
    let again = sync_ok(&b, &[]);
    for stream in STREAMS {
        assert_eq!(again.deleted(&format!("ops.{stream}")), 0);
        let len = std::fs::metadata(out.join(format!("ops__{stream}.jsonl")))
            .unwrap()
            .len();
        assert_eq!(
            len, sizes[stream],
            "{stream}: a run without changes adds no line"
        );
    }
}

/// A `--client` run (incremental or full refresh) never reconciles, so it marks nothing;
/// a `--since/--until` run reconciles against the whole table, so it marks exactly the
/// vanished rows (inside and outside its window) and no row outside the window it did
/// not read.
#[test]
fn client_runs_mark_nothing_and_a_date_window_marks_only_the_vanished() {
    let s = Scratch::new();
    let src = Source::sqlite(&s);
    src.generate(&SampleSpec::with_clients(12, 23));
    s.manifest(&manifest(&s, &src.url, 50, "", None));
    sync_ok(&s, &[]);
    let db = rusqlite::Connection::open(s.path("internal.db")).unwrap();
    let one = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let client = one(
        "SELECT client_id FROM service_history GROUP BY client_id ORDER BY count(*) DESC LIMIT 1",
    );
    let (since, until) = ("2025-01-01", "2025-07-01");
    let gone = [
        one(&format!("SELECT min(id) FROM service_history WHERE client_id = {client}")),
        one(&format!("SELECT max(id) FROM service_history WHERE client_id <> {client} AND updated_at < '{since}'")),
        one(&format!("SELECT max(id) FROM service_history WHERE client_id <> {client} AND updated_at >= '{since}' AND updated_at < '{until}'")),
        one(&format!("SELECT max(id) FROM service_history WHERE client_id <> {client} AND updated_at >= '{until}'")),
    ];
    let contract = one(&format!(
        "SELECT min(id) FROM contracts WHERE client_id = {client}"
    ));
    drop(db);
    src.delete("service_history", &gone);
    src.delete("contracts", &[contract]);
    let client = client.to_string();
    let wh = s.warehouse();
    for args in [
        vec!["--client", client.as_str()],
        vec!["--client", client.as_str(), "--full-refresh"],
    ] {
        let report = sync_ok(&s, &args);
        if args.contains(&"--full-refresh") {
            assert!(report.total() > 0, "{args:?} read the client's rows");
        }
        for stream in STREAMS {
            assert_eq!(
                report.deleted(&format!("ops.{stream}")),
                0,
                "{args:?} {stream}"
            );
            assert!(
                marked(&warehouse_rows(&wh, &format!("ops__{stream}"))).is_empty(),
                "{args:?} {stream}"
            );
        }
    }

    let report = sync_ok(&s, &["--since", since, "--until", until]);
    let changes = Changes {
        hard: BTreeMap::from([
            ("service_history", gone.to_vec()),
            ("contracts", vec![contract]),
        ]),
        ..Changes::default()
    };
    for stream in STREAMS {
        assert_eq!(
            report.deleted(&format!("ops.{stream}")),
            changes.gone(stream).len() as u64,
            "{stream}"
        );
        assert_exact(&src, &wh, stream, &changes);
    }
    // The main sync agrees and has nothing left to mark.
    let report = sync_ok(&s, &[]);
    for stream in STREAMS {
        assert_eq!(report.deleted(&format!("ops.{stream}")), 0, "{stream}");
        assert_exact(&src, &wh, stream, &changes);
    }
}
