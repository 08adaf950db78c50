//! The five streams, one definition per file. A definition is plain data (table, columns
//! and their kinds); the dialect turns it into SQL and the catalog turns it into JSON Schema.

mod client_profiles;
mod communication_engagement;
mod contracts;
mod satisfaction_scores;
mod service_history;

use serde_json::{json, Map, Value};
use tributary_sdk::toolkit::Streams;
use tributary_sdk::StreamDescriptor;

/// How a column is stored and how it appears in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer (ids, counts, scores): a JSON number.
    Int,
    /// Text: a JSON string.
    Text,
    /// Instant in UTC: a JSON string `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    Timestamp,
    /// Calendar date: a JSON string `YYYY-MM-DD`.
    Date,
    /// Exact decimal (money, hours): a JSON string such as `"1234.50"`, never a float.
    Decimal,
    /// Boolean: JSON `true` / `false`.
    Bool,
}

/// One column of a stream's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name, identical in the table and in the record.
    pub name: &'static str,
    /// Storage and JSON type.
    pub kind: Kind,
    /// Whether the column may be NULL.
    pub nullable: bool,
    /// One line for the JSON Schema.
    pub description: &'static str,
}

const fn col(name: &'static str, kind: Kind, description: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        description,
    }
}

const fn null(name: &'static str, kind: Kind, description: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        description,
    }
}

/// A stream: a table with an `id` primary key and an `updated_at` cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDef {
    /// Stream name, also the table name.
    pub name: &'static str,
    /// What the stream holds.
    pub description: &'static str,
    /// Column the client filter applies to (`id` for the client table itself).
    pub client_column: &'static str,
    /// Every column, `id` first; includes `updated_at`.
    pub columns: &'static [Column],
}

/// Every stream, in catalog order (clients first: the others reference them).
pub const ALL: [&StreamDef; 5] = [
    &client_profiles::STREAM,
    &service_history::STREAM,
    &satisfaction_scores::STREAM,
    &communication_engagement::STREAM,
    &contracts::STREAM,
];

/// Primary key column of every stream.
pub const PRIMARY_KEY: &str = "id";
/// Cursor column of every stream.
pub const CURSOR: &str = "updated_at";

/// The stream called `name`.
pub fn find(name: &str) -> Option<&'static StreamDef> {
    ALL.iter().copied().find(|s| s.name == name)
}

impl StreamDef {
    /// JSON Schema of one record.
    pub fn json_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for c in self.columns {
            let (ty, extra) = match c.kind {
                Kind::Int => ("integer", None),
                Kind::Text => ("string", None),
                Kind::Timestamp => ("string", Some(("format", "date-time"))),
                Kind::Date => ("string", Some(("format", "date"))),
                Kind::Decimal => ("string", Some(("pattern", r"^-?[0-9]+(\.[0-9]+)?$"))),
                Kind::Bool => ("boolean", None),
            };
            let mut p = Map::new();
            p.insert(
                "type".into(),
                if c.nullable {
                    json!([ty, "null"])
                } else {
                    json!(ty)
                },
            );
            if let Some((k, v)) = extra {
                p.insert(k.into(), json!(v));
            }
            p.insert("description".into(), json!(c.description));
            properties.insert(c.name.into(), Value::Object(p));
            if !c.nullable {
                required.push(c.name);
            }
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.name,
            "description": self.description,
            "type": "object",
            "additionalProperties": false,
            "required": required,
            "properties": properties,
        })
    }

    /// The catalog entry: incremental by `updated_at`, which the window also filters.
    pub fn descriptor(&self) -> StreamDescriptor {
        StreamDescriptor::incremental(self.name, self.json_schema(), &[PRIMARY_KEY], CURSOR)
            .client_field(self.client_column)
    }
}

/// Every stream, declared once: `discover`'s catalog and `read`'s lookup.
pub fn declared() -> Streams<&'static StreamDef> {
    ALL.iter()
        .fold(Streams::new("internal-db"), |streams, def| {
            streams.with(def.descriptor(), *def)
        })
}

#[cfg(test)]
mod tests;
