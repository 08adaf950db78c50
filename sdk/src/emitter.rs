//! The handle a connector's `read` uses to talk to the host.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use serde::Serialize;

use crate::error::{ConnectorError, Result};
use crate::ffi::{FfiRecord, HostSinkBox};
use crate::protocol::{ControlMessage, Coverage, SnapshotEvent, StreamStatus};
use crate::record::Record;

/// Sends records, state checkpoints, stream statuses and control messages to the host.
///
/// Cheap to clone and `Send + Sync`, so concurrent tasks can share it. Every method is
/// synchronous and may block while the host's queue is full (that is the backpressure);
/// inside the plugin's multi-threaded runtime this is done with `block_in_place`, so other
/// tasks keep running.
///
/// Ordering is the contract: a checkpoint covers exactly the records emitted on the same
/// stream before it, and the host commits it only after those records are durable.
#[derive(Clone)]
pub struct Emitter {
    sink: Arc<HostSinkBox>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").finish_non_exhaustive()
    }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Emitter {
    pub(crate) fn new(sink: Arc<HostSinkBox>) -> Self {
        Emitter { sink }
    }

    /// Emits a batch of records of `stream`. Batches of a few hundred to a few thousand
    /// records are the sweet spot; the call is one boundary crossing per batch.
    ///
    /// Fails when the host will take no more (cancelled, or the destination failed).
    pub fn records(&self, stream: &str, batch: Vec<Record>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch: RVec<FfiRecord> = batch
            .into_iter()
            .map(|r| FfiRecord {
                pk: r.pk.into(),
                cursor: match r.cursor {
                    Some(c) => ROption::RSome(c.into()),
                    None => ROption::RNone,
                },
                deleted: r.deleted,
                data: r.data.into(),
            })
            .collect();
        blocking(|| self.sink.records(stream.into(), batch))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// Checkpoints `stream`: `state` is what the next incremental `read` gets back in
    /// [`crate::ReadRequest::state`]. Only checkpoint positions you can resume from exactly.
    pub fn checkpoint<S: Serialize + ?Sized>(&self, stream: &str, state: &S) -> Result<()> {
        let json = serde_json::to_string(state)
            .map_err(|e| ConnectorError::system(format!("state does not serialize: {e}")))?;
        blocking(|| self.sink.state(stream.into(), json.as_str().into()))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// Sends a control message and waits until the host has persisted it.
    pub fn control(&self, message: &ControlMessage) -> Result<()> {
        let json = serde_json::to_string(message).map_err(|e| {
            ConnectorError::system(format!("control message does not serialize: {e}"))
        })?;
        blocking(|| self.sink.control(json.as_str().into()))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// Reports a stream's status.
    pub fn stream_status(&self, stream: &str, status: &StreamStatus) {
        if let Ok(json) = serde_json::to_string(status) {
            self.sink.stream_status(stream.into(), json.as_str().into());
        }
    }

    /// Shorthand for [`StreamStatus::Started`].
    pub fn stream_started(&self, stream: &str) {
        self.stream_status(stream, &StreamStatus::Started);
    }

    /// Shorthand for [`StreamStatus::Complete`].
    pub fn stream_complete(&self, stream: &str) {
        self.stream_status(stream, &StreamStatus::Complete);
    }

    /// Shorthand for [`StreamStatus::Incomplete`].
    pub fn stream_incomplete(&self, stream: &str, error: &ConnectorError) {
        self.stream_status(
            stream,
            &StreamStatus::Incomplete {
                error: error.clone(),
            },
        );
    }

    /// Opens a snapshot of `stream`: a listing of every object that is live at the source,
    /// from which the host proves deletions. Until [`Snapshot::complete`], every record
    /// emitted on `stream` and every key sent with [`Snapshot::keys`] counts as seen; on
    /// completion the host marks every row of the stream in the destination that was not
    /// seen as `_deleted`, in the same transaction as what came before it (send the
    /// stream's checkpoint after `complete`). A snapshot that is dropped without
    /// `complete` (error, limit, cancel) concludes nothing.
    ///
    /// Use [`Coverage::Window`] when the records of an ordinary read are the listing
    /// (full-refresh streams); the host then honours it only for reads whose window
    /// does not narrow the stream. Use [`Coverage::Source`] for a key listing made
    /// without the window's filters (a reconciliation pass).
    pub fn snapshot(&self, stream: &str, coverage: Coverage) -> Result<Snapshot> {
        self.snapshot_event(stream, &SnapshotEvent::Begin { coverage })?;
        Ok(Snapshot {
            out: self.clone(),
            stream: stream.to_string(),
            open: true,
        })
    }

    fn snapshot_event(&self, stream: &str, event: &SnapshotEvent) -> Result<()> {
        let json = serde_json::to_string(event).map_err(|e| {
            ConnectorError::system(format!("snapshot event does not serialize: {e}"))
        })?;
        blocking(|| self.sink.snapshot(stream.into(), json.as_str().into()))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// Whether the host asked the connector to stop; poll it between pages.
    pub fn is_cancelled(&self) -> bool {
        self.sink.is_cancelled()
    }

    /// `Err(cancelled)` when the host asked the connector to stop.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(ConnectorError::cancelled())
        } else {
            Ok(())
        }
    }
}

/// An open snapshot of one stream (see [`Emitter::snapshot`]). Dropping it without
/// [`Snapshot::complete`] abandons it.
#[derive(Debug)]
pub struct Snapshot {
    out: Emitter,
    stream: String,
    open: bool,
}

impl Snapshot {
    /// The stream this snapshot lists.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Sends a batch of live primary keys (as [`crate::Record::pk`] would spell them).
    /// Keys cross in batches like records; a few thousand per call is right.
    pub fn keys(&self, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: RVec<RString> = keys.into_iter().map(RString::from).collect();
        blocking(|| self.out.sink.keys(self.stream.as_str().into(), keys))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// Declares the listing complete: every unseen row of the stream is deleted.
    pub fn complete(mut self) -> Result<()> {
        self.open = false;
        self.out
            .snapshot_event(&self.stream, &SnapshotEvent::Complete)
    }

    /// Gives the snapshot up explicitly (the same as dropping it).
    pub fn abandon(mut self) {
        self.open = false;
        let _ = self
            .out
            .snapshot_event(&self.stream, &SnapshotEvent::Abandon);
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .out
                .snapshot_event(&self.stream, &SnapshotEvent::Abandon);
        }
    }
}
