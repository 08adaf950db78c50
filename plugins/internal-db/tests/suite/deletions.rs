//! Deletions, in process and on every dialect: what the connector tells the host. The
//! host's side (marking rows) is tested end to end in `tests/tests/foundation/deletions.rs`.

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};
use tributary_internal_db::sample;
use tributary_internal_db::InternalDb;
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::{Coverage, ErrorKind, SnapshotEvent, StreamStatus, Window};

use super::common::*;
use super::scenarios::setup;

fn begin(coverage: Coverage) -> SnapshotEvent {
    SnapshotEvent::Begin { coverage }
}

/// The events of one stream.
fn of<'a>(events: &'a [Event], stream: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| match e {
            Event::Records { stream: s, .. }
            | Event::State { stream: s, .. }
            | Event::Keys { stream: s, .. }
            | Event::Snapshot { stream: s, .. } => s == stream,
        })
        .collect()
}

fn snapshot_events(events: &[&Event]) -> Vec<SnapshotEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn strings(ids: &[i64]) -> BTreeSet<String> {
    ids.iter().map(i64::to_string).collect()
}

fn reconciled_at(state: &Value) -> chrono::DateTime<Utc> {
    let text = state["reconciled_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no reconciled_at in {state}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A pass lists every id of the table in id order, in pages of at most `page_size`, after
/// the stream's records and inside a source snapshot; the checkpoint that records it
/// comes after the completion. A hard delete disappears from the next listing.
pub fn reconciliation_lists_every_live_id(url: &str) {
    setup(url);
    let stream = "service_history";
    let read = Read::new(url).streams(&[stream]).page_size(7);
    let before = Utc::now();
    let (first, events) = read.run_recorded();
    let after = Utc::now();
    let ids = block_on(table_ids(url, stream));
    assert!(ids.len() > 100, "enough rows to page");
    assert_eq!(
        first.keys[stream],
        ids.iter().map(i64::to_string).collect::<Vec<_>>()
    );

    let events = of(&events, stream);
    let start = events
        .iter()
        .position(
            |e| matches!(e, Event::Snapshot { event, .. } if *event == begin(Coverage::Source)),
        )
        .expect("a source snapshot");
    assert!(
        events[..start]
            .iter()
            .all(|e| matches!(e, Event::Records { .. } | Event::State { .. })),
        "the records come first"
    );
    let key_batches: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Keys { n, .. } => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(key_batches.len(), ids.len().div_ceil(7), "{key_batches:?}");
    assert!(key_batches.iter().all(|n| *n <= 7), "{key_batches:?}");
    let tail = &events[events.len() - 2..];
    assert!(
        matches!(
            tail[0],
            Event::Snapshot {
                event: SnapshotEvent::Complete,
                ..
            }
        ),
        "{tail:?}"
    );
    let Event::State { state, .. } = tail[1] else {
        panic!("a checkpoint after the completion: {tail:?}")
    };
    let at = reconciled_at(state);
    assert!(before <= at && at <= after, "{at} not within the run");
    // No checkpoint claims the pass before it completed.
    let claims = events
        .iter()
        .filter(|e| matches!(e, Event::State { state, .. } if state.get("reconciled_at").is_some()))
        .count();
    assert_eq!(
        claims, 1,
        "only the checkpoint after the completion records the pass"
    );
    assert_eq!(first.state[stream], *state);

    let gone = [ids[3], ids[50], ids[ids.len() - 1]];
    assert_eq!(block_on(sample::delete(url, stream, &gone)).unwrap(), 3);
    let second = read
        .clone()
        .set("reconcile_every", json!("always"))
        .state(&first.state)
        .run();
    assert!(records(&second, stream).is_empty(), "a delete is no change");
    let listed: BTreeSet<String> = second.keys[stream].iter().cloned().collect();
    assert_eq!(listed.len(), second.keys[stream].len(), "each id once");
    let expected: BTreeSet<String> = strings(&ids).difference(&strings(&gone)).cloned().collect();
    assert_eq!(listed, expected);
    assert!(second.snapshot_completed(stream));
    // The position is the saved one; only the time of the pass moved.
    assert_eq!(second.state[stream]["id"], first.state[stream]["id"]);
    assert!(reconciled_at(&second.state[stream]) >= at);
}

/// `reconcile_every` against the time of the last pass kept in the state; states from
/// before reconciliation existed load and reconcile; "never" still lets a full refresh
/// be the listing.
pub fn reconcile_interval_is_kept_in_state(url: &str) {
    setup(url);
    let read = Read::new(url);
    let first = read.run();
    for s in STREAMS {
        assert!(first.snapshot_completed(s), "{s}: first run reconciles");
        reconciled_at(&first.state[s]);
    }
    // Within the default hour: no pass, nothing emitted, state untouched.
    let (second, events) = read.clone().state(&first.state).run_recorded();
    assert!(events.is_empty(), "{events:?}");
    assert!(second.state.is_empty());

    // Two hours ago, or a state without the field (written by an older version): due.
    let mut old = first.state.clone();
    let mut legacy = first.state.clone();
    for s in STREAMS {
        old.get_mut(s).unwrap()["reconciled_at"] =
            json!((Utc::now() - Duration::hours(2)).to_rfc3339());
        legacy
            .get_mut(s)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("reconciled_at");
    }
    for state in [&old, &legacy] {
        let third = read.clone().state(state).run();
        for s in STREAMS {
            assert!(third.snapshot_completed(s), "{s}");
            assert!(reconciled_at(&third.state[s]) > Utc::now() - Duration::minutes(5));
            assert_eq!(third.state[s]["id"], first.state[s]["id"], "{s}");
        }
        assert_eq!(total(&third), 0);
    }
    let never = read.clone().set("reconcile_every", json!("never"));
    let (fourth, events) = never.clone().state(&legacy).run_recorded();
    assert!(events.is_empty(), "never: no pass ({events:?})");
    assert!(fourth.state.is_empty());

    // A full refresh is the listing itself: a window snapshot around the records, no
    // keys, then a checkpoint at the last record that records the listing.
    let (full, events) = never.full_refresh().run_recorded();
    for s in STREAMS {
        let ev = of(&events, s);
        assert!(
            matches!(ev[0], Event::Snapshot { event, .. } if *event == begin(Coverage::Window))
        );
        assert_eq!(
            snapshot_events(&ev),
            vec![begin(Coverage::Window), SnapshotEvent::Complete],
            "{s}"
        );
        assert!(!ev.iter().any(|e| matches!(e, Event::Keys { .. })), "{s}");
        let last = records(&full, s).last().cloned().unwrap();
        let state = &full.state[s];
        assert_eq!(state["id"].as_i64().unwrap().to_string(), last.pk, "{s}");
        assert_eq!(state["updated_at"].as_str(), last.cursor.as_deref(), "{s}");
        reconciled_at(state);
        assert!(matches!(ev.last(), Some(Event::State { .. })), "{s}");
    }
}

/// A configured soft-delete column turns a soft delete into a deletion record (data kept),
/// picked up incrementally, and keeps the row out of the listing. Both kinds of column:
/// a timestamp (`service_history.deleted_at`) and a boolean (`contracts.is_deleted`).
pub fn soft_deletes_are_deletion_records(url: &str) {
    setup(url);
    let read = Read::new(url)
        .streams(&["service_history", "contracts"])
        .set(
            "soft_delete",
            json!({"service_history": "deleted_at", "contracts": "is_deleted"}),
        )
        .set("reconcile_every", json!("always"));
    let first = read.run();
    for s in ["service_history", "contracts"] {
        assert!(
            records(&first, s).iter().all(|r| !r.deleted),
            "{s}: fresh data is live"
        );
        assert_eq!(first.keys[s].len(), records(&first, s).len(), "{s}");
    }
    let at = Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap();
    let soft_history = [4i64, 9, 100];
    let soft_contracts = [2i64, 5];
    assert_eq!(
        block_on(sample::soft_delete(
            url,
            "service_history",
            &soft_history,
            at
        ))
        .unwrap(),
        3
    );
    assert_eq!(
        block_on(sample::soft_delete(url, "contracts", &soft_contracts, at)).unwrap(),
        2
    );
    assert_eq!(
        block_on(sample::touch(url, "service_history", &[11], at)).unwrap(),
        1
    );

    let second = read.clone().state(&first.state).run();
    let deleted = |c: &tributary_sdk::host::Collected, s: &str| -> BTreeSet<String> {
        records(c, s)
            .into_iter()
            .filter(|r| r.deleted)
            .map(|r| r.pk)
            .collect()
    };
    assert_eq!(
        unique_pks(&second, "service_history"),
        strings(&[4, 9, 11, 100]),
        "the soft deletes and the edit, nothing else"
    );
    assert_eq!(deleted(&second, "service_history"), strings(&soft_history));
    assert_eq!(unique_pks(&second, "contracts"), strings(&soft_contracts));
    assert_eq!(deleted(&second, "contracts"), strings(&soft_contracts));
    // Data kept: the deletion record is the row as it is now.
    let was = records(&first, "service_history")
        .into_iter()
        .find(|r| r.pk == "4")
        .map(|r| data(&r))
        .unwrap();
    let now = records(&second, "service_history")
        .into_iter()
        .find(|r| r.pk == "4")
        .unwrap();
    assert_eq!(now.cursor.as_deref(), Some("2026-07-01T12:00:00.000000Z"));
    let mut now = data(&now);
    now["updated_at"] = was["updated_at"].clone();
    assert_eq!(now, was);
    // The listing leaves soft-deleted rows out (and keeps the edited one).
    for (s, soft) in [
        ("service_history", &soft_history[..]),
        ("contracts", &soft_contracts[..]),
    ] {
        let listed: BTreeSet<String> = second.keys[s].iter().cloned().collect();
        let all = strings(&block_on(table_ids(url, s)));
        let live: BTreeSet<String> = all.difference(&strings(soft)).cloned().collect();
        assert_eq!(listed, live, "{s}");
    }

    // Without the setting the column means nothing: the rows are ordinary records.
    let plain = Read::new(url)
        .streams(&["service_history", "contracts"])
        .full_refresh()
        .run();
    for s in ["service_history", "contracts"] {
        assert!(deleted(&plain, s).is_empty(), "{s}");
    }

    // A configured column the table lacks: a config error naming it, for that stream only.
    let config = json!({"url": url, "soft_delete": {"satisfaction_scores": "removed_at"}});
    let e = InProcess::<InternalDb>::check(&config, CollectingHandler::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(
        e.message
            .contains("satisfaction_scores (with soft-delete column removed_at)"),
        "{e}"
    );
    let (result, c) = Read {
        config,
        ..Read::new(url).streams(&["satisfaction_scores", "contracts"])
    }
    .try_run();
    // The read's error names the one failed stream; the other completed.
    let e = result.unwrap_err();
    assert!(e.message.starts_with("stream satisfaction_scores:"), "{e}");
    assert!(matches!(
        c.status.get("satisfaction_scores"),
        Some(StreamStatus::Incomplete { error }) if error.kind == ErrorKind::Config
    ));
    assert_eq!(c.status.get("contracts"), Some(&StreamStatus::Complete));
}

/// Narrowed and limited reads: a client filter never reconciles, not even a full refresh;
/// a date window's pass lists the whole table (so nothing outside the window looks
/// deleted); a read cut short by the limit abandons its listing and records no pass.
pub fn narrowed_and_limited_reads(url: &str) {
    setup(url);
    let always = Read::new(url).set("reconcile_every", json!("always"));
    let client = Window {
        clients: vec!["3".into()],
        ..Window::default()
    };
    for read in [always.clone(), always.clone().full_refresh()] {
        let (c, events) = read.window(client.clone()).run_recorded();
        assert!(total(&c) > 0);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Snapshot { .. } | Event::Keys { .. })),
            "a client filter lists nothing: {:?}",
            events.iter().find(|e| matches!(e, Event::Snapshot { .. }))
        );
        assert!(c.state.values().all(|s| s.get("reconciled_at").is_none()));
    }

    let dates = Window {
        start: Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()),
        end: Some(Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap()),
        ..Window::default()
    };
    for read in [always.clone(), always.clone().full_refresh()] {
        let c = read.window(dates.clone()).run();
        for s in STREAMS {
            let all = block_on(table_ids(url, s));
            assert!(records(&c, s).len() < all.len(), "{s}: the window narrows");
            assert_eq!(
                c.keys[s],
                all.iter().map(i64::to_string).collect::<Vec<_>>(),
                "{s}"
            );
            assert_eq!(
                c.snapshots[s],
                vec![begin(Coverage::Source), SnapshotEvent::Complete],
                "{s}"
            );
        }
    }

    let limit = Window {
        limit: Some(5),
        ..Window::default()
    };
    let (c, _) = always
        .clone()
        .full_refresh()
        .window(limit.clone())
        .run_recorded();
    for s in STREAMS {
        assert_eq!(records(&c, s).len(), 5);
        assert_eq!(
            c.snapshots[s],
            vec![begin(Coverage::Window), SnapshotEvent::Abandon],
            "{s}"
        );
        assert!(c.state[s].get("reconciled_at").is_none(), "{s}");
    }
    let (c, events) = always.window(limit).run_recorded();
    assert!(!events.iter().any(|e| matches!(e, Event::Snapshot { .. })));
    assert!(c.state.values().all(|s| s.get("reconciled_at").is_none()));
}
