//! One writer per destination and one table per stream (issue 7): two runs started
//! together never both write, and source names that would share a table are refused.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{count, Run, Scratch};

/// A manifest with one internal-db source big enough that a run lasts a few seconds,
/// on `destination` (`kind`, `path` relative to the scratch directory).
fn setup(kind: &str, path: &str) -> Scratch {
    let s = Scratch::new();
    let header = s
        .header()
        .replace("kind = \"sqlite\"", &format!("kind = \"{kind}\""))
        .replace(
            &format!("path = \"{}\"", s.path("warehouse.db").display()),
            &format!("path = \"{}\"", s.path(path).display()),
        );
    s.manifest(&format!(
        "{header}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\", \"communication_engagement\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 2000\nsample_data = {{ clients = 300, seed = 3, service_history_per_client = 500 }}\n",
        s.path("internal.db").display()
    ));
    let check = s.run(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    s
}

/// Waits until `lock` names `child`'s pid: the child then holds the destination.
fn wait_for_holder(child: &mut Child, lock: &std::path::Path) {
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::read_to_string(lock).is_ok_and(|t| t.trim() == pid) {
            return;
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the first run ended before it was seen holding {}",
            lock.display()
        );
        assert!(
            Instant::now() < deadline,
            "{} never named pid {pid}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Rows of a source table as (id, updated_at), sorted.
fn source_rows(s: &Scratch, table: &str) -> Vec<(String, String)> {
    let src = rusqlite::Connection::open(s.path("internal.db")).expect("source");
    let mut stmt = src
        .prepare(&format!("SELECT id, updated_at FROM {table} ORDER BY id"))
        .expect("query");
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

/// The last line per `_pk` of a JSONL file as (pk, cursor), sorted by numeric pk, and
/// the number of lines.
fn jsonl_rows(path: &std::path::Path) -> (Vec<(String, String)>, usize) {
    let text = std::fs::read_to_string(path).expect("jsonl file");
    let mut last = std::collections::BTreeMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines");
        let pk = v["_pk"].as_str().expect("pk").to_string();
        let cursor = v["_cursor"].as_str().expect("cursor").to_string();
        last.insert(pk.parse::<i64>().expect("numeric pk"), (pk, cursor));
    }
    (last.into_values().collect(), lines)
}

fn second_run_is_refused(s: &Scratch, lock: &std::path::Path) -> (Run, Run) {
    let mut first = s
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("first run starts");
    wait_for_holder(&mut first, lock);
    let second = s.run(&["run"]);
    let first: Run = first.wait_with_output().expect("first run ends").into();
    (first, second)
}

fn assert_refused(second: &Run, pid_holder: &str, destination: &str) {
    assert_eq!(
        second.code,
        2,
        "the second run is refused: {}",
        second.all()
    );
    assert!(
        second
            .stderr
            .contains(&format!("destination {destination} is in use"))
            && second.stderr.contains("pid ")
            && second.stderr.contains("--wait"),
        "the refusal names the destination, the holder's pid and --wait: {}",
        second.stderr
    );
    assert!(
        second.stderr.contains(pid_holder),
        "names the holder ({pid_holder}): {}",
        second.stderr
    );
}

#[test]
fn two_runs_on_one_sqlite_destination_one_is_refused_and_data_is_exact() {
    let s = setup("sqlite", "warehouse.db");
    let lock = s.path("warehouse.db.lock");
    let mut first = s
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("first run starts");
    wait_for_holder(&mut first, &lock);
    let holder = format!("pid {}", first.id());
    let second = s.run(&["run"]);
    let first: Run = first.wait_with_output().expect("first run ends").into();
    assert_eq!(first.code, 0, "{}", first.all());
    assert_refused(
        &second,
        &holder,
        &s.path("warehouse.db").display().to_string(),
    );
    for table in ["service_history", "communication_engagement"] {
        let wh = s.warehouse();
        let mut stmt = wh
            .prepare(&format!(
                "SELECT _pk, _cursor FROM internal__{table} ORDER BY CAST(_pk AS INTEGER)"
            ))
            .expect("query");
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, source_rows(&s, table), "{table} equals the source");
    }
    // --wait queues behind the holder instead: it succeeds and has nothing left to read.
    let (first, waiting) = {
        let mut first = s
            .command(&["run", "--full-refresh"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run starts");
        wait_for_holder(&mut first, &lock);
        let waiting = s.sync(&["--wait"]);
        (first.wait_with_output().expect("ends"), waiting)
    };
    assert!(first.status.success());
    let (run, report) = waiting;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("waiting for destination"),
        "{}",
        run.stderr
    );
    assert_eq!(
        report.total(),
        0,
        "the queued run starts after the holder committed: {report:?}"
    );
}

#[test]
fn two_runs_on_one_jsonl_destination_one_is_refused_and_data_is_exact() {
    let s = setup("jsonl", "out");
    let lock = s.path("out/.lock");
    let (first, second) = second_run_is_refused(&s, &lock);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(second.code, 2, "{}", second.all());
    assert!(
        second.stderr.contains(&format!(
            "destination {} is in use",
            s.path("out").display()
        )),
        "{}",
        second.stderr
    );
    for table in ["service_history", "communication_engagement"] {
        let (rows, lines) = jsonl_rows(&s.path(&format!("out/internal__{table}.jsonl")));
        let expected = source_rows(&s, table);
        assert_eq!(
            lines,
            expected.len(),
            "{table}: every row exactly once, no duplicate lines"
        );
        assert_eq!(rows, expected, "{table} equals the source");
    }
    // And the state is complete: a rerun reads nothing.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.total(), 0, "{report:?}");
}

/// A small internal-db source block named `name`.
fn source_block(s: &Scratch, name: &str) -> String {
    format!(
        "[sources.{name}]\nplugin = \"internal-db\"\nstreams = [\"client_profiles\"]\n[sources.{name}.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 7, seed = 1 }}\n\n",
        s.path(&format!("{name}.db")).display()
    )
}

#[test]
fn sources_that_would_share_a_table_are_refused_by_validate_and_run() {
    for (a, b) in [("acme", "ACME"), ("a-b", "a_b")] {
        let s = Scratch::new();
        s.manifest(&format!(
            "{}{}{}",
            s.header(),
            source_block(&s, a),
            source_block(&s, b)
        ));
        for cmd in ["validate", "run"] {
            let run = s.run(&[cmd]);
            assert_eq!(run.code, 2, "{cmd} refuses {a}/{b}: {}", run.all());
            assert!(
                run.stderr.contains(&format!("[sources.{a}]"))
                    && run.stderr.contains(&format!("[sources.{b}]"))
                    && run.stderr.contains("same tables"),
                "{cmd} names both sources: {}",
                run.stderr
            );
        }
        assert!(!s.path("warehouse.db").exists(), "nothing written");
    }
    // A name that could make table names ambiguous is refused too.
    let s = Scratch::new();
    s.manifest(&format!("{}{}", s.header(), source_block(&s, "a__b")));
    let run = s.run(&["validate"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("[sources.a__b]"), "{}", run.stderr);
}

#[test]
fn names_that_used_to_collide_now_land_in_their_own_tables() {
    // `x` + `client_profiles` and `x_client` + `profiles` would both have been
    // `x_client_profiles`; `x__client_profiles` and `x_client__client_profiles` now.
    let s = Scratch::new();
    s.manifest(&format!(
        "{}{}{}",
        s.header(),
        source_block(&s, "x"),
        source_block(&s, "x_client").replace("clients = 7", "clients = 5")
    ));
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    assert_eq!(count(&wh, "x__client_profiles"), 7);
    assert_eq!(count(&wh, "x_client__client_profiles"), 5);
    assert_eq!(report.records("x.client_profiles"), 7);
    assert_eq!(report.records("x_client.client_profiles"), 5);
}
