//! Message systems `watch` publishes committed changes to, each a
//! [`CommitSink`](crate::events::CommitSink): a transaction's events are acknowledged by
//! the sink before the transaction commits (see [`crate::events`]).
//!
//! - [`nats`]: NATS JetStream, configured by `[sinks.nats]`
//!   ([`NatsSinkConfig`](crate::manifest::NatsSinkConfig)).

pub mod nats;

pub use nats::NatsSink;

/// Why a sink could not be set up or could not deliver. Messages never carry a secret
/// (no password, token or credentials in a URL).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink's own runtime could not start.
    #[error("sink `{sink}`: cannot start its runtime: {source}")]
    Runtime {
        /// Sink name.
        sink: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The credentials file could not be read or is malformed.
    #[error("sink `{sink}`: cannot read credentials file {path}: {message}")]
    Credentials {
        /// Sink name.
        sink: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("sink `{sink}`: cannot connect to {server}: {message}")]
    Connect {
        /// Sink name.
        sink: String,
        /// The server list, without credentials.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// The stream is missing, or could not be created or updated.
    #[error("sink `{sink}`: stream `{stream}`: {message}")]
    Stream {
        /// Sink name.
        sink: String,
        /// Stream name.
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// An event could not be encoded.
    #[error("sink `{sink}`: cannot encode an event: {source}")]
    Encode {
        /// Sink name.
        sink: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Some events were refused, or not acknowledged in time.
    #[error(
        "sink `{sink}`: {unacknowledged} of {total} event(s) not acknowledged{}: {message}",
        timed_out.map(|secs| format!(" within {secs} s")).unwrap_or_default()
    )]
    Publish {
        /// Sink name.
        sink: String,
        /// Events without an acknowledgement.
        unacknowledged: usize,
        /// Events in the batch.
        total: usize,
        /// The timeout that expired, in seconds, when that is why.
        timed_out: Option<u64>,
        /// The first error met (subject and server's reason).
        message: String,
    },
}

/// Results of the sinks.
pub type Result<T, E = SinkError> = std::result::Result<T, E>;
