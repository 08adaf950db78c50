//! Crash safety: `kill -9` the host in the middle of a large sync, rerun, and check that
//! every source row is in the warehouse exactly once and no state ran ahead of its data.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{count, Scratch};

/// Rows of service_history at or before a `(updated_at, id)` checkpoint.
fn rows_covered_by(src: &rusqlite::Connection, updated_at: &str, id: i64) -> Vec<i64> {
    let mut stmt = src
        .prepare("SELECT id FROM service_history WHERE updated_at < ?1 OR (updated_at = ?1 AND id <= ?2)")
        .unwrap();
    stmt.query_map(rusqlite::params![updated_at, id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn kill_9_mid_sync_then_resume_exactly_once() {
    let s = Scratch::new();
    // ~200k service_history rows: big enough that the kill lands mid-stream.
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 2000\nsample_data = {{ clients = 400, seed = 5, service_history_per_client = 500 }}\n",
        s.header(),
        s.path("internal.db").display()
    ));
    // Create the source database first (`check` creates the sample data).
    let d = s.run(&["check"]);
    assert_eq!(d.code, 0, "{}", d.all());
    let src = rusqlite::Connection::open(s.path("internal.db")).unwrap();
    let total = count(&src, "service_history");
    assert!(total >= 100_000, "large source: {total}");

    let mut child = s
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (by observation, not by time) until some rows are committed, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed_before_kill = loop {
        let n = rusqlite::Connection::open_with_flags(
            s.path("warehouse.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM internal__service_history", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
        })
        .unwrap_or(0);
        if n > 0 {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "host finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no rows were committed in time");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());

    let wh = s.warehouse();
    let after_kill = count(&wh, "internal__service_history");
    assert!(after_kill >= committed_before_kill);
    assert!(
        after_kill < total,
        "killed mid-sync ({after_kill} of {total})"
    );

    // State never ahead of data: every row the checkpoint covers is in the warehouse.
    let state: Option<String> = wh
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'internal' AND stream = 'service_history'",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(state) = state {
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        let updated_at = state["updated_at"]
            .as_str()
            .expect("cursor timestamp in state");
        let id = state["id"].as_i64().expect("cursor id in state");
        let covered = rows_covered_by(&src, updated_at, id);
        let mut stmt = wh
            .prepare("SELECT 1 FROM internal__service_history WHERE _pk = ?1")
            .unwrap();
        let missing = covered
            .iter()
            .filter(|id| !stmt.exists([id.to_string()]).unwrap())
            .count();
        assert_eq!(
            missing,
            0,
            "state covers {} rows; {missing} are not in the warehouse",
            covered.len()
        );
    }

    // Resume: everything lands exactly once, at its current version.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.records("internal.service_history") as i64 <= total);
    assert_eq!(count(&wh, "internal__service_history"), total);
    let mut per_pk: BTreeMap<String, i64> = BTreeMap::new();
    let mut stmt = wh
        .prepare("SELECT _pk, count(*) FROM internal__service_history GROUP BY _pk")
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
    {
        let (pk, n) = row.unwrap();
        per_pk.insert(pk, n);
    }
    assert_eq!(per_pk.len() as i64, total);
    assert!(per_pk.values().all(|n| *n == 1));
    // Content equals the source: compare a digest of (id, updated_at) pairs.
    let src_digest: String = src
        .query_row("SELECT group_concat(id || '@' || updated_at, ',') FROM (SELECT id, updated_at FROM service_history ORDER BY id)", [], |r| r.get(0))
        .unwrap();
    let wh_digest: String = wh
        .query_row(
            "SELECT group_concat(_pk || '@' || _cursor, ',') FROM (SELECT _pk, _cursor FROM internal__service_history ORDER BY CAST(_pk AS INTEGER))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(src_digest == wh_digest, "warehouse rows equal source rows");
}
