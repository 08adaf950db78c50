//! The handle a connector's `read` uses to talk to the host.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use serde::Serialize;

use crate::error::{ConnectorError, Result};
use crate::ffi::{FfiRecord, HostSinkBox};
use crate::protocol::{ControlMessage, StreamStatus};
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
