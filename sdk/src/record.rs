//! Records as connectors emit them.

use serde::Serialize;

use crate::error::ConnectorError;

/// One record of a stream, ready for the destination.
///
/// The payload is already-serialized JSON: connectors that get JSON from an API or build it
/// in the database pass it through without a parse/serialize round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The primary key as text. For composite keys use [`Record::composite_key`].
    pub pk: String,
    /// The cursor value as text (a timestamp, a sequence), if the stream has one.
    pub cursor: Option<String>,
    /// The record is a deletion marker: the destination keeps the row with `_deleted` set.
    pub deleted: bool,
    /// The record as a JSON object.
    pub data: String,
}

impl Record {
    /// A record from already-serialized JSON.
    pub fn from_json(pk: impl Into<String>, data: String) -> Self {
        Record {
            pk: pk.into(),
            cursor: None,
            deleted: false,
            data,
        }
    }

    /// A record from any serializable value.
    pub fn from_value<T: Serialize + ?Sized>(
        pk: impl Into<String>,
        value: &T,
    ) -> Result<Self, ConnectorError> {
        let data = serde_json::to_string(value)
            .map_err(|e| ConnectorError::data(format!("record does not serialize: {e}")))?;
        Ok(Self::from_json(pk, data))
    }

    /// Sets the cursor value.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Marks the record as a deletion.
    pub fn with_deleted(mut self, deleted: bool) -> Self {
        self.deleted = deleted;
        self
    }

    /// The text form of a composite primary key: the parts as a JSON array, so that no
    /// choice of separator can make two different keys collide.
    pub fn composite_key<S: AsRef<str>>(parts: &[S]) -> String {
        let parts: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
        // Serializing a slice of &str cannot fail.
        serde_json::to_string(&parts).unwrap_or_default()
    }
}

/// The instant a cursor text names, if it names one: RFC 3339 (any offset), or
/// `YYYY-MM-DD[T| ]HH:MM:SS[.f]` read as UTC, or a date (its midnight, UTC). What the host
/// reads freshness and regressions from, and the conformance kit windows with.
pub fn cursor_instant(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}
