//! An in-memory [`HostHandler`] for connector tests.

use std::sync::Arc;

use super::handler::{HostHandler, KeyBatch, RecordBatch};
use crate::protocol::{ControlMessage, LogLevel, SnapshotEvent, StreamStatus};

/// A [`HostHandler`] that keeps everything in memory, for connector tests.
#[derive(Debug, Default)]
pub struct CollectingHandler {
    inner: std::sync::Mutex<Collected>,
}

/// What a [`CollectingHandler`] received.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Records per stream, in order: (pk, cursor, deleted, data).
    pub records: std::collections::BTreeMap<String, Vec<CollectedRecord>>,
    /// Last state per stream.
    pub state: std::collections::BTreeMap<String, serde_json::Value>,
    /// Every state checkpoint, in order.
    pub checkpoints: Vec<(String, serde_json::Value)>,
    /// Control messages, in order.
    pub control: Vec<ControlMessage>,
    /// Last status per stream.
    pub status: std::collections::BTreeMap<String, StreamStatus>,
    /// Log lines `level target: message`.
    pub logs: Vec<String>,
    /// Snapshot events per stream, in order.
    pub snapshots: std::collections::BTreeMap<String, Vec<SnapshotEvent>>,
    /// Keys sent inside snapshots, per stream, in order.
    pub keys: std::collections::BTreeMap<String, Vec<String>>,
}

impl Collected {
    /// Whether the last snapshot of `stream` was completed.
    pub fn snapshot_completed(&self, stream: &str) -> bool {
        matches!(
            self.snapshots.get(stream).and_then(|e| e.last()),
            Some(SnapshotEvent::Complete)
        )
    }
}

/// An owned record, as collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedRecord {
    /// Primary key.
    pub pk: String,
    /// Cursor.
    pub cursor: Option<String>,
    /// Deletion marker.
    pub deleted: bool,
    /// JSON text.
    pub data: String,
}

impl CollectingHandler {
    /// A new, empty handler behind an `Arc`, ready to pass as `Arc<dyn HostHandler>`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A copy of everything received so far.
    pub fn collected(&self) -> Collected {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Collected) -> T) -> T {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl HostHandler for CollectingHandler {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.with(|c| {
            let out = c.records.entry(stream.to_string()).or_default();
            out.extend(batch.iter().map(|r| CollectedRecord {
                pk: r.pk.to_string(),
                cursor: r.cursor.map(str::to_string),
                deleted: r.deleted,
                data: r.data.to_string(),
            }));
        });
        Ok(())
    }
    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(state).map_err(|e| e.to_string())?;
        self.with(|c| {
            c.state.insert(stream.to_string(), value.clone());
            c.checkpoints.push((stream.to_string(), value));
        });
        Ok(())
    }
    fn control(&self, message: ControlMessage) -> Result<(), String> {
        self.with(|c| c.control.push(message));
        Ok(())
    }
    fn stream_status(&self, stream: &str, status: StreamStatus) {
        self.with(|c| {
            c.status.insert(stream.to_string(), status);
        });
    }
    fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.with(|c| c.logs.push(format!("{level:?} {target}: {message}")));
    }
    fn log_level(&self) -> LogLevel {
        LogLevel::Debug
    }
    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        self.with(|c| {
            c.keys
                .entry(stream.to_string())
                .or_default()
                .extend(keys.iter().map(str::to_string));
        });
        Ok(())
    }
    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        self.with(|c| {
            c.snapshots
                .entry(stream.to_string())
                .or_default()
                .push(event)
        });
        Ok(())
    }
}
