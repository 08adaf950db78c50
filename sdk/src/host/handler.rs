//! What the host does with a plugin's output ([`HostHandler`]), the batches it receives,
//! and the adapter that puts a handler behind the FFI sink.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString, RVec};

use crate::error::ConnectorError;
use crate::ffi::{FfiError, FfiRecord, FfiResult, HostSink, HostSinkBox, HostSink_TO};
use crate::protocol::{ControlMessage, LogLevel, SnapshotEvent, StreamStatus};

/// A borrowed view of one record in a [`RecordBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Primary key as text.
    pub pk: &'a str,
    /// Cursor value as text, if any.
    pub cursor: Option<&'a str>,
    /// Deletion marker.
    pub deleted: bool,
    /// The record, a JSON object.
    pub data: &'a str,
}

/// A batch of records as it arrived from the plugin (no copy was made).
pub struct RecordBatch(RVec<FfiRecord>);

impl RecordBatch {
    /// A batch built on the host side (tests, tools); plugins' batches arrive ready-made.
    pub fn from_records(records: Vec<crate::Record>) -> Self {
        RecordBatch(
            records
                .into_iter()
                .map(|r| FfiRecord {
                    pk: r.pk.into(),
                    cursor: r.cursor.map(Into::into).into(),
                    deleted: r.deleted,
                    data: r.data.into(),
                })
                .collect(),
        )
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The records, in emission order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.0.iter().map(|r| RecordRef {
            pk: r.pk.as_str(),
            cursor: r.cursor.as_ref().map(|c| c.as_str()).into_option(),
            deleted: r.deleted,
            data: r.data.as_str(),
        })
    }
}

/// A batch of live keys inside a snapshot, as it arrived from the plugin.
pub struct KeyBatch(RVec<RString>);

impl KeyBatch {
    /// A batch built on the host side (tests, tools).
    pub fn from_keys(keys: Vec<String>) -> Self {
        KeyBatch(keys.into_iter().map(RString::from).collect())
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The keys, in emission order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|k| k.as_str())
    }
}

impl std::fmt::Debug for KeyBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBatch")
            .field("len", &self.len())
            .finish()
    }
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("len", &self.len())
            .finish()
    }
}

/// What the host does with a plugin's output. Implemented by the host binary.
///
/// Methods are called from the plugin's threads, possibly concurrently; a panic inside
/// one is caught and turned into an error for the plugin.
pub trait HostHandler: Send + Sync + 'static {
    /// A batch of records. May block (backpressure). `Err` tells the plugin to stop.
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String>;
    /// A state checkpoint (JSON text) covering every earlier record of `stream`.
    fn state(&self, stream: &str, state: &str) -> Result<(), String>;
    /// A control message; must be acted on (persisted) before returning.
    fn control(&self, message: ControlMessage) -> Result<(), String>;
    /// A stream status change.
    fn stream_status(&self, stream: &str, status: StreamStatus);
    /// A log event from the plugin.
    fn log(&self, level: LogLevel, target: &str, message: &str);
    /// Most verbose level to forward.
    fn log_level(&self) -> LogLevel {
        LogLevel::Info
    }
    /// Whether the plugin should stop.
    fn is_cancelled(&self) -> bool {
        false
    }
    /// Live keys of `stream` inside an open snapshot. The default ignores them (a handler
    /// that does not prove deletions).
    fn keys(&self, _stream: &str, _keys: KeyBatch) -> Result<(), String> {
        Ok(())
    }
    /// A snapshot event of `stream`, in order with its records and keys. The default
    /// ignores it.
    fn snapshot(&self, _stream: &str, _event: SnapshotEvent) -> Result<(), String> {
        Ok(())
    }
}

struct SinkAdapter(Arc<dyn HostHandler>);

fn caught<T>(f: impl FnOnce() -> Result<T, String>) -> FfiResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(message)) => RResult::RErr(FfiError {
            kind: crate::ErrorKind::System.to_u8(),
            message: message.into(),
        }),
        Err(_) => RResult::RErr(FfiError {
            kind: crate::ErrorKind::System.to_u8(),
            message: "host handler panicked".into(),
        }),
    }
}

impl HostSink for SinkAdapter {
    fn records(&self, stream: RStr<'_>, batch: RVec<FfiRecord>) -> FfiResult<()> {
        caught(|| self.0.records(stream.as_str(), RecordBatch(batch)))
    }
    fn state(&self, stream: RStr<'_>, state: RStr<'_>) -> FfiResult<()> {
        caught(|| self.0.state(stream.as_str(), state.as_str()))
    }
    fn control(&self, message: RStr<'_>) -> FfiResult<()> {
        caught(|| {
            let message: ControlMessage = serde_json::from_str(message.as_str())
                .map_err(|e| format!("control message not understood: {e}"))?;
            self.0.control(message)
        })
    }
    fn stream_status(&self, stream: RStr<'_>, status: RStr<'_>) {
        let _ = caught(|| {
            let status: StreamStatus = serde_json::from_str(status.as_str())
                .map_err(|e| format!("stream status not understood: {e}"))?;
            self.0.stream_status(stream.as_str(), status);
            Ok(())
        });
    }
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>) {
        let _ = caught(|| {
            self.0
                .log(LogLevel::from_u8(level), target.as_str(), message.as_str());
            Ok(())
        });
    }
    fn log_level(&self) -> u8 {
        self.0.log_level() as u8
    }
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    fn keys(&self, stream: RStr<'_>, keys: RVec<RString>) -> FfiResult<()> {
        caught(|| self.0.keys(stream.as_str(), KeyBatch(keys)))
    }
    fn snapshot(&self, stream: RStr<'_>, event: RStr<'_>) -> FfiResult<()> {
        caught(|| {
            let event: SnapshotEvent = serde_json::from_str(event.as_str())
                .map_err(|e| format!("snapshot event not understood: {e}"))?;
            self.0.snapshot(stream.as_str(), event)
        })
    }
}

pub(crate) fn sink(handler: Arc<dyn HostHandler>) -> HostSinkBox {
    HostSink_TO::from_value(SinkAdapter(handler), TD_Opaque)
}

pub(crate) fn json_arg<T: serde::Serialize>(v: &T) -> Result<String, ConnectorError> {
    serde_json::to_string(v).map_err(|e| ConnectorError::system(format!("cannot serialize: {e}")))
}
