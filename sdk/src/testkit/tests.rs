//! Unit tests of the checks on hand-made recordings.

use serde_json::json;

use super::checks::{self, ordering, resume};
use super::recorder::{Event, SeenRecord};
use super::report::Outcome;
use super::secrets::{with_wrong_secrets, Secrets};

fn rec(pk: &str, cursor: &str) -> SeenRecord {
    SeenRecord {
        pk: pk.into(),
        cursor: Some(cursor.into()),
        deleted: false,
        data: format!("{{\"id\":\"{pk}\"}}"),
    }
}

fn records(stream: &str, list: Vec<SeenRecord>) -> Event {
    Event::Records {
        stream: stream.into(),
        records: list,
    }
}

fn state(stream: &str, state: serde_json::Value) -> Event {
    Event::State {
        stream: stream.into(),
        state: state.to_string(),
    }
}

#[test]
fn a_checkpoint_naming_a_cursor_not_yet_sent_runs_ahead() {
    let events = vec![
        records("s", vec![rec("1", "2026-01-01T00:00:00Z")]),
        state("s", json!({"since": "2026-01-03T00:00:00Z"})),
        records(
            "s",
            vec![
                rec("2", "2026-01-02T00:00:00Z"),
                rec("3", "2026-01-03T00:00:00Z"),
            ],
        ),
    ];
    let full = std::collections::BTreeMap::new();
    let result = ordering::state_after_records(&events, &full, &[], Ok(&full));
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert!(result
        .reason
        .contains("checkpointed cursor `2026-01-03T00:00:00Z`"));
}

#[test]
fn checkpoints_after_their_records_pass_even_when_the_next_batch_repeats_a_cursor() {
    let events = vec![
        records("s", vec![rec("1", "5"), rec("2", "7")]),
        state("s", json!({"cursor": 7, "other": "sync started"})),
        records("s", vec![rec("3", "7"), rec("4", "9")]),
        state("s", json!({"cursor": 9})),
        state("empty", json!({"cursor": 0})),
    ];
    let full = std::collections::BTreeMap::new();
    let result = ordering::state_after_records(&events, &full, &[], Ok(&full));
    assert_eq!(result.outcome, Outcome::Pass, "{result:?}");
}

#[test]
fn a_checkpoint_before_records_passes_only_if_resuming_from_it_loses_nothing() {
    let events = vec![
        state("s", json!({"through": "2026-01-01"})),
        records(
            "s",
            vec![
                rec("1", "2026-01-02T00:00:00Z"),
                rec("2", "2026-01-03T00:00:00Z"),
            ],
        ),
        state("s", json!({"through": "2026-01-03"})),
    ];
    let full = [("s".to_string(), vec![rec("1", "a"), rec("2", "b")])].into();
    let early = ordering::earliest_checkpoints(&events, &["s".to_string()]);
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].number, 1);
    assert!(early[0].sent_before.is_empty());
    // Resuming from the first checkpoint delivers both records: an empty range was covered.
    let result = ordering::state_after_records(&events, &full, &early, Ok(&full));
    assert_eq!(result.outcome, Outcome::Pass, "{result:?}");
    // Resuming delivers only one: the checkpoint ran ahead of the other.
    let partial = [("s".to_string(), vec![rec("2", "b")])].into();
    let result = ordering::state_after_records(&events, &full, &early, Ok(&partial));
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(
        result.reason,
        "stream `s` checkpointed before any of its records a state that runs ahead of them: resuming from checkpoint 1 lost 1 record(s), first `1`"
    );
}

#[test]
fn resume_reports_gaps_and_duplicates_by_stream() {
    let full = vec![rec("1", "1"), rec("2", "2"), rec("3", "3"), rec("4", "4")];
    let before = vec![rec("1", "1"), rec("2", "2")];
    let after = vec![rec("2", "2"), rec("4", "4")];
    let result = resume::no_gap_no_duplicate(&[resume::ResumedStream {
        stream: "s",
        full: &full,
        before: &before,
        after: &after,
    }]);
    assert_eq!(result.outcome, Outcome::Fail);
    assert!(
        result
            .reason
            .contains("1 record(s) of the full read missing after resuming (a gap), first `3`"),
        "{}",
        result.reason
    );
    assert!(
        result
            .reason
            .contains("1 record(s) sent again after resuming (a duplicate), first `2`"),
        "{}",
        result.reason
    );
}

#[test]
fn secrets_come_from_every_spelling_and_from_url_passwords() {
    let spec = json!({"properties": {
        "token": {"type": "string", "secret": true},
        "key": {"type": "string", "writeOnly": true},
        "legacy": {"type": "string", "airbyte_secret": true},
        "pin": {"type": "string", "secret": true},
        "url": {"type": "string"},
        "name": {"type": "string"}
    }});
    let config = json!({"token": "tok-123456", "key": "key-123456", "legacy": "leg-123456",
                        "pin": "123", "url": "postgres://me:pa55word@127.0.0.1/db", "name": "acme-corp"});
    let secrets = Secrets::of(&spec, &config);
    let names: Vec<&str> = secrets.names().collect();
    assert_eq!(names, ["key", "legacy", "token", "url (password)"]);
    assert_eq!(
        secrets.found_in("user pa55word here"),
        Some("url (password)")
    );
    assert_eq!(secrets.redact("a tok-123456 b"), "a <secret> b");
    assert_eq!(secrets.found_in("acme-corp"), None);

    let wrong = with_wrong_secrets(&spec, &config).expect("has secrets");
    assert_eq!(wrong["token"], "conformance-wrong-token");
    assert_eq!(wrong["name"], "acme-corp");
    assert!(with_wrong_secrets(&json!({"properties": {}}), &config).is_none());
}

#[test]
fn the_secrets_check_names_the_field_and_place_never_the_value() {
    let spec = json!({"properties": {"token": {"type": "string", "secret": true}}});
    let secrets = Secrets::of(&spec, &json!({"token": "tok-123456"}));
    let output = checks::leaks::CallOutput {
        call: "full read".into(),
        events: vec![
            state("s", json!({"auth": "tok-123456"})),
            Event::Control(crate::ControlMessage::ConfigUpdate {
                values: [("token".to_string(), "tok-123456".to_string())].into(),
            }),
        ],
        returned: None,
    };
    let result = checks::leaks::not_in_output(&secrets, &[output]);
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(
        result.reason,
        "`token` appears in the state of `s` of full read"
    );
}
