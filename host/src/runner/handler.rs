//! One source's [`HostHandler`]: counts and measures what the plugin sends, applies the
//! snapshot rules of narrowed and limited reads, and queues it for the writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tributary_sdk::host::{HostHandler, KeyBatch, RecordBatch};
use tributary_sdk::usage::Usage;
use tributary_sdk::{ControlMessage, Coverage, LogLevel, SnapshotEvent, StreamStatus};

use super::writer::{SnapshotOp, WriterError, WriterMsg};
use crate::credentials::Credentials;
use crate::destination::state_key;
use crate::quality::StreamTracker;

#[derive(Default)]
pub(super) struct StreamStats {
    pub(super) records: u64,
    pub(super) deleted_records: u64,
    pub(super) started: Option<Instant>,
    pub(super) finished: Option<Instant>,
    pub(super) status: Option<StreamStatus>,
    pub(super) snapshot: Option<SnapshotUse>,
}

/// What the host does with a stream's open snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapshotUse {
    /// Passed to the destination.
    Accepted(Coverage),
    /// Dropped: a window snapshot under a narrowed window proves nothing.
    Ignored,
}

/// The progress line's head: `source  done/total streams`.
pub(super) fn streams_prefix(source: &str, done: usize, total: usize) -> String {
    format!("{source:<12} {done:>2}/{total:<2} streams")
}

/// Receives one source's output.
pub(super) struct SourceHandler {
    pub(super) source: Arc<str>,
    pub(super) tx: SyncSender<WriterMsg>,
    pub(super) failed: WriterError,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) credentials: Arc<Credentials>,
    pub(super) usage: Arc<super::UsageBook>,
    pub(super) stats: Mutex<HashMap<String, StreamStats>>,
    pub(super) total: AtomicU64,
    pub(super) progress: indicatif::ProgressBar,
    pub(super) log_level: LogLevel,
    /// `check`/`discover` calls may send control messages but no data.
    pub(super) accepts_data: bool,
    /// The read's state scope (see [`scope_of`]).
    pub(super) scope: Option<String>,
    /// The read's record limit per stream.
    pub(super) limit: Option<u64>,
    /// Streams requested, for the progress line.
    pub(super) streams: usize,
    /// Quality trackers of the streams measured. Each has its own lock: the source's
    /// streams are measured in parallel when its plugin sends them so.
    pub(super) trackers: HashMap<String, Mutex<StreamTracker>>,
}

impl SourceHandler {
    fn stop_reason(&self) -> Option<String> {
        if self.cancel.load(Ordering::Relaxed) {
            return Some("cancelled".to_string());
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| format!("destination failed: {e}"))
    }
}

impl HostHandler for SourceHandler {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        if !self.accepts_data {
            return Err("records are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let n = batch.len() as u64;
        let deleted = batch.iter().filter(|r| r.deleted).count() as u64;
        {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            let s = stats.entry(stream.to_string()).or_default();
            s.started.get_or_insert_with(Instant::now);
            s.records += n;
            s.deleted_records += deleted;
        }
        // Measured on the source's own thread, so sources validate in parallel and the
        // writer (the one serial stage) does no extra work.
        let violations = match self.trackers.get(stream) {
            Some(t) => t.lock().unwrap_or_else(|p| p.into_inner()).observe(&batch),
            None => Vec::new(),
        };
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        self.progress.set_position(total);
        self.progress.set_message(stream.to_string());
        self.tx
            .send(WriterMsg::Records {
                source: self.source.clone(),
                stream: stream.to_string(),
                batch,
                violations,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        if !self.accepts_data {
            return Err("state is not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        serde_json::from_str::<serde::de::IgnoredAny>(state)
            .map_err(|e| format!("state of {stream} is not valid JSON: {e}"))?;
        self.tx
            .send(WriterMsg::State {
                source: self.source.clone(),
                stream: state_key(stream, self.scope.as_deref()),
                state: state.to_string(),
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        if !self.accepts_data {
            return Err("keys are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let accepted = {
            let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            matches!(
                stats.get(stream).and_then(|s| s.snapshot),
                Some(SnapshotUse::Accepted(_))
            )
        };
        if !accepted {
            return Ok(());
        }
        self.tx
            .send(WriterMsg::Keys {
                source: self.source.clone(),
                stream: stream.to_string(),
                keys,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        if !self.accepts_data {
            return Err("snapshots are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let op = {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            let s = stats.entry(stream.to_string()).or_default();
            match event {
                SnapshotEvent::Begin { coverage } => {
                    if coverage == Coverage::Window && self.scope.is_some() {
                        tracing::debug!(source = %self.source, stream, "snapshot ignored: the window narrows this read, so absent rows prove nothing");
                        s.snapshot = Some(SnapshotUse::Ignored);
                        None
                    } else {
                        s.snapshot = Some(SnapshotUse::Accepted(coverage));
                        Some(SnapshotOp::Begin)
                    }
                }
                SnapshotEvent::Complete => match s.snapshot.take() {
                    Some(SnapshotUse::Accepted(Coverage::Window))
                        if self.limit.is_some_and(|l| s.records >= l) =>
                    {
                        tracing::info!(source = %self.source, stream, "snapshot not used: the record limit was reached, so the listing may be partial");
                        Some(SnapshotOp::Abandon)
                    }
                    Some(SnapshotUse::Accepted(_)) => Some(SnapshotOp::Finish),
                    _ => None,
                },
                SnapshotEvent::Abandon => match s.snapshot.take() {
                    Some(SnapshotUse::Accepted(_)) => Some(SnapshotOp::Abandon),
                    _ => None,
                },
            }
        };
        let Some(op) = op else { return Ok(()) };
        self.tx
            .send(WriterMsg::Snapshot {
                source: self.source.clone(),
                stream: stream.to_string(),
                op,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn control(&self, message: ControlMessage) -> Result<(), String> {
        match message {
            ControlMessage::ConfigUpdate { values } => {
                self.credentials
                    .update(&self.source, &values)
                    .map_err(|e| e.to_string())?;
                // Key names only: values are secrets.
                let keys: Vec<&str> = values.keys().map(String::as_str).collect();
                tracing::info!(source = %self.source, keys = %keys.join(","), "persisted updated credentials");
                Ok(())
            }
        }
    }

    fn stream_status(&self, stream: &str, status: StreamStatus) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(stream.to_string()).or_default();
        match &status {
            StreamStatus::Started => {
                s.started.get_or_insert_with(Instant::now);
            }
            StreamStatus::Complete => {
                s.finished = Some(Instant::now());
                if !self.progress.is_hidden() {
                    self.progress.set_message(format!("{stream} done"));
                } else {
                    tracing::info!(source = %self.source, stream, records = s.records, "stream complete");
                }
            }
            StreamStatus::Incomplete { error } => {
                s.finished = Some(Instant::now());
                tracing::warn!(source = %self.source, stream, "stream incomplete: {error}");
            }
        }
        s.status = Some(status);
        if !self.progress.is_hidden() {
            let done = stats.values().filter(|s| s.finished.is_some()).count();
            self.progress
                .set_prefix(streams_prefix(&self.source, done, self.streams));
        }
    }

    fn log(&self, level: LogLevel, target: &str, message: &str) {
        let source = &*self.source;
        if target == tributary_sdk::usage::TARGET {
            self.usage.add(source, Usage::parse(message));
            return;
        }
        match level {
            LogLevel::Error => tracing::error!(source, plugin_target = target, "{message}"),
            LogLevel::Warn => tracing::warn!(source, plugin_target = target, "{message}"),
            LogLevel::Info => tracing::info!(source, plugin_target = target, "{message}"),
            LogLevel::Debug => tracing::debug!(source, plugin_target = target, "{message}"),
            LogLevel::Trace => tracing::trace!(source, plugin_target = target, "{message}"),
        }
    }

    fn log_level(&self) -> LogLevel {
        self.log_level
    }

    fn is_cancelled(&self) -> bool {
        self.stop_reason().is_some()
    }
}
