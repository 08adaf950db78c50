//! The Tributary SDK: write a connector as one plain Rust trait, export it with one macro,
//! and the host loads it as a dynamic plugin.
//!
//! # Overview
//!
//! - [`Connector`] is what an author implements: `info`, `spec`, `check`, `discover`,
//!   `read`. Config, state and records are serde types; no FFI type ever appears.
//! - [`export_connector!`] turns the type into a `cdylib` the host can load. It builds the
//!   stable root module (an `abi_stable` prefix type, so later SDK minor versions append
//!   entry points without breaking old plugins), gives the plugin its own tokio runtime,
//!   catches every panic at the boundary (reported as [`ErrorKind::Panic`]) and forwards
//!   the plugin's `tracing` events to the host.
//! - [`Emitter`] is how `read` talks back: record batches, state checkpoints, stream
//!   statuses, control messages (rotated secrets), snapshots of live keys (from which
//!   the host proves deletions), and the cancel flag.
//! - [`ConnectorError`] carries an [`ErrorKind`] (Config, Auth, RateLimited, Transient,
//!   Data, System, Panic); the host and [`toolkit`] decide on retries from it.
//! - [`host`] is the other side, used by the `tributary` binary to load and call plugins.
//! - `config_spec` (feature `schema`) derives `spec` from the config type with `schemars`,
//!   so docs, defaults and validation cannot drift from what serde reads.
//! - `testkit` (feature `testkit`) checks a connector against the invariants every
//!   connector must keep, from `cargo test` or `tributary conformance`.
//!
//! # A complete connector
//!
//! ```
//! use serde::Deserialize;
//! use serde_json::{json, Value};
//! use tributary_sdk::{
//!     Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ReadRequest, Record,
//!     StreamDescriptor, SyncMode,
//! };
//!
//! /// Emits `count` numbers on one stream, resuming after the last one checkpointed.
//! #[derive(Default)]
//! struct Counter;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     count: u64,
//! }
//!
//! impl Connector for Counter {
//!     fn info(&self) -> ConnectorInfo {
//!         ConnectorInfo::new("counter", env!("CARGO_PKG_VERSION"), "Counts up")
//!     }
//!
//!     fn spec(&self) -> Value {
//!         json!({"type": "object", "required": ["count"],
//!                "properties": {"count": {"type": "integer", "minimum": 0}}})
//!     }
//!
//!     async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
//!         tributary_sdk::parse_config::<Config>(config).map(|_| ())
//!     }
//!
//!     async fn discover(&self, _config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
//!         Ok(Catalog {
//!             streams: vec![StreamDescriptor::incremental(
//!                 "numbers",
//!                 json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
//!                 &["n"],
//!                 "n",
//!             )],
//!         })
//!     }
//!
//!     async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
//!         let config: Config = tributary_sdk::parse_config(request.config.clone())?;
//!         let mut next: u64 = request.state_of::<u64>("numbers")?.map_or(0, |n| n + 1);
//!         out.stream_started("numbers");
//!         while next < config.count {
//!             out.check_cancelled()?;
//!             let end = (next + 1000).min(config.count);
//!             let batch = (next..end)
//!                 .map(|n| Record::from_json(n.to_string(), format!("{{\"n\":{n}}}"))
//!                     .with_cursor(n.to_string()))
//!                 .collect();
//!             out.records("numbers", batch)?;
//!             out.checkpoint("numbers", &(end - 1))?;
//!             next = end;
//!         }
//!         out.stream_complete("numbers");
//!         Ok(())
//!     }
//! }
//!
//! // In the plugin crate (crate-type = ["cdylib"]):
//! tributary_sdk::export_connector!(Counter);
//! # fn main() {}
//! ```
//!
//! See `docs/authoring.md` in the repository for the full guide.
#![deny(missing_docs)]

mod emitter;
mod error;
#[doc(hidden)]
pub mod export;
#[doc(hidden)]
pub mod ffi;
pub mod host;
mod logging;
mod protocol;
mod record;
#[cfg(feature = "schema")]
mod spec;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod toolkit;
pub mod usage;

use std::future::Future;

pub use emitter::{Emitter, Snapshot};
pub use error::{ConnectorError, ErrorKind, Result};
pub use protocol::{
    Catalog, ConfiguredCatalog, ConfiguredStream, ConnectorInfo, ControlMessage, Coverage,
    LogLevel, ReadRequest, SnapshotEvent, StreamDescriptor, StreamStatus, SyncMode, Window,
    PROTOCOL_VERSION,
};
pub use record::{cursor_instant, Record};
#[cfg(feature = "schema")]
pub use spec::{config_spec, spec_drift};

/// The SDK version compiled into this crate; plugins and host must share its major
/// version (and, while it is 0.x, the plugin's minor version must be at least the host's).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A source connector.
///
/// The SDK creates a fresh value with `Default` for every call, so keep any state you need
/// across calls in the config or the emitted state, not in `self`. All async methods run
/// on the plugin's own multi-threaded tokio runtime; the host calls them from a dedicated
/// thread and waits.
///
/// Returning `Err` from `read` marks every stream that has not reported
/// [`StreamStatus::Complete`] as incomplete. To fail one stream and go on with others,
/// report [`Emitter::stream_incomplete`] for it and continue.
pub trait Connector: Default + Send + Sync + 'static {
    /// Name, version and description. Must not fail or block.
    fn info(&self) -> ConnectorInfo;

    /// JSON Schema of the `config` table this connector accepts.
    fn spec(&self) -> serde_json::Value;

    /// Verifies that `config` is valid and that the source is reachable and accepts the
    /// credentials. Errors should be classified ([`ErrorKind::Config`] for bad settings,
    /// [`ErrorKind::Auth`] for rejected credentials).
    ///
    /// `out` is there for [`Emitter::control`] (a token refreshed during the check must be
    /// persisted like any other); the host ignores records sent from `check`.
    fn check(
        &self,
        config: serde_json::Value,
        out: Emitter,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Lists the streams with their schema, primary key and cursor. `out` as in `check`.
    fn discover(
        &self,
        config: serde_json::Value,
        out: Emitter,
    ) -> impl Future<Output = Result<Catalog, ConnectorError>> + Send;

    /// Reads the streams selected in `request.catalog`, continuing from `request.state`
    /// for incremental streams and honouring `request.window`.
    fn read(
        &self,
        request: ReadRequest,
        out: Emitter,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

/// Deserializes a connector's config, turning serde's message into a [`ErrorKind::Config`]
/// error (field names included, values not, so secrets stay out of it).
pub fn parse_config<T: serde::de::DeserializeOwned>(
    config: serde_json::Value,
) -> Result<T, ConnectorError> {
    serde_json::from_value(config)
        .map_err(|e| ConnectorError::config(format!("invalid config: {e}")))
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export;
    pub use crate::ffi;
    pub use abi_stable;
}
