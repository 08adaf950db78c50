//! Crash safety: `kill -9` the host in the middle of a large sync (SQLite and JSONL
//! destinations), rerun, and check against the source that every row is there exactly
//! once at its newest version, that no state ran ahead of its data, and that the rerun
//! resumed from the committed state instead of reading everything again.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{count, Scratch};

/// A scratch directory with ~200k service_history rows (big enough that the kill lands
/// mid-stream); `destination` replaces the default SQLite destination block.
pub fn setup(destination: Option<&dyn Fn(&Scratch) -> String>) -> (Scratch, rusqlite::Connection) {
    let s = Scratch::new();
    let header = s.header();
    let header = match (destination, header.find("[destination]")) {
        (Some(block), Some(i)) => format!("{}{}", &header[..i], block(&s)),
        _ => header,
    };
    s.manifest(&format!(
        "{header}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 2000\nsample_data = {{ clients = 400, seed = 5, service_history_per_client = 500 }}\n",
        s.path("internal.db").display()
    ));
    // Create the source database first (`check` creates the sample data).
    let d = s.run(&["check"]);
    assert_eq!(d.code, 0, "{}", d.all());
    let src = rusqlite::Connection::open(s.path("internal.db")).expect("source");
    let total = count(&src, "service_history");
    assert!(total >= 100_000, "large source: {total}");
    (s, src)
}

/// Every source row as (id, updated_at), ordered by id.
fn source_rows(src: &rusqlite::Connection) -> Vec<(String, String)> {
    let mut stmt = src
        .prepare("SELECT id, updated_at FROM service_history ORDER BY id")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

/// Ids of the source rows at or before a `(updated_at, id)` checkpoint.
pub fn covered_by(src: &rusqlite::Connection, state: &serde_json::Value) -> Vec<String> {
    let updated_at = state["updated_at"]
        .as_str()
        .expect("cursor timestamp in state");
    let id = state["id"].as_i64().expect("cursor id in state");
    let mut stmt = src
        .prepare("SELECT id FROM service_history WHERE updated_at < ?1 OR (updated_at = ?1 AND id <= ?2)")
        .expect("query");
    stmt.query_map(rusqlite::params![updated_at, id], |r| {
        Ok(r.get::<_, i64>(0)?.to_string())
    })
    .expect("rows")
    .map(Result::unwrap)
    .collect()
}

/// Runs the host until `committed()` returns a state, then kills it with SIGKILL and
/// returns that state (the kill landed after at least one commit).
pub fn kill_after_first_commit(
    s: &Scratch,
    committed: impl Fn() -> Option<serde_json::Value>,
) -> serde_json::Value {
    let mut child = s
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(state) = committed() {
            child.kill().expect("SIGKILL"); // the host may commit more before it dies
            let status = child.wait().expect("host ends");
            assert!(!status.success(), "killed, not finished");
            return state;
        }
        if let Some(status) = child.try_wait().expect("status") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("host finished ({status}) before it could be killed: {err}");
        }
        assert!(Instant::now() < deadline, "no state was committed in time");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sqlite_state(path: &Path) -> Option<serde_json::Value> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    let text: String = c
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'internal' AND stream = 'service_history'",
            [],
            |r| r.get(0),
        )
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn jsonl_state(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("_state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let state = v["state"]["internal"]["service_history"].clone();
    (!state.is_null()).then_some(state)
}

fn warehouse_rows(wh: &rusqlite::Connection) -> Vec<(String, String)> {
    let mut stmt = wh
        .prepare("SELECT _pk, _cursor FROM internal__service_history ORDER BY CAST(_pk AS INTEGER)")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

/// The JSONL file's lines as (pk, cursor) in file order.
fn jsonl_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("jsonl file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("whole JSON line");
            (
                v["_pk"].as_str().expect("pk").to_string(),
                v["_cursor"].as_str().expect("cursor").to_string(),
            )
        })
        .collect()
}

#[test]
fn kill_9_mid_sync_then_resume_exactly_once() {
    let (s, src) = setup(None);
    let wh_path = s.path("warehouse.db");
    let state = kill_after_first_commit(&s, || sqlite_state(&wh_path));

    let wh = s.warehouse();
    let source = source_rows(&src);
    let total = source.len() as u64;
    let after_kill = warehouse_rows(&wh);
    assert!(
        (after_kill.len() as u64) < total,
        "killed mid-sync ({} of {total})",
        after_kill.len()
    );

    // The state committed at the moment of the kill (it may have moved on since the
    // observation) never runs ahead of the data: every row it covers is in the warehouse.
    let state = sqlite_state(&wh_path).unwrap_or(state);
    let covered = covered_by(&src, &state);
    assert!(
        !covered.is_empty(),
        "the kill landed after a commit: {state}"
    );
    let present: std::collections::BTreeSet<&String> =
        after_kill.iter().map(|(pk, _)| pk).collect();
    let missing = covered.iter().filter(|id| !present.contains(id)).count();
    assert_eq!(
        missing,
        0,
        "state covers {} rows; {missing} are not in the warehouse",
        covered.len()
    );

    // Resume: it reads exactly the rows after the committed position (internal-db resumes
    // strictly after its key, so there is no overlap), and the warehouse equals the source.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("internal.service_history"),
        total - covered.len() as u64,
        "the rerun resumed from the committed state"
    );
    assert_eq!(
        warehouse_rows(&wh),
        source,
        "every source row once, at its newest version"
    );
}

#[test]
fn kill_9_mid_sync_to_jsonl_then_resume_exactly_once() {
    let (s, src) = setup(Some(&|s: &Scratch| {
        format!(
            "[destination]\nkind = \"jsonl\"\npath = \"{}\"\n\n",
            s.path("out").display()
        )
    }));
    let out = s.path("out");
    let file = out.join("internal__service_history.jsonl");
    kill_after_first_commit(&s, || jsonl_state(&out));
    let state = jsonl_state(&out).expect("committed state");
    let covered = covered_by(&src, &state);
    assert!(!covered.is_empty(), "the kill landed after a commit");

    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let source = source_rows(&src);
    let total = source.len() as u64;
    assert_eq!(
        report.records("internal.service_history"),
        total - covered.len() as u64,
        "the rerun resumed from the committed state"
    );
    // Lines written after the last commit were discarded on reopen, so each row appears
    // exactly once in the file (the source did not change), whole and at its version.
    let mut lines = jsonl_lines(&file);
    assert_eq!(
        lines.len() as u64,
        total,
        "no duplicated and no missing lines"
    );
    lines.sort_by_key(|(pk, _)| pk.parse::<i64>().expect("numeric pk"));
    assert_eq!(lines, source);
    let per_pk: BTreeMap<&String, usize> = lines.iter().fold(BTreeMap::new(), |mut m, (pk, _)| {
        *m.entry(pk).or_default() += 1;
        m
    });
    assert!(per_pk.values().all(|n| *n == 1));
}
