//! The writer thread: the one owner of the destination. It stages what the handlers
//! queue, in arrival order, and commits every second, every `COMMIT_ROWS` rows (under
//! `watch`, every `COMMIT_EVENTS` change events), and when a source flushes.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tributary_sdk::host::{KeyBatch, RecordBatch};

use crate::destination::{Destination, MarkedRow, StateMap};
use crate::events::{ChangeEvent, CommitSink, Op};

/// Batches queued between the plugins and the writer before plugins block. Small on
/// purpose: a batch can hold 10,000 records (megabytes), and memory is bounded by
/// depth × batch size; the writer is faster than any source, so depth buys nothing.
pub(super) const QUEUE_DEPTH: usize = 4;

/// Commit at least this often while data keeps arriving.
pub(super) const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// ...or after this many staged records.
pub(super) const COMMIT_ROWS: usize = 200_000;

/// ...or, under `watch`, once the open transaction holds this many change events: they
/// are kept in memory until the commit publishes them, so this bounds that memory (about
/// 7 MB of typical records) and lets subscribers start on a bulk change while the rest
/// of it is still being written.
pub(super) const COMMIT_EVENTS: usize = 10_000;

pub(super) enum WriterMsg {
    Records {
        source: Arc<str>,
        stream: String,
        batch: RecordBatch,
        /// Records that broke the stream's schema: (index, JSON array of messages).
        violations: Vec<(usize, String)>,
    },
    State {
        source: Arc<str>,
        stream: String,
        state: String,
    },
    /// Live keys of an open snapshot.
    Keys {
        source: Arc<str>,
        stream: String,
        keys: KeyBatch,
    },
    /// A snapshot opens, closes (marking the unseen rows deleted) or is given up.
    Snapshot {
        source: Arc<str>,
        stream: String,
        op: SnapshotOp,
    },
    /// `source` is done: commit everything staged, then answer.
    Flush(Arc<str>, SyncSender<Result<(), String>>),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum SnapshotOp {
    Begin,
    Finish,
    Abandon,
}

/// The writer's failure, shared with every handler so plugins stop early.
pub(super) type WriterError = Arc<Mutex<Option<String>>>;

/// Rows marked deleted by completed snapshots, per (source, stream), counted once
/// committed.
pub(super) type Marked = Arc<Mutex<HashMap<(String, String), u64>>>;

/// What `watch` hangs on the writer: where committed changes go.
pub struct CommitHooks {
    /// Sinks that must acknowledge a transaction's events before it commits; one that
    /// fails rolls the transaction back and stops the writer, like a destination failure.
    pub sinks: Vec<Box<dyn CommitSink>>,
    /// Gets each committed transaction's events, in order, after the commit.
    pub committed: Box<dyn FnMut(Vec<ChangeEvent>) + Send>,
    /// The client field of each (source, stream), as a dotted path (`CustomerRef.value`).
    pub client_fields: HashMap<(String, String), String>,
    /// The state as committed, kept current: the next cycle of a source reads from it.
    pub state: Arc<Mutex<StateMap>>,
}

impl CommitHooks {
    /// The events of one batch.
    fn events(&self, source: &Arc<str>, stream: &str, batch: &RecordBatch) -> Vec<ChangeEvent> {
        let stream_name: Arc<str> = Arc::from(stream);
        let client_field = self
            .client_fields
            .get(&(source.to_string(), stream.to_string()));
        batch
            .iter()
            .filter_map(|r| {
                let record = RawValue::from_string(r.data.to_string()).ok()?;
                let client = client_field.and_then(|path| client_of(r.data, path));
                Some(ChangeEvent {
                    seq: 0,
                    source: source.clone(),
                    stream: stream_name.clone(),
                    op: if r.deleted { Op::Delete } else { Op::Upsert },
                    pk: r.pk.to_string(),
                    cursor: r.cursor.map(str::to_string),
                    client,
                    record,
                })
            })
            .collect()
    }
}

impl CommitHooks {
    /// The delete event of a row a completed snapshot marked deleted.
    fn deletion(&self, source: &Arc<str>, stream: &str, row: MarkedRow) -> Option<ChangeEvent> {
        let record = RawValue::from_string(row.data).ok()?;
        let client = self
            .client_fields
            .get(&(source.to_string(), stream.to_string()))
            .and_then(|path| client_of(record.get(), path));
        Some(ChangeEvent {
            seq: 0,
            source: source.clone(),
            stream: Arc::from(stream),
            op: Op::Delete,
            pk: row.pk,
            cursor: row.cursor,
            client,
            record,
        })
    }
}

/// The value at a dotted `path` of a JSON object, as text (numbers and strings alike).
fn client_of(json: &str, path: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let found = path.split('.').try_fold(&value, |v, key| v.get(key))?;
    match found {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn now_stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn writer_loop(
    mut dest: Box<dyn Destination>,
    rx: Receiver<WriterMsg>,
    failed: WriterError,
    marked: Marked,
    mut hooks: Option<CommitHooks>,
) {
    let mut staged_rows = 0usize;
    let mut txn_started: Option<Instant> = None;
    let mut error: Option<String> = None;
    let mut extracted_at = String::new();
    // Marks staged in the open transaction; they count once it commits.
    let mut pending_marks: Vec<((String, String), u64)> = Vec::new();
    // With hooks: the open transaction's events and states.
    let mut pending = Pending::default();

    let fail = |e: String, dest: &mut Box<dyn Destination>, error: &mut Option<String>| {
        tracing::error!("destination failed: {e}");
        // Whatever was staged is gone with the transaction.
        dest.rollback();
        *error = Some(e.clone());
        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    let committed = |marks: &mut Vec<((String, String), u64)>| {
        let mut m = marked.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in marks.drain(..) {
            *m.entry(k).or_default() += n;
        }
    };

    loop {
        // Block for the first message; then drain what is queued before committing, so
        // many small checkpoints share one fsync.
        let first = match txn_started {
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
            Some(t) => {
                let left = COMMIT_EVERY.saturating_sub(t.elapsed());
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if error.is_none() {
                            match commit(&mut dest, hooks.as_mut(), &mut pending) {
                                Ok(()) => committed(&mut pending_marks),
                                Err(e) => fail(e, &mut dest, &mut error),
                            }
                        }
                        staged_rows = 0;
                        txn_started = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Records {
                    source,
                    stream,
                    batch,
                    violations,
                } => {
                    if error.is_none() {
                        extracted_at.clear();
                        extracted_at.push_str(&now_stamp());
                        staged_rows += batch.len();
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) =
                            dest.write_flagged(&source, &stream, &batch, &violations, &extracted_at)
                        {
                            fail(e.to_string(), &mut dest, &mut error);
                        } else if let Some(hooks) = &hooks {
                            pending
                                .events
                                .extend(hooks.events(&source, &stream, &batch));
                        }
                    }
                }
                WriterMsg::State {
                    source,
                    stream,
                    state,
                } => {
                    if error.is_none() {
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) = dest.stage_state(&source, &stream, &state) {
                            fail(e.to_string(), &mut dest, &mut error);
                        } else if hooks.is_some() {
                            pending.states.push((source.to_string(), stream, state));
                        }
                    }
                }
                WriterMsg::Keys {
                    source,
                    stream,
                    keys,
                } => {
                    if error.is_none() {
                        staged_rows += keys.len();
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) = dest.snapshot_keys(&source, &stream, &keys) {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Snapshot { source, stream, op } => {
                    if error.is_none() {
                        txn_started.get_or_insert_with(Instant::now);
                        let result = match op {
                            SnapshotOp::Begin => dest.begin_snapshot(&source, &stream),
                            SnapshotOp::Abandon => {
                                dest.abandon_snapshot(&source, &stream);
                                Ok(())
                            }
                            SnapshotOp::Finish => {
                                // Under `watch`, the marked rows become delete events
                                // of this transaction, like the connector's own deletes.
                                let mut deletions = Vec::new();
                                let noticed_at = now_stamp();
                                let mut list = |row| {
                                    if let Some(h) = &hooks {
                                        deletions.extend(h.deletion(&source, &stream, row));
                                    }
                                };
                                let marked = hooks
                                    .is_some()
                                    .then_some(&mut list as &mut dyn FnMut(MarkedRow));
                                let result =
                                    dest.finish_snapshot(&source, &stream, &noticed_at, marked);
                                result.map(|n| {
                                    tracing::info!(source = %source, stream, rows = n, "snapshot complete: rows not seen at the source marked deleted");
                                    pending_marks.push(((source.to_string(), stream.clone()), n));
                                    pending.events.append(&mut deletions);
                                })
                            }
                        };
                        if let Err(e) = result {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Flush(source, ack) => {
                    if error.is_none() {
                        dest.seal(&source);
                        match commit(&mut dest, hooks.as_mut(), &mut pending) {
                            Ok(()) => committed(&mut pending_marks),
                            Err(e) => fail(e, &mut dest, &mut error),
                        }
                    }
                    staged_rows = 0;
                    txn_started = None;
                    let _ = ack.send(match &error {
                        None => Ok(()),
                        Some(e) => Err(e.clone()),
                    });
                }
            }
            let due = txn_started.is_some_and(|t| t.elapsed() >= COMMIT_EVERY)
                || staged_rows >= COMMIT_ROWS
                || pending.events.len() >= COMMIT_EVENTS;
            if !due {
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
                }
            }
        }
        if txn_started.is_some() && error.is_none() {
            match commit(&mut dest, hooks.as_mut(), &mut pending) {
                Ok(()) => committed(&mut pending_marks),
                Err(e) => fail(e, &mut dest, &mut error),
            }
        }
        staged_rows = 0;
        txn_started = None;
    }
    if error.is_none() {
        match commit(&mut dest, hooks.as_mut(), &mut pending) {
            Ok(()) => committed(&mut pending_marks),
            Err(e) => {
                dest.rollback();
                tracing::error!("final commit failed: {e}");
            }
        }
    }
}

/// The open transaction's events and states, for the hooks.
#[derive(Default)]
struct Pending {
    events: Vec<ChangeEvent>,
    states: Vec<(String, String, String)>,
}

/// Commits the open transaction: sinks acknowledge its events first (so state never
/// moves past an event they have not accepted), then the destination commits, then the
/// committed state and the events go to the hooks.
fn commit(
    dest: &mut Box<dyn Destination>,
    hooks: Option<&mut CommitHooks>,
    pending: &mut Pending,
) -> Result<(), String> {
    let Some(hooks) = hooks else {
        return dest.commit().map_err(|e| e.to_string());
    };
    let events = std::mem::take(&mut pending.events);
    let states = std::mem::take(&mut pending.states);
    if !events.is_empty() {
        for sink in &mut hooks.sinks {
            sink.publish(&events)
                .map_err(|e| format!("sink {}: {e}", sink.name()))?;
        }
    }
    dest.commit().map_err(|e| e.to_string())?;
    {
        let mut committed = hooks.state.lock().unwrap_or_else(|p| p.into_inner());
        for (source, stream, state) in states {
            match serde_json::from_str(&state) {
                Ok(value) => {
                    committed.entry(source).or_default().insert(stream, value);
                }
                Err(e) => tracing::error!(source, stream, "committed state is not JSON: {e}"),
            }
        }
    }
    if !events.is_empty() {
        (hooks.committed)(events);
    }
    Ok(())
}
