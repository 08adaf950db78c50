//! The conformance kit (issue 10) on real `.so` plugins: the three first-party connectors
//! pass it (internal-db on a sample SQLite database, SuperOps and QuickBooks against their
//! emulators); the broken fixture fails it with the right check and reason for each flaw;
//! and `tributary conformance` prints the table and sets the exit code.

mod common;

use std::time::Duration;

use common::{fixture_path, lib_path, target_dir, workspace, Scratch};
use serde_json::{json, Value};
use tributary_sandbox::{quickbooks, superops};
use tributary_sdk::host::{self, Plugin};
use tributary_sdk::testkit::{checks, Outcome, Report, Suite};

fn load(path: std::path::PathBuf) -> Plugin {
    common::ensure_built();
    host::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Every check ran and none failed; `expected_skips` are the checks that may not apply.
fn passes(report: &Report, expected_skips: &[&str]) {
    report.assert_passed();
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skip)
        .map(|c| c.name)
        .collect();
    assert_eq!(skipped, expected_skips, "{report}");
}

#[test]
fn internal_db_conforms_on_a_sample_sqlite_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("internal.db").display());
    let config = json!({"url": url, "page_size": 40, "sample_data": {"clients": 12, "seed": 7}});
    // SQLite has no credentials; a database that cannot exist is the bad config.
    let bad = json!({"url": format!("sqlite:{}", dir.path().join("missing/dir/x.db").display())});
    let report = Suite::new(load(lib_path("internal_db")), config)
        .bad_config(bad)
        .run();
    // The sample database holds no password, so there is no secret to look for.
    passes(&report, &[checks::NO_SECRETS]);
}

#[test]
fn superops_conforms_against_its_emulator() {
    let emu = superops::Emulator::start(superops::EmulatorConfig::default()).expect("emulator");
    let config = json!({
        "api_url": emu.url(),
        "subdomain": emu.subdomain(),
        "api_token": emu.token(),
        "requests_per_minute": 0,
        "rate_limit_wait_seconds": 0.05,
        "max_retries": 20,
    });
    let report = Suite::new(load(lib_path("superops")), config).run();
    // Tickets, the one incremental stream, checkpoints once at the end of a first read
    // (mid-scan positions are not resumable) and not at all when a limit cuts that read
    // short: there is no mid-read state to resume from.
    passes(&report, &[checks::READ_RESUME]);
}

#[test]
fn quickbooks_conforms_against_its_emulator() {
    let emu = quickbooks::Emulator::start(quickbooks::EmulatorConfig {
        counts: quickbooks::Counts {
            invoices: 120,
            customers: 12,
            ..quickbooks::Counts::invoices_only(0)
        },
        ..quickbooks::EmulatorConfig::default()
    })
    .expect("emulator");
    let mut config = emu.connector_config();
    config["page_size"] = json!(25);
    config["requests_per_minute"] = json!(0);
    config["requests_per_second"] = json!(0);
    config["backoff_initial_ms"] = json!(10);
    config["backoff_max_ms"] = json!(100);
    let report = Suite::new(load(lib_path("quickbooks")), config).run();
    passes(&report, &[]);
}

/// The broken fixture with `flaw`, through its `.so`.
fn broken(flaw: &str) -> Report {
    let config = json!({"api_key": "fixture-key-0123456789", "count": 45, "flaw": flaw});
    Suite::new(load(fixture_path("broken_plugin")), config)
        .cancel_grace(Duration::from_secs(2))
        .run()
}

/// `name` failed with a reason containing `reason`.
fn fails(report: &Report, name: &str, reason: &str) {
    let check = report
        .check(name)
        .unwrap_or_else(|| panic!("no check {name}\n{report}"));
    assert_eq!(check.outcome, Outcome::Fail, "{report}");
    assert!(check.reason.contains(reason), "{report}");
}

#[test]
fn the_fixture_without_a_flaw_conforms() {
    passes(&broken("none"), &[]);
}

#[test]
fn a_plugin_that_checkpoints_before_its_records_fails() {
    let report = broken("state_before_records");
    fails(
        &report,
        checks::READ_ORDER,
        "stream `items` checkpointed before any of its records a state that runs ahead of them: resuming from checkpoint 1 lost 45 record(s)",
    );
    assert_eq!(report.failures().count(), 1, "{report}");
}

#[test]
fn a_plugin_with_a_stream_missing_its_key_fails() {
    let report = broken("missing_key");
    fails(
        &report,
        checks::DISCOVER_CATALOG,
        "stream `items` has no primary key",
    );
    fails(
        &report,
        checks::READ_KEY,
        "stream `items` declares no primary key",
    );
}

#[test]
fn a_plugin_that_logs_its_secret_fails_without_the_report_repeating_it() {
    let report = broken("printed_secret");
    fails(
        &report,
        checks::NO_SECRETS,
        "`api_key` appears in a log line of full read",
    );
    assert_eq!(report.failures().count(), 1, "{report}");
    let json = serde_json::to_string(&report).expect("serializes");
    assert!(!json.contains("fixture-key-0123456789"), "{json}");
}

#[test]
fn a_plugin_that_ignores_cancel_fails_within_the_grace() {
    common::ensure_built();
    let started = std::time::Instant::now();
    let report = broken("ignored_cancel");
    fails(
        &report,
        checks::READ_CANCEL,
        "the read went on for more than 2 s after the host cancelled it",
    );
    assert_eq!(report.failures().count(), 1, "{report}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_plugin_that_panics_fails_the_boundary_check_and_the_kit_lives_on() {
    let report = Suite::new(load(fixture_path("panicking_plugin")), json!({})).run();
    fails(
        &report,
        checks::NO_PANIC,
        "full read: connector panicked: fixture panics in read",
    );
    fails(&report, checks::READ_COMPLETES, "failed (panic)");
    // Every check still ran and reported.
    assert_eq!(report.checks.len(), 15, "{report}");
}

/// The shipped manifest, pointed at the debug plugins and a small sandbox.
fn shipped(s: &Scratch) {
    let text = std::fs::read_to_string(workspace().join("connectors.toml")).expect("shipped");
    let text = text
        .replace(
            "plugin_dir = \"target/release\"",
            &format!("plugin_dir = \"{}\"", target_dir().display()),
        )
        .replace("clients = 200 ", "clients = 20 ");
    assert!(
        text.contains("[sandbox]"),
        "the shipped manifest starts the sandbox"
    );
    s.manifest(&text);
}

#[test]
fn the_conformance_command_prints_a_pass_table_for_a_sandbox_source() {
    let s = Scratch::new();
    shipped(&s);
    let run = s.run(&["conformance", "superops"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for check in [
        checks::SPEC_SCHEMA,
        checks::READ_ORDER,
        checks::READ_CANCEL,
        checks::NO_SECRETS,
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no row {check}:\n{}", run.stdout));
        assert!(line.contains("PASS"), "{line}");
    }
    assert!(
        run.stdout.contains(
            "source `superops` (plugin superops): 14 passed, 0 failed, 1 skipped — CONFORMS"
        ),
        "{}",
        run.stdout
    );

    let run = s.run(&["conformance", "superops", "--json", "--stream", "clients"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    assert_eq!(report["connector"], "superops");
    assert!(report["checks"].as_array().is_some_and(|c| c.len() == 15));
}

#[test]
fn the_conformance_command_fails_a_broken_plugin_with_a_fail_table_and_exit_code_1() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.leaky]\nplugin = \"broken\"\n\n[sources.leaky.config]\napi_key = \"${{LEAKY_KEY}}\"\nflaw = \"printed_secret\"\n",
        s.header()
    ));
    let run: common::Run = s
        .command(&["conformance", "leaky"])
        .env("LEAKY_KEY", "fixture-key-0123456789")
        .output()
        .expect("runs")
        .into();
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(checks::NO_SECRETS))
        .unwrap_or_else(|| panic!("no secrets row:\n{}", run.stdout));
    assert!(
        line.contains("FAIL") && line.contains("`api_key` appears in a log line"),
        "{line}"
    );
    assert!(run.stdout.contains("DOES NOT CONFORM"), "{}", run.stdout);
    assert!(
        !run.all().contains("fixture-key-0123456789"),
        "{}",
        run.all()
    );
}
