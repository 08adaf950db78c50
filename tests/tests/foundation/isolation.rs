//! `isolation = "process"`: a plugin that segfaults, aborts, hangs or allocates without
//! bound fails its own source only; a library that crashes while loading is never loaded
//! in the host and fails its own source only; a healthy plugin gives the same warehouse
//! as in process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tributary_internal_db::sample::SampleSpec;

use crate::common::{fixture_path, Report, Run, Scratch};
use crate::deletions::Source;

/// Longest any of these runs may take (the slowest waits out a 2 s call timeout).
const RUN_BOUND: Duration = Duration::from_secs(120);

/// A crashing source `wreck` in its own process, and a healthy in-process internal-db
/// source `internal` beside it.
fn manifest_with_wreck(s: &Scratch, mode: &str, limits: &str) -> String {
    format!(
        "{}[sources.wreck]\nplugin = \"crashing\"\nplugin_path = \"{}\"\nisolation = \"process\"\n{limits}\n[sources.wreck.config]\nmode = \"{mode}\"\n\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"contracts\", \"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 5, seed = 1 }}\n",
        s.header(),
        fixture_path("crashing_plugin").display(),
        s.path("internal.db").display()
    )
}

/// `run --report` with a bound on its duration: a host that hangs fails the test instead
/// of stalling the suite.
fn sync_bounded(s: &Scratch) -> (Run, Report) {
    let report = s.path("report.json");
    let run = run_bounded(
        s,
        &["run", "--report", report.to_str().expect("utf-8 path")],
        &[],
    );
    (run, Report::read(&report))
}

/// `tributary <args>` with `env`, bounded like [`sync_bounded`].
fn run_bounded(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Run {
    let child = s
        .command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(RUN_BOUND) {
        Ok(output) => output.expect("tributary runs"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("tributary {args:?} did not finish within {RUN_BOUND:?}");
        }
    };
    output.into()
}

/// The healthy source finished, its rows and state are committed, and the run says which
/// source failed and why.
fn assert_only_the_wreck_failed(s: &Scratch, run: &Run, report: &Report, cause: &str) {
    assert_ne!(run.code, 0, "a failed source makes the exit code non-zero");
    assert_eq!(report.status("wreck.wreck"), "incomplete", "{}", run.all());
    let all = run.all();
    let line = all
        .lines()
        .find(|l| l.contains("sync failed") && l.contains("wreck"))
        .unwrap_or_else(|| panic!("no failure line naming the source: {all}"));
    assert!(line.contains(cause), "expected `{cause}` in: {line}");
    let wh = s.warehouse();
    for stream in ["contracts", "service_history"] {
        let key = format!("internal.{stream}");
        assert_eq!(report.status(&key), "complete", "{all}");
        assert!(report.records(&key) > 0);
        let rows: i64 = wh
            .query_row(
                &format!("SELECT count(*) FROM internal__{stream}"),
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(rows as u64, report.records(&key), "{stream} committed");
        let states: i64 = wh
            .query_row(
                "SELECT count(*) FROM _tributary_state WHERE source = 'internal' AND stream = ?1",
                [stream],
                |r| r.get(0),
            )
            .expect("state");
        assert_eq!(states, 1, "{stream}: state committed");
    }
}

#[test]
fn a_segfault_or_abort_in_a_plugin_process_fails_its_source_only() {
    for (mode, cause) in [
        ("segfault", "killed by SIGSEGV (segmentation fault)"),
        ("abort", "killed by SIGABRT"),
    ] {
        let s = Scratch::new();
        s.manifest(&manifest_with_wreck(&s, mode, ""));
        let (run, report) = sync_bounded(&s);
        assert_only_the_wreck_failed(&s, &run, &report, cause);
    }
}

#[test]
fn a_hung_plugin_is_stopped_by_the_call_timeout() {
    let s = Scratch::new();
    s.manifest(&manifest_with_wreck(&s, "hang", "call_timeout_secs = 2"));
    let (run, report) = sync_bounded(&s);
    assert_only_the_wreck_failed(&s, &run, &report, "no answer for 2s (call_timeout_secs)");
}

#[test]
fn a_memory_blow_up_is_stopped_by_the_limit() {
    let s = Scratch::new();
    s.manifest(&manifest_with_wreck(
        &s,
        "allocate",
        "memory_limit_mb = 256",
    ));
    let (run, report) = sync_bounded(&s);
    assert_only_the_wreck_failed(
        &s,
        &run,
        &report,
        "exceeded its memory limit of 256 MB (memory_limit_mb)",
    );
    // Named by the plugin process itself (its exit code), not guessed from the
    // allocator's stderr line: its own last words are in the log.
    assert!(
        run.all()
            .contains("an allocation failed under the memory limit (RLIMIT_AS)"),
        "{}",
        run.all()
    );
}

/// The variable the load-crash fixture reads in its load-time code.
const LOAD_CRASH: &str = "TRIBUTARY_TEST_LOAD_CRASH";

/// A source `vendor` of the load-crash fixture with `isolation`, found by name in the
/// plugin directory beside the real plugins, and a healthy in-process internal-db source
/// `internal`.
fn manifest_with_vendor(s: &Scratch, isolation: &str) -> String {
    format!(
        "{}[sources.vendor]\nplugin = \"load-crash\"\nisolation = \"{isolation}\"\n\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"contracts\", \"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 5, seed = 1 }}\n",
        s.header(),
        s.path("internal.db").display()
    )
}

#[test]
fn a_library_that_crashes_while_loading_fails_its_isolated_source_only() {
    let s = Scratch::new();
    s.manifest(&manifest_with_vendor(&s, "process"));
    let crash = [(LOAD_CRASH, "segfault")];
    let report_path = s.path("report.json");
    let run = run_bounded(
        &s,
        &["run", "--report", report_path.to_str().expect("utf-8 path")],
        &crash,
    );
    let report = Report::read(&report_path);
    let all = run.all();
    assert_ne!(run.code, 0, "a failed source makes the exit code non-zero");
    assert_eq!(report.status("vendor.*"), "incomplete", "{all}");
    let line = all
        .lines()
        .find(|l| l.contains("discover failed") && l.contains("vendor"))
        .unwrap_or_else(|| panic!("no failure line naming the source: {all}"));
    for cause in [
        "plugin `load-crash` is unavailable",
        "libtributary_test_load_crash_plugin.so",
        "killed by SIGSEGV (segmentation fault)",
        "while loading",
    ] {
        assert!(line.contains(cause), "expected `{cause}` in: {line}");
    }
    for stream in ["contracts", "service_history"] {
        let key = format!("internal.{stream}");
        assert_eq!(report.status(&key), "complete", "{all}");
        assert!(report.records(&key) > 0, "{all}");
    }

    // `plugins` lists it as refused, with the cause, and lists the others.
    let listed = run_bounded(&s, &["plugins"], &crash);
    assert_eq!(listed.code, 0, "{}", listed.all());
    assert!(listed.stdout.contains("internal-db"), "{}", listed.stdout);
    let refused = listed
        .stdout
        .lines()
        .find(|l| l.contains("libtributary_test_load_crash_plugin.so"))
        .unwrap_or_else(|| panic!("the library is not listed: {}", listed.stdout));
    assert!(refused.contains("no:"), "{refused}");
    assert!(listed.stdout.contains("SIGSEGV"), "{}", listed.stdout);

    // `spec` of the source names the cause instead of crashing the host.
    let spec = run_bounded(&s, &["spec", "vendor"], &crash);
    assert_eq!(spec.code, 1, "{}", spec.all());
    assert!(spec.stderr.contains("killed by SIGSEGV"), "{}", spec.all());
}

#[test]
fn an_isolated_source_is_described_checked_and_discovered_without_loading_it_in_the_host() {
    // The fixture aborts while loading unless its process is a plugin process.
    let abort_in_host = [(LOAD_CRASH, "abort-in-host")];
    let s = Scratch::new();
    s.manifest(&manifest_with_vendor(&s, "process"));
    for args in [
        &["spec", "vendor"][..],
        &["spec", "load-crash"],
        &["plugins"],
        &["check", "vendor"],
        &["discover", "vendor"],
        &["validate"],
    ] {
        let run = run_bounded(&s, args, &abort_in_host);
        assert_eq!(run.code, 0, "tributary {args:?}: {}", run.all());
        if args[0] == "spec" {
            assert!(run.stdout.contains("fixture_marker"), "{}", run.stdout);
        }
    }
    let listed = run_bounded(&s, &["plugins"], &abort_in_host);
    let row = listed
        .stdout
        .lines()
        .find(|l| l.contains("libtributary_test_load_crash_plugin.so"))
        .unwrap_or_else(|| panic!("the library is not listed: {}", listed.stdout));
    assert!(row.contains("load-crash") && row.contains("yes"), "{row}");

    // The proof holds: the same source in process takes the host down while loading.
    s.manifest(&manifest_with_vendor(&s, "in-process"));
    let run = run_bounded(&s, &["spec", "vendor"], &abort_in_host);
    assert_ne!(run.code, 0, "loaded in the host, it aborts: {}", run.all());
    assert!(!run.stdout.contains("fixture_marker"), "{}", run.stdout);
}

#[test]
fn a_cancel_reaches_the_plugin_process() {
    let s = Scratch::new();
    s.manifest(&manifest_with_wreck(&s, "wait", ""));
    let mut child = s
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tributary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let pid = child.id().to_string();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("waiting to be cancelled"))
    {
        match lines.recv_timeout(RUN_BOUND) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("the plugin never started waiting: {seen:?}");
            }
        }
    }
    // SIGTERM to the host alone (not its process group): only the host can tell the
    // plugin process.
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done.recv_timeout(RUN_BOUND) {
        Ok(output) => output.expect("tributary runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the run did not stop after the signal");
        }
    };
    let stopped_in = sent.elapsed();
    reader.join().expect("stderr reader");
    seen.extend(lines.try_iter());
    let all = seen.join("\n");
    // Well inside the 30 s a cancelled plugin process gets before it is killed: the
    // plugin itself saw the cancel.
    assert!(
        stopped_in < Duration::from_secs(15),
        "{stopped_in:?}: {all}"
    );
    assert_eq!(output.status.code(), Some(1), "{all}");
    let line = all
        .lines()
        .find(|l| l.contains("sync failed") && l.contains("wreck"))
        .unwrap_or_else(|| panic!("no failure line: {all}"));
    assert!(line.contains("cancelled by the host"), "{line}");
}

#[test]
fn limits_without_process_isolation_are_refused() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nmemory_limit_mb = 512\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
        s.header(),
        s.path("internal.db").display()
    ));
    let run = s.run(&["validate"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("memory_limit_mb") && run.stderr.contains("isolation = \"process\""),
        "{}",
        run.all()
    );
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nisolation = \"sandboxed\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
        s.header(),
        s.path("internal.db").display()
    ));
    let run = s.run(&["validate"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("isolation"), "{}", run.all());
}

/// An internal-db source `ops` on `url`, reconciling every run (snapshots and keys), in
/// small pages so records, keys and checkpoints cross in many frames.
fn internal_manifest(s: &Scratch, url: &str, isolation: &str) -> String {
    format!(
        "{}[sources.ops]\nplugin = \"internal-db\"\nisolation = \"{isolation}\"\n[sources.ops.config]\nurl = \"{url}\"\npage_size = 7\nreconcile_every = \"always\"\nsoft_delete = {{ service_history = \"deleted_at\", contracts = \"is_deleted\" }}\n",
        s.header()
    )
}

/// Every warehouse row (without `_extracted_at`) and every state, the time of the last
/// reconciliation pass reduced to whether there is one.
fn warehouse_contents(s: &Scratch) -> BTreeMap<String, Vec<String>> {
    let wh = s.warehouse();
    let mut tables: Vec<String> = wh
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ops__%'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .map(|t| t.expect("name"))
        .collect();
    tables.sort();
    let mut out = BTreeMap::new();
    for table in tables {
        let rows = wh
            .prepare(&format!(
                "SELECT _pk, _deleted, coalesce(_cursor, ''), data FROM \"{table}\" ORDER BY _pk"
            ))
            .expect("rows")
            .query_map([], |r| {
                Ok(format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?
                ))
            })
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        out.insert(table, rows);
    }
    let states = wh
        .prepare("SELECT stream, state FROM _tributary_state WHERE source = 'ops' ORDER BY stream")
        .expect("state")
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("state")
        .map(|r| {
            let (stream, state) = r.expect("state row");
            let mut state: serde_json::Value = serde_json::from_str(&state).expect("json");
            if let Some(at) = state.get_mut("reconciled_at") {
                *at = serde_json::Value::Bool(!at.is_null());
            }
            format!("{stream} {state}")
        })
        .collect();
    out.insert("_tributary_state".to_string(), states);
    out
}

#[test]
fn internal_db_in_a_plugin_process_writes_exactly_what_it_writes_in_process() {
    let origin = Scratch::new();
    let src = Source::sqlite(&origin);
    src.generate(&SampleSpec::with_clients(10, 21));
    let (inside, outside) = (Scratch::new(), Scratch::new());
    inside.manifest(&internal_manifest(&inside, &src.url, "in-process"));
    outside.manifest(&internal_manifest(&outside, &src.url, "process"));

    let sync_both = || {
        let (a, ra) = inside.sync(&[]);
        let (b, rb) = outside.sync(&[]);
        assert!(ra.all_complete(), "{}", a.all());
        assert!(rb.all_complete(), "{}", b.all());
        assert_eq!(ra.streams, rb.streams, "same records per stream");
        assert_eq!(ra.deleted, rb.deleted, "same deletions per stream");
        assert_eq!(warehouse_contents(&inside), warehouse_contents(&outside));
        rb
    };
    let first = sync_both();
    assert!(first.total() > 0);

    // Hard deletes (found by the snapshot's keys), soft deletes (deletion records) and
    // edits, then a resumed run from the committed state.
    let ids = src.ids("contracts");
    src.delete("contracts", &ids[..3]);
    src.soft_delete("contracts", &ids[3..5]);
    let history = src.ids("service_history");
    src.delete("service_history", &history[..2]);
    src.touch("service_history", &history[2..6]);
    let second = sync_both();
    assert!(second.deleted("ops.contracts") >= 3, "{second:?}");
    assert!(second.deleted("ops.service_history") >= 2, "{second:?}");
    assert_eq!(
        second.records("ops.service_history"),
        4,
        "only the edits are read again"
    );
}
