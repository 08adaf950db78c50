//! Where records land: the built-in destinations and the contract they share.

mod jsonl;
mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;

use tributary_sdk::host::RecordBatch;

pub use jsonl::JsonlDestination;
pub use sqlite::SqliteDestination;

/// A destination error; the message names the table or file involved.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// SQLite failed.
    #[error("sqlite destination: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Stored state could not be read.
    #[error("state of {source_name}.{stream} is not valid JSON: {message}")]
    BadState {
        /// Source.
        source_name: String,
        /// Stream.
        stream: String,
        /// serde's message.
        message: String,
    },
    /// Unknown `kind`.
    #[error("unknown destination kind `{0}` (expected `sqlite` or `jsonl`)")]
    UnknownKind(String),
}

/// Committed state: source → stream → state.
pub type StateMap = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// A destination with transactional state.
///
/// The writer stages records and state checkpoints in arrival order; [`Destination::commit`]
/// makes everything staged durable at once. A state checkpoint therefore never becomes
/// durable before the records emitted ahead of it (correctness rule 1).
pub trait Destination: Send {
    /// Stages a batch of records of `source.stream`, upserting by primary key.
    fn write(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        extracted_at: &str,
    ) -> Result<(), DestinationError>;

    /// Stages a state checkpoint for `source.stream`.
    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError>;

    /// Makes everything staged durable.
    fn commit(&mut self) -> Result<(), DestinationError>;

    /// Drops everything staged since the last commit.
    fn rollback(&mut self);

    /// Every committed state.
    fn load_state(&self) -> Result<StateMap, DestinationError>;

    /// Deletes committed state: all, one source's, or one stream's. Returns how many
    /// stream states were removed.
    fn reset_state(
        &mut self,
        source: Option<&str>,
        stream: Option<&str>,
    ) -> Result<usize, DestinationError>;
}

/// Opens the destination of `kind` at `path`.
pub fn open(kind: &str, path: &Path) -> Result<Box<dyn Destination>, DestinationError> {
    match kind {
        "sqlite" => Ok(Box::new(SqliteDestination::open(path)?)),
        "jsonl" => Ok(Box::new(JsonlDestination::open(path)?)),
        other => Err(DestinationError::UnknownKind(other.to_string())),
    }
}

/// The table (or file stem) for a stream: `<source>_<stream>`, reduced to `[a-z0-9_]`.
pub fn table_name(source: &str, stream: &str) -> String {
    format!("{source}_{stream}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DestinationError {
    let context = context.into();
    move |source| DestinationError::Io { context, source }
}

#[cfg(test)]
mod tests;
