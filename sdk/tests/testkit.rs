//! The conformance kit against the fixture connector of `tests/fixtures/broken-plugin`,
//! compiled into this test and run in process: a correct connector passes every check,
//! and each deliberate flaw fails the check that names it, with the reason.

#[path = "../../tests/fixtures/broken-plugin/src/connector.rs"]
mod connector;

use std::time::Duration;

use serde_json::{json, Value};
use tributary_sdk::testkit::{checks, in_process, Outcome, Report, Suite};

fn config(flaw: &str) -> Value {
    json!({"api_key": connector::API_KEY, "count": 45, "flaw": flaw})
}

fn run(flaw: &str) -> Report {
    Suite::new(in_process::<connector::Broken>(), config(flaw))
        .cancel_grace(Duration::from_secs(2))
        .run()
}

/// The check `name` failed, with a reason containing `reason`; every other check passed.
fn fails_only(report: &Report, name: &str, reason: &str) {
    let check = report
        .check(name)
        .unwrap_or_else(|| panic!("no check {name} in\n{report}"));
    assert_eq!(check.outcome, Outcome::Fail, "{report}");
    assert!(check.reason.contains(reason), "{report}");
    let others: Vec<&str> = report
        .failures()
        .map(|c| c.name)
        .filter(|n| *n != name)
        .collect();
    assert!(
        others.is_empty(),
        "unexpected failures {others:?}\n{report}"
    );
}

#[test]
fn a_correct_connector_passes_every_check() {
    let report = run("none");
    report.assert_passed();
    // Nothing was skipped: every check applied to this connector.
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skip)
        .map(|c| c.name)
        .collect();
    assert!(skipped.is_empty(), "skipped {skipped:?}\n{report}");
    assert_eq!(report.checks.len(), 15, "{report}");
}

#[test]
fn state_before_records_fails_the_ordering_check() {
    fails_only(
        &run("state_before_records"),
        checks::READ_ORDER,
        "stream `items` checkpointed before any of its records a state that runs ahead of them: resuming from checkpoint 1 lost 45 record(s)",
    );
}

#[test]
fn a_stream_without_a_key_fails_discover_and_the_key_check() {
    let report = run("missing_key");
    let discover = report.check(checks::DISCOVER_CATALOG).expect("ran");
    assert_eq!(discover.outcome, Outcome::Fail, "{report}");
    assert!(
        discover
            .reason
            .contains("stream `items` has no primary key"),
        "{report}"
    );
    let key = report.check(checks::READ_KEY).expect("ran");
    assert_eq!(key.outcome, Outcome::Fail, "{report}");
    assert!(key.reason.contains("declares no primary key"), "{report}");
}

#[test]
fn a_logged_secret_fails_the_secrets_check_without_repeating_it() {
    let report = run("printed_secret");
    fails_only(
        &report,
        checks::NO_SECRETS,
        "`api_key` appears in a log line",
    );
    let json = serde_json::to_string(&report).expect("serializes");
    assert!(!json.contains(connector::API_KEY), "{json}");
}

#[test]
fn an_ignored_cancel_fails_the_cancel_check_within_the_grace() {
    let started = std::time::Instant::now();
    let report = run("ignored_cancel");
    fails_only(&report, checks::READ_CANCEL, "after the host cancelled it");
    // The kit waited the grace, not the connector's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn wrong_credentials_must_be_refused_as_auth_or_config() {
    let report = Suite::new(in_process::<connector::Broken>(), config("none"))
        .bad_config(json!({"api_key": "another-wrong-key"}))
        .run();
    let check = report.check(checks::CHECK_REJECTS).expect("ran");
    assert_eq!(check.outcome, Outcome::Pass, "{report}");
    assert!(check.reason.contains("refused (auth)"), "{report}");
    // A config that `check` accepts is no bad config: the kit says so.
    let report = Suite::new(in_process::<connector::Broken>(), config("none"))
        .bad_config(config("none"))
        .run();
    fails_only(
        &report,
        checks::CHECK_REJECTS,
        "check accepted a config with bad credentials",
    );
}
