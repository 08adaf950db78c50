//! Where records land: the built-in destinations and the contract they share.

mod jsonl;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use tributary_sdk::host::{KeyBatch, RecordBatch};

use crate::views::Client360Sources;

pub use jsonl::{read_state_file, scan_last_lines, JsonlDestination};
pub use postgres::{
    postgres_address, postgres_url_problem, AdvisoryLock, AdvisoryLockError, PostgresDestination,
};
pub use sqlite::SqliteDestination;

use crate::plan::DestinationPlan;

/// A destination error; the message names the table or file involved.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    // Display carries the whole message and no `source()` is exposed: printing the
    // error chain would repeat it otherwise.
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// A file operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        error: std::io::Error,
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
    /// The destination cannot do this.
    #[error("this destination does not support {0}")]
    Unsupported(&'static str),
    /// Unknown `kind`.
    #[error("unknown destination kind `{0}` (expected `sqlite` or `jsonl`)")]
    UnknownKind(String),
    /// PostgreSQL failed. The message is the server's primary message only, never a
    /// record's contents or the connection URL.
    #[error("postgres: {context}: {message}")]
    Postgres {
        /// What was being done, with the table.
        context: String,
        /// What the server or the driver said.
        message: String,
    },
}

impl From<rusqlite::Error> for DestinationError {
    fn from(e: rusqlite::Error) -> Self {
        DestinationError::Sqlite(e)
    }
}

/// A row a completed snapshot marked deleted, as it was last committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedRow {
    /// Primary key.
    pub pk: String,
    /// Cursor value, if the row had one.
    pub cursor: Option<String>,
    /// The record (JSON).
    pub data: String,
}

/// Committed state: source → stream → state.
pub type StateMap = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// Discovered stream schemas: (table prefix, stream) → JSON Schema.
pub type SchemaMap = BTreeMap<(String, String), serde_json::Value>;

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
    ) -> Result<(), DestinationError> {
        self.write_flagged(source, stream, batch, &[], extracted_at)
    }

    /// [`Destination::write`], with the records that broke their stream's schema flagged:
    /// `violations` holds (index in the batch, JSON array of messages), in index order,
    /// and lands in the row's `_violations` column (NULL for the others). The records land
    /// all the same.
    fn write_flagged(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        violations: &[(usize, String)],
        extracted_at: &str,
    ) -> Result<(), DestinationError>;

    /// Stages a state checkpoint for `source.stream`.
    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError>;

    /// Makes everything staged durable. A destination that cannot undo a commit (an
    /// append-only file) may hold back records staged after a stream's latest state
    /// until [`Destination::seal`], so a crash never leaves them committed ahead of state.
    fn commit(&mut self) -> Result<(), DestinationError>;

    /// `source` has sent everything it will in this run: its records past its latest
    /// state become part of the next commit too.
    fn seal(&mut self, _source: &str) {}

    /// Drops everything staged since the last commit.
    fn rollback(&mut self);

    /// Every committed state.
    fn load_state(&self) -> Result<StateMap, DestinationError>;

    /// Deletes committed state: all, one source's, or one stream's (a stream's scoped
    /// states included). Returns how many stream states were removed.
    fn reset_state(
        &mut self,
        source: Option<&str>,
        stream: Option<&str>,
    ) -> Result<usize, DestinationError>;

    /// Opens a snapshot of `source.stream`: from now until [`Destination::finish_snapshot`]
    /// every record written to the stream and every key given to
    /// [`Destination::snapshot_keys`] counts as seen. Opening one again starts over.
    fn begin_snapshot(&mut self, source: &str, stream: &str) -> Result<(), DestinationError>;

    /// Live keys of an open snapshot. Kept outside memory where the destination can
    /// (a temporary table), so a listing of millions of keys stays small.
    fn snapshot_keys(
        &mut self,
        source: &str,
        stream: &str,
        keys: &KeyBatch,
    ) -> Result<(), DestinationError>;

    /// Closes the snapshot and stages a deletion of every live row of the stream that was
    /// not seen: the row keeps its data and cursor, gets `_deleted` set and
    /// `_extracted_at = noticed_at`. Committed with the next [`Destination::commit`], in
    /// the same transaction as everything staged before it. Returns the rows marked, and
    /// hands each, as last committed, to `marked` when given (so `watch` can publish the
    /// deletions it concluded).
    fn finish_snapshot(
        &mut self,
        source: &str,
        stream: &str,
        noticed_at: &str,
        marked: Option<&mut dyn FnMut(MarkedRow)>,
    ) -> Result<u64, DestinationError>;

    /// Forgets an open snapshot without concluding anything.
    fn abandon_snapshot(&mut self, source: &str, stream: &str);

    /// (Re)defines the `client_360` view over the tables of `sources` (see [`crate::views`])
    /// and commits it. `false` from a destination without SQL views (JSONL).
    fn define_client_360(&mut self, _sources: &Client360Sources) -> Result<bool, DestinationError> {
        Ok(false)
    }

    /// Every row of the view `name`; `None` from a destination without SQL views or when
    /// the view is not defined.
    fn read_view(&mut self, _name: &str) -> Result<Option<ViewRows>, DestinationError> {
        Ok(None)
    }

    /// Keeps the JSON Schema each stream of `source` was discovered with (replacing what
    /// was kept before), committed at once, so the warehouse alone can later say which
    /// fields a stream declares (`tributary quality`). Nothing may be staged.
    fn save_schemas(
        &mut self,
        _source: &str,
        _schemas: &[(&str, &serde_json::Value)],
    ) -> Result<(), DestinationError> {
        Ok(())
    }

    /// The schemas kept by [`Destination::save_schemas`], by `(table prefix, stream)`.
    fn schemas(&self) -> Result<SchemaMap, DestinationError> {
        Ok(SchemaMap::new())
    }

    /// The streams that have a table (or file): `(table prefix, stream)`, where the
    /// prefix is the source name as [`table_prefix`] folds it.
    fn streams(&self) -> Result<Vec<(String, String)>, DestinationError> {
        Err(DestinationError::Unsupported("listing streams"))
    }

    /// Hands every committed row of `source.stream` (its newest version, deleted rows
    /// included, flagged by [`Row::deleted`]) to `each`, in no particular order. A stream
    /// without a table has no rows. Meant for a destination with nothing staged (before
    /// or after a run): whether staged rows show is up to the destination.
    fn for_each_row(
        &self,
        _source: &str,
        _stream: &str,
        _each: &mut dyn FnMut(Row<'_>),
    ) -> Result<(), DestinationError> {
        Err(DestinationError::Unsupported("reading rows back"))
    }

    /// The newest cursor among the live rows of `source.stream` (instants compared as
    /// instants). The default scans every row.
    fn newest_cursor(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<String>, DestinationError> {
        let mut newest = crate::quality::tracker::Newest::default();
        self.for_each_row(source, stream, &mut |row| {
            if let (false, Some(c)) = (row.deleted, row.cursor) {
                newest.offer(c);
            }
        })?;
        Ok(newest.finish(chrono::Utc::now()).0)
    }
}

/// The rows of a view, in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewRows {
    /// Column names.
    pub columns: Vec<String>,
    /// One vector per row, aligned with `columns`.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// One committed row, as [`Destination::for_each_row`] hands it out.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// Primary key.
    pub pk: &'a str,
    /// Cursor value.
    pub cursor: Option<&'a str>,
    /// The row is marked deleted.
    pub deleted: bool,
    /// The `_violations` JSON array, for a record that broke its schema.
    pub violations: Option<&'a str>,
    /// The record (a JSON object).
    pub data: &'a str,
}

/// A stored state's text as JSON; the error names the stream, never the text.
fn parse_state(
    source: &str,
    stream: &str,
    text: &str,
) -> Result<serde_json::Value, DestinationError> {
    serde_json::from_str(text).map_err(|e| DestinationError::BadState {
        source_name: source.to_string(),
        stream: stream.to_string(),
        message: e.to_string(),
    })
}

/// `(table prefix, stream)` of the table names that are stream tables: the first `__`
/// separates source and stream (see [`table_name`]).
fn stream_tables(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| n.split_once("__"))
        .filter(|(prefix, stream)| !prefix.is_empty() && !stream.is_empty())
        .map(|(prefix, stream)| (prefix.to_string(), stream.to_string()))
        .collect()
}

/// The state key of `stream` in a narrowed scope (see `runner::scope_of`): the plain
/// stream name for the main scope, `stream [scope]` otherwise.
pub fn state_key(stream: &str, scope: Option<&str>) -> String {
    match scope {
        None => stream.to_string(),
        Some(scope) => format!("{stream} [{scope}]"),
    }
}

/// Whether a stored state key belongs to `stream` (its main or any narrowed scope).
pub fn state_key_is_of(key: &str, stream: &str) -> bool {
    key == stream
        || key
            .strip_prefix(stream)
            .is_some_and(|rest| rest.starts_with(" ["))
}

/// Opens the planned destination.
pub fn open(plan: &DestinationPlan) -> Result<Box<dyn Destination>, DestinationError> {
    Ok(match plan {
        DestinationPlan::Sqlite { path } => Box::new(SqliteDestination::open(path)?),
        DestinationPlan::Jsonl { path } => Box::new(JsonlDestination::open(path)?),
        DestinationPlan::Postgres { url, schema } => {
            Box::new(PostgresDestination::open(url, schema)?)
        }
    })
}

/// The source name as it appears in table names: lower case, `-` as `_`.
pub fn table_prefix(source: &str) -> String {
    source
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            '-' => '_',
            c => c,
        })
        .collect()
}

/// The table (or file stem) of a stream: `<source>__<stream>`.
///
/// Injective because the plan refuses source names whose [`table_prefix`] collide or
/// that contain `__` or start or end with `_`/`-` (see [`source_name_problem`]), and the
/// runner refuses stream names outside `[a-z0-9]+(_[a-z0-9]+)*` (see
/// [`stream_name_problem`]): the first `__` in a table name is always the separator.
pub fn table_name(source: &str, stream: &str) -> String {
    format!("{}__{stream}", table_prefix(source))
}

/// The name versions before 0.2 used (`<source>_<stream>`, not injective), for migration.
pub fn legacy_table_name(source: &str, stream: &str) -> String {
    format!("{}_{stream}", table_prefix(source))
}

/// Why `name` cannot be a source name, if it cannot.
pub fn source_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Some("source names may use letters, digits, `_` and `-` only");
    }
    let folded = table_prefix(name);
    if folded.starts_with('_') || folded.ends_with('_') || folded.contains("__") {
        return Some(
            "source names may not start or end with `_` or `-`, nor hold two of them in a row (`__` separates source and stream in table names)",
        );
    }
    None
}

/// Why `name` cannot be a stream name (as a plugin declares it), if it cannot.
pub fn stream_name_problem(name: &str) -> Option<&'static str> {
    let ok = !name.is_empty()
        && name.split('_').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    (!ok).then_some(
        "stream names must be lower-case letters and digits in words joined by single `_`",
    )
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DestinationError {
    let context = context.into();
    move |error| DestinationError::Io { context, error }
}

#[cfg(test)]
mod tests;
