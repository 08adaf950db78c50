//! The messages of the Tributary protocol, as plain serde types.
//!
//! Everything here crosses the plugin boundary as JSON, so adding an optional field is a
//! compatible change; removing or renaming one is not.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConnectorError;

/// Version of the JSON protocol carried inside the ABI. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a connector says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// Short machine name, e.g. `internal-db`; what `plugin = "..."` refers to in the manifest.
    pub name: String,
    /// The connector's own version.
    pub version: String,
    /// One sentence for `tributary plugins`.
    pub description: String,
    /// SDK version the plugin was built with (filled in by the SDK).
    #[serde(default)]
    pub sdk_version: String,
    /// Protocol version the plugin speaks (filled in by the SDK).
    #[serde(default)]
    pub protocol_version: u32,
}

impl ConnectorInfo {
    /// Info for a connector; the SDK fills in its own versions.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        ConnectorInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            sdk_version: crate::SDK_VERSION.to_string(),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// How a stream can be (or is asked to be) synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read everything every time.
    FullRefresh,
    /// Continue from the saved state.
    Incremental,
}

/// One stream in a connector's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDescriptor {
    /// Stream name, unique within the connector (`[a-z0-9_]+`).
    pub name: String,
    /// JSON Schema of one record.
    pub json_schema: Value,
    /// Field names forming the primary key, outermost first (a path per key part).
    pub primary_key: Vec<String>,
    /// Field the connector uses as its incremental cursor, if any.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Modes the stream supports.
    pub sync_modes: Vec<SyncMode>,
    /// The field a client filter (`--client`, `[sources.x] clients`) matches; absent when
    /// the filter does not narrow this stream (it is then read whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_field: Option<String>,
    /// The field the date window (`start`/`end`) applies to; absent when the window does
    /// not narrow this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_field: Option<String>,
}

impl StreamDescriptor {
    /// A stream read whole each time (no cursor).
    pub fn full_refresh(name: &str, json_schema: Value, primary_key: &[&str]) -> Self {
        StreamDescriptor {
            name: name.to_string(),
            json_schema,
            primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
            cursor_field: None,
            sync_modes: vec![SyncMode::FullRefresh],
            client_field: None,
            window_field: None,
        }
    }

    /// A stream read incrementally by `cursor` (and whole on a full refresh).
    pub fn incremental(name: &str, json_schema: Value, primary_key: &[&str], cursor: &str) -> Self {
        StreamDescriptor {
            cursor_field: Some(cursor.to_string()),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
            window_field: Some(cursor.to_string()),
            ..StreamDescriptor::full_refresh(name, json_schema, primary_key)
        }
    }

    /// The field a client filter matches (see [`StreamDescriptor::client_field`]).
    pub fn client_field(mut self, field: &str) -> Self {
        self.client_field = Some(field.to_string());
        self
    }

    /// The field the date window applies to, when it is not the cursor (see
    /// [`StreamDescriptor::window_field`]); `None` when the window does not apply.
    pub fn window_field(mut self, field: Option<&str>) -> Self {
        self.window_field = field.map(str::to_string);
        self
    }
}

impl Catalog {
    /// The stream names, comma-separated, for messages.
    pub fn stream_names(&self) -> String {
        self.streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What `discover` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every stream the connector can read.
    pub streams: Vec<StreamDescriptor>,
}

impl From<Vec<StreamDescriptor>> for Catalog {
    fn from(streams: Vec<StreamDescriptor>) -> Self {
        Catalog { streams }
    }
}

/// A stream the host asks to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredStream {
    /// Stream name, from the catalog.
    pub name: String,
    /// How to read it this time.
    pub sync_mode: SyncMode,
}

/// The streams selected for one `read`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredCatalog {
    /// Selected streams, in the order the manifest lists them.
    pub streams: Vec<ConfiguredStream>,
}

/// Bounds the manifest or the command line put on a read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Only records whose cursor (or business date, as the connector documents) is at or
    /// after this instant.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// Only records strictly before this instant.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// At most this many records per stream in this run.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only records of these clients (ids in the source's own id space); empty = all.
    #[serde(default)]
    pub clients: Vec<String>,
}

impl Window {
    /// Whether the read is restricted to some clients.
    pub fn has_client_filter(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Where a read by instant begins: the later of `position` (a saved cursor, RFC 3339
    /// in UTC, empty for none) and the window's start, as RFC 3339 in UTC to the second.
    /// Compared as text, so `position` must use the same format.
    pub fn since(&self, position: &str) -> String {
        let start = self
            .start
            .map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        match start {
            Some(start) if start.as_str() > position => start,
            _ => position.to_string(),
        }
    }

    /// Whether the read is restricted to a date range.
    pub fn has_dates(&self) -> bool {
        self.start.is_some() || self.end.is_some()
    }

    /// Whether the window leaves rows of a stream out (clients or dates). A limit does not
    /// count: it stops a read early at an exact position, which the connector reports by
    /// not completing its snapshot.
    pub fn narrows(&self) -> bool {
        self.has_client_filter() || self.has_dates()
    }
}

/// Everything a `read` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The source's `config` table from the manifest (secrets resolved).
    pub config: Value,
    /// Streams to read.
    pub catalog: ConfiguredCatalog,
    /// Last committed state per stream; absent for a first or full-refresh read.
    #[serde(default)]
    pub state: BTreeMap<String, Value>,
    /// Date range, limit and client filter.
    #[serde(default)]
    pub window: Window,
}

impl ReadRequest {
    /// The committed state of `stream`, deserialized; `None` when there is none.
    pub fn state_of<T: serde::de::DeserializeOwned>(
        &self,
        stream: &str,
    ) -> Result<Option<T>, ConnectorError> {
        match self.state.get(stream) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                ConnectorError::config(format!(
                    "saved state of stream {stream} is not understood ({e}); reset it with `tributary state reset`"
                ))
            }),
        }
    }
}

/// What a snapshot claims to have listed. See [`crate::Emitter::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// The records (and keys) emitted are every live object of the stream **within this
    /// read's window**. It proves deletions only when the window does not narrow the
    /// stream: the host ignores such a snapshot under a client filter or a date range,
    /// and when the stream's record limit was reached.
    Window,
    /// Every live key of the stream at the source, listed without the window's client and
    /// date filters. The host accepts it whatever the window (rows outside the window are
    /// still listed, so they never look deleted).
    Source,
}

/// A snapshot's lifecycle, as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SnapshotEvent {
    /// From here on every record and key of the stream counts as seen.
    Begin {
        /// What the snapshot will list.
        coverage: Coverage,
    },
    /// The listing finished: every destination row of the stream that was not seen is
    /// deleted at the source.
    Complete,
    /// The listing stopped early (error, limit, cancel): nothing may be concluded.
    Abandon,
}

/// Lifecycle of one stream during a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StreamStatus {
    /// The connector began reading the stream.
    Started,
    /// Every record of the stream (within the window) was emitted.
    Complete,
    /// The stream stopped early; what was checkpointed before stays committed.
    Incomplete {
        /// Why.
        error: ConnectorError,
    },
}

/// Out-of-band messages from connector to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// New values for config keys (a rotated refresh token, say). The host persists them
    /// atomically in the credentials store before the call returns and merges them over
    /// the manifest's `config` on later runs.
    ConfigUpdate {
        /// Top-level config keys and their new values.
        values: BTreeMap<String, String>,
    },
}

/// Severity of a forwarded log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum LogLevel {
    /// Something failed.
    Error = 1,
    /// Something odd that did not fail.
    Warn = 2,
    /// Progress worth a line.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

impl LogLevel {
    /// From the wire representation; unknown values mean `Trace`.
    pub fn from_u8(v: u8) -> LogLevel {
        match v {
            0 | 1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}
