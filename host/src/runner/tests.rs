use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use tributary_sdk::host::{HostHandler, RecordBatch};
use tributary_sdk::{Coverage, LogLevel, SnapshotEvent, Window};

use super::handler::SourceHandler;
use super::writer::{self, SnapshotOp, WriterError, WriterMsg};
use super::*;
use crate::credentials::Credentials;

/// A handler of source `src` whose writer channel the test reads.
fn handler(scope: Option<&str>, limit: Option<u64>) -> (SourceHandler, Receiver<WriterMsg>) {
    let (tx, rx) = mpsc::sync_channel(64);
    let h = SourceHandler {
        source: Arc::from("src"),
        tx,
        failed: WriterError::default(),
        cancel: Arc::new(AtomicBool::new(false)),
        credentials: Arc::new(Credentials::new(
            std::env::temp_dir().join("tributary-unused-credentials.json"),
        )),
        usage: Arc::default(),
        stats: Mutex::new(HashMap::new()),
        total: AtomicU64::new(0),
        progress: indicatif::ProgressBar::hidden(),
        log_level: LogLevel::Warn,
        accepts_data: true,
        scope: scope.map(str::to_string),
        limit,
        streams: 0,
        trackers: HashMap::new(),
    };
    (h, rx)
}

/// Opens a snapshot of `coverage` on stream `s`, sends `records` records, completes it,
/// and returns what reached the writer.
fn snapshot_ops(
    scope: Option<&str>,
    limit: Option<u64>,
    coverage: Coverage,
    records: usize,
) -> Vec<SnapshotOp> {
    let (h, rx) = handler(scope, limit);
    h.snapshot("s", SnapshotEvent::Begin { coverage })
        .expect("begin");
    let batch = (0..records)
        .map(|i| tributary_sdk::Record::from_json(i.to_string(), "{}".to_string()))
        .collect();
    h.records("s", RecordBatch::from_records(batch))
        .expect("records");
    h.snapshot("s", SnapshotEvent::Complete).expect("complete");
    drop(h);
    rx.iter()
        .filter_map(|m| match m {
            WriterMsg::Snapshot { op, .. } => Some(op),
            _ => None,
        })
        .collect()
}

#[test]
fn window_snapshots_prove_nothing_under_a_narrowed_scope_or_a_reached_limit() {
    use SnapshotOp::{Abandon, Begin, Finish};
    // A whole read: its records are the listing.
    assert_eq!(
        snapshot_ops(None, None, Coverage::Window, 3),
        [Begin, Finish]
    );
    // Narrowed by clients or dates, whatever the connector says: never passed on.
    let clients = Some("clients=1");
    assert!(snapshot_ops(clients, None, Coverage::Window, 3).is_empty());
    let dates = Some("since=2026-01-01T00:00:00Z");
    assert!(snapshot_ops(dates, None, Coverage::Window, 3).is_empty());
    // Cut by the record limit: the listing may be partial.
    assert_eq!(
        snapshot_ops(None, Some(3), Coverage::Window, 3),
        [Begin, Abandon]
    );
    assert_eq!(
        snapshot_ops(None, Some(4), Coverage::Window, 3),
        [Begin, Finish]
    );
    // A listing the connector made without the window's filters stands.
    assert_eq!(
        snapshot_ops(dates, None, Coverage::Source, 0),
        [Begin, Finish]
    );
}

#[test]
fn scope_names_the_narrowing_and_ignores_order_and_limit() {
    let mut w = Window {
        limit: Some(10),
        ..Window::default()
    };
    assert_eq!(scope_of(&w), None, "a limit alone keeps the main position");
    w.clients = vec!["2".into(), "1".into(), "2".into()];
    assert_eq!(scope_of(&w).as_deref(), Some("clients=1,2"));
    w.clients.reverse();
    assert_eq!(
        scope_of(&w).as_deref(),
        Some("clients=1,2"),
        "order does not matter"
    );
    w.start = Some(
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc),
    );
    assert_eq!(
        scope_of(&w).as_deref(),
        Some("clients=1,2;since=2026-01-01T00:00:00Z")
    );
    assert_eq!(
        state_key("tickets", scope_of(&w).as_deref()),
        "tickets [clients=1,2;since=2026-01-01T00:00:00Z]"
    );
}

#[test]
fn usage_events_are_counted_per_source_not_logged() {
    let (h, _rx) = handler(None, None);
    for message in [" requests=1", " requests=1", " throttles=1"] {
        h.log(LogLevel::Debug, tributary_sdk::usage::TARGET, message);
    }
    h.log(LogLevel::Info, "quickbooks::client", " requests=5");
    let used = h.usage.of("src");
    assert_eq!((used.requests, used.throttles), (2, 1));
    assert_eq!(h.usage.of("other"), Default::default());
}

#[test]
fn under_watch_a_bulk_change_is_committed_and_published_in_bounded_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = crate::destination::SqliteDestination::open(&dir.path().join("w.db")).expect("db");
    let published: Arc<Mutex<Vec<usize>>> = Arc::default();
    let hooks = CommitHooks {
        sinks: Vec::new(),
        committed: Box::new({
            let published = published.clone();
            move |events| {
                if let Ok(mut p) = published.lock() {
                    p.push(events.len());
                }
            }
        }),
        client_fields: HashMap::new(),
        state: Arc::default(),
    };
    let writer = Writer::start(Box::new(dest), Some(hooks)).expect("writer");
    let source: Arc<str> = Arc::from("src");
    // 30,000 events in batches of 2,500: three transactions' worth at 10,000.
    let (batches, per_batch) = (12, 2_500);
    for b in 0..batches {
        let records = (0..per_batch)
            .map(|i| tributary_sdk::Record::from_json((b * per_batch + i).to_string(), "{}".into()))
            .collect();
        let batch = RecordBatch::from_records(records);
        let msg = WriterMsg::Records {
            source: source.clone(),
            stream: "s".into(),
            batch,
            violations: Vec::new(),
        };
        writer.tx.send(msg).expect("writer alive");
    }
    let (ack, acked) = mpsc::sync_channel(1);
    writer
        .tx
        .send(WriterMsg::Flush(source, ack))
        .expect("writer alive");
    acked.recv().expect("answer").expect("committed");
    let published = published.lock().expect("lock").clone();
    assert_eq!(published.iter().sum::<usize>(), batches * per_batch);
    // A transaction closes once it holds COMMIT_EVENTS events (at most one batch more),
    // so the bulk change reaches subscribers in at least three pieces.
    assert!(published.len() >= 3, "{published:?}");
    assert!(
        published
            .iter()
            .all(|&n| n < writer::COMMIT_EVENTS + per_batch),
        "{published:?}"
    );
    writer.finish();
}
