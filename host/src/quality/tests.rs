use chrono::{DateTime, Utc};
use serde_json::json;
use tributary_sdk::host::RecordBatch;
use tributary_sdk::Record;

use super::tracker::cursor_time;
use super::*;
use crate::manifest::{QualitySection, StreamQualitySection};

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "email": {"type": ["string", "null"]},
        }
    })
}

fn rec(pk: &str, cursor: &str, data: serde_json::Value) -> Record {
    Record::from_json(pk, data.to_string()).with_cursor(cursor)
}

fn now() -> DateTime<Utc> {
    cursor_time("2026-01-10T00:00:00Z").expect("instant")
}

#[test]
fn tracker_counts_completeness_violations_duplicates_and_freshness() {
    let mut t = StreamTracker::new(Some(&schema()), None).expect("schema compiles");
    let batch = RecordBatch::from_records(vec![
        rec(
            "1",
            "2026-01-01T00:00:00Z",
            json!({"id": 1, "name": "a", "email": "x@y"}),
        ),
        // Gaps: email null, name empty.
        rec(
            "2",
            "2026-01-02T00:00:00Z",
            json!({"id": 2, "name": "", "email": null}),
        ),
        // A violation: text where the schema says integer.
        rec(
            "3",
            "2026-01-03T00:00:00-08:00",
            json!({"id": "three", "name": "c"}),
        ),
        // The same key again.
        rec(
            "1",
            "2026-01-02T12:00:00Z",
            json!({"id": 1, "name": "a", "email": "x@y"}),
        ),
        Record::from_json("2", "{}".to_string()).with_deleted(true),
    ]);
    let flags = t.observe(&batch);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].0, 2, "the third record is flagged");
    let messages: serde_json::Value = serde_json::from_str(&flags[0].1).expect("JSON array");
    assert_eq!(messages[0]["path"], "/id", "{messages}");

    let q = t.report("src", "s", now());
    assert_eq!(q.records, 4, "deletion markers are not measured");
    assert_eq!(q.deleted, 1);
    assert_eq!(q.violations, 1);
    assert_eq!(q.violation_samples[0].pk, "3");
    assert_eq!(q.violation_samples[0].path, "/id");
    assert_eq!(
        q.duplicates,
        Some(2),
        "key 1 twice, key 2 deleted after upsert"
    );
    assert_eq!(q.cursor_regressions, None, "no watermark: not measured");
    // id 4/4, name 3/4, email 2/4.
    assert_eq!(q.fields["id"], 1.0);
    assert_eq!(q.fields["name"], 0.75);
    assert_eq!(q.fields["email"], 0.5);
    assert_eq!(q.completeness, Some(9.0 / 12.0));
    // -08:00 makes the third record the newest instant (2026-01-03T08:00Z).
    assert_eq!(
        q.newest_cursor.as_deref(),
        Some("2026-01-03T00:00:00-08:00")
    );
    assert_eq!(q.freshness_seconds, Some(6 * 86_400 + 16 * 3600));
}

#[test]
fn records_older_than_the_watermark_are_regressions() {
    let mut t = StreamTracker::new(None, Some("2026-01-05T00:00:00.000000Z")).expect("tracker");
    t.observe(&RecordBatch::from_records(vec![
        rec("1", "2026-01-06T00:00:00Z", json!({})),
        rec("2", "2026-01-04T23:59:59Z", json!({})),
        // The same instant as the watermark is no regression (a re-read of the last row).
        rec("3", "2026-01-05T00:00:00Z", json!({})),
    ]));
    let q = t.report("src", "s", now());
    assert_eq!(q.cursor_regressions, Some(1));
    assert_eq!(q.violations, 0, "no schema: nothing to break");
}

#[test]
fn freshness_counts_the_warehouse_when_nothing_new_arrives() {
    let t = StreamTracker::new(None, Some("2026-01-09")).expect("tracker");
    let q = t.report("src", "s", now());
    assert_eq!(q.records, 0);
    assert_eq!(q.completeness, None);
    assert_eq!(q.freshness_seconds, Some(86_400));
}

#[test]
fn a_record_that_is_not_json_is_flagged_not_dropped() {
    let mut t = StreamTracker::new(Some(&schema()), None).expect("tracker");
    let flags = t.observe(&RecordBatch::from_records(vec![Record::from_json(
        "1",
        "{not json".to_string(),
    )]));
    assert_eq!(flags.len(), 1);
    assert_eq!(t.report("s", "s", now()).violations, 1);
}

fn stream(name: &str, completeness: f64, fields: &[(&str, f64)], violations: u64) -> StreamQuality {
    StreamQuality {
        source: "internal".into(),
        stream: name.into(),
        records: 10,
        completeness: Some(completeness),
        fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        violations,
        violation_samples: vec![ViolationSample {
            pk: "7".into(),
            path: "/employee_count".into(),
            message: "\"many\" is not of type \"integer\"".into(),
        }],
        duplicates: Some(0),
        ..StreamQuality::default()
    }
}

#[test]
fn breaches_name_stream_and_field_and_overrides_win() {
    let report = QualityReport {
        streams: vec![
            stream(
                "client_profiles",
                0.9,
                &[("id", 1.0), ("superops_account_id", 0.5)],
                0,
            ),
            stream("contracts", 1.0, &[("id", 1.0)], 2),
        ],
        ..QualityReport::default()
    };
    let mut limits = QualitySection {
        min_completeness: Some(0.95),
        max_violations: Some(0),
        ..QualitySection::default()
    };
    let found = breaches(&limits, &report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].stream, "internal.client_profiles");
    assert_eq!(found[0].field.as_deref(), Some("superops_account_id"));
    assert_eq!(found[1].stream, "internal.contracts");
    assert_eq!(found[1].field.as_deref(), Some("employee_count"));
    assert!(
        found[1]
            .to_string()
            .contains("2 record(s) break the schema"),
        "{}",
        found[1]
    );

    limits.streams.insert(
        "internal.client_profiles".into(),
        StreamQualitySection {
            min_completeness: Some(0.8),
            fields: [
                ("id".to_string(), 1.0),
                ("superops_account_id".to_string(), 0.6),
            ]
            .into_iter()
            .collect(),
            ..StreamQualitySection::default()
        },
    );
    let found = breaches(&limits, &report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].limit, "fields");
    assert_eq!(found[0].field.as_deref(), Some("superops_account_id"));
}

#[test]
fn no_limits_no_breaches() {
    let report = QualityReport {
        streams: vec![stream("s", 0.1, &[("a", 0.1)], 99)],
        ..QualityReport::default()
    };
    assert!(breaches(&QualitySection::default(), &report).is_empty());
}
