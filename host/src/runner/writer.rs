//! The writer thread: the one owner of the destination. It stages what the handlers
//! queue, in arrival order, and commits every second or every `COMMIT_ROWS` rows, and
//! when a source flushes.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tributary_sdk::host::{KeyBatch, RecordBatch};

use crate::destination::Destination;

/// Batches queued between the plugins and the writer before plugins block. Small on
/// purpose: a batch can hold 10,000 records (megabytes), and memory is bounded by
/// depth × batch size; the writer is faster than any source, so depth buys nothing.
pub(super) const QUEUE_DEPTH: usize = 4;

/// Commit at least this often while data keeps arriving.
pub(super) const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// ...or after this many staged records.
pub(super) const COMMIT_ROWS: usize = 200_000;

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

pub(super) fn now_stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn writer_loop(
    mut dest: Box<dyn Destination>,
    rx: Receiver<WriterMsg>,
    failed: WriterError,
    marked: Marked,
) {
    let mut staged_rows = 0usize;
    let mut txn_started: Option<Instant> = None;
    let mut error: Option<String> = None;
    let mut extracted_at = String::new();
    // Marks staged in the open transaction; they count once it commits.
    let mut pending_marks: Vec<((String, String), u64)> = Vec::new();

    let fail = |e: String, dest: &mut Box<dyn Destination>, error: &mut Option<String>| {
        tracing::error!("destination failed: {e}");
        dest.rollback();
        *error = Some(e.clone());
        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    let committed = |pending: &mut Vec<((String, String), u64)>| {
        let mut m = marked.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in pending.drain(..) {
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
                            match dest.commit() {
                                Ok(()) => committed(&mut pending_marks),
                                Err(e) => fail(e.to_string(), &mut dest, &mut error),
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
                            SnapshotOp::Finish => dest
                                .finish_snapshot(&source, &stream, &now_stamp())
                                .map(|n| {
                                    tracing::info!(source = %source, stream, rows = n, "snapshot complete: rows not seen at the source marked deleted");
                                    pending_marks.push(((source.to_string(), stream.clone()), n));
                                }),
                        };
                        if let Err(e) = result {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Flush(source, ack) => {
                    if error.is_none() {
                        dest.seal(&source);
                        match dest.commit() {
                            Ok(()) => committed(&mut pending_marks),
                            Err(e) => fail(e.to_string(), &mut dest, &mut error),
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
                || staged_rows >= COMMIT_ROWS;
            if !due {
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
                }
            }
        }
        if txn_started.is_some() && error.is_none() {
            match dest.commit() {
                Ok(()) => committed(&mut pending_marks),
                Err(e) => fail(e.to_string(), &mut dest, &mut error),
            }
        }
        staged_rows = 0;
        txn_started = None;
    }
    if error.is_none() {
        match dest.commit() {
            Ok(()) => committed(&mut pending_marks),
            Err(e) => tracing::error!("final commit failed: {e}"),
        }
    }
}
