//! A [`HostHandler`] that keeps every message of one call in arrival order, because most
//! invariants are about order (a checkpoint after the records it covers), and that can
//! play a host which cancels the read once the first records arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value;

use crate::host::{HostHandler, KeyBatch, RecordBatch};
use crate::protocol::{ControlMessage, LogLevel, SnapshotEvent, StreamStatus};

/// One record as it crossed the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRecord {
    /// Primary key text.
    pub pk: String,
    /// Cursor text.
    pub cursor: Option<String>,
    /// Deletion marker.
    pub deleted: bool,
    /// The record's JSON text.
    pub data: String,
}

/// One message from the connector, in the order the host received it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A record batch.
    Records {
        /// Stream.
        stream: String,
        /// The batch.
        records: Vec<SeenRecord>,
    },
    /// A state checkpoint, as JSON text.
    State {
        /// Stream.
        stream: String,
        /// The state text.
        state: String,
    },
    /// A control message.
    Control(ControlMessage),
    /// A stream status.
    Status {
        /// Stream.
        stream: String,
        /// The status.
        status: StreamStatus,
    },
    /// A log line.
    Log {
        /// Level.
        level: LogLevel,
        /// `target: message`.
        text: String,
    },
    /// Live keys inside a snapshot.
    Keys {
        /// Stream.
        stream: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// A snapshot event.
    Snapshot {
        /// Stream.
        stream: String,
        /// The event.
        event: SnapshotEvent,
    },
}

/// What the suite does with a CONTROL message before acknowledging it (the host persists
/// rotated secrets; a test may ignore them).
pub type ControlHook = Arc<dyn Fn(&ControlMessage) -> Result<(), String> + Send + Sync>;

/// Records one call. With [`Recorder::cancelling`] it asks the connector to stop as soon
/// as a record arrives, and from then on refuses records, as the real host does.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    cancel_on_first_record: bool,
    cancelled: AtomicBool,
    cancelled_at: Mutex<Option<Instant>>,
    on_control: Option<ControlHook>,
    ignore_control: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("cancel_on_first_record", &self.cancel_on_first_record)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder that accepts everything, acting on CONTROL messages with `on_control`.
    pub fn new(on_control: Option<ControlHook>) -> Arc<Self> {
        Arc::new(Recorder {
            on_control,
            ..Self::default()
        })
    }

    /// A recorder for a call whose CONTROL messages are not the source's (a check with
    /// bad credentials): acknowledged and recorded, never acted on.
    pub fn ignoring_control() -> Arc<Self> {
        Arc::new(Recorder {
            ignore_control: true,
            ..Self::default()
        })
    }

    /// Whether the config updates this recorder saw belong to the source.
    pub fn adopts_control(&self) -> bool {
        !self.ignore_control
    }

    /// A recorder that also cancels the read when its first record batch arrives.
    pub fn cancelling(on_control: Option<ControlHook>) -> Arc<Self> {
        Arc::new(Recorder {
            on_control,
            cancel_on_first_record: true,
            ..Self::default()
        })
    }

    /// Everything received so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When the recorder asked the connector to stop, if it did.
    pub fn cancelled_at(&self) -> Option<Instant> {
        *self
            .cancelled_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}

impl HostHandler for Recorder {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err("cancelled".to_string());
        }
        self.push(Event::Records {
            stream: stream.to_string(),
            records: batch
                .iter()
                .map(|r| SeenRecord {
                    pk: r.pk.to_string(),
                    cursor: r.cursor.map(str::to_string),
                    deleted: r.deleted,
                    data: r.data.to_string(),
                })
                .collect(),
        });
        if self.cancel_on_first_record && !self.cancelled.swap(true, Ordering::SeqCst) {
            *self
                .cancelled_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        Ok(())
    }

    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        serde_json::from_str::<Value>(state).map_err(|e| format!("state is not JSON: {e}"))?;
        self.push(Event::State {
            stream: stream.to_string(),
            state: state.to_string(),
        });
        Ok(())
    }

    fn control(&self, message: ControlMessage) -> Result<(), String> {
        if let Some(hook) = &self.on_control {
            hook(&message)?;
        }
        self.push(Event::Control(message));
        Ok(())
    }

    fn stream_status(&self, stream: &str, status: StreamStatus) {
        self.push(Event::Status {
            stream: stream.to_string(),
            status,
        });
    }

    fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.push(Event::Log {
            level,
            text: format!("{target}: {message}"),
        });
    }

    fn log_level(&self) -> LogLevel {
        // Secrets hide in debug lines as easily as in errors; debug is what a user turns
        // on to troubleshoot (trace would add the HTTP stack's chatter, not the connector's).
        LogLevel::Debug
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        self.push(Event::Keys {
            stream: stream.to_string(),
            keys: keys.iter().map(str::to_string).collect(),
        });
        Ok(())
    }

    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        self.push(Event::Snapshot {
            stream: stream.to_string(),
            event,
        });
        Ok(())
    }
}
