//! The catalog, derived from the stream definitions: each stream's fields are written once,
//! as a GraphQL selection whose top-level fields carry their type (`name:type`), and both
//! the query's selection and the JSON Schema come from that text.
//!
//! Types: `id` (a string ID), `str` (the default), `time` (zone-less timestamp text),
//! `date`, `bool`, `int`, `num`, `money` (decimal text), `json` (an association object),
//! `list`. Everything may be null except the first field, the key.

use serde_json::{json, Map, Value};
use tributary_sdk::toolkit::Streams;
use tributary_sdk::StreamDescriptor;

use crate::streams::{StreamDef, METRIC_FIELDS, STREAMS};

/// What a stream name resolves to when read.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// `tickets`: incremental by `updatedTime`.
    Tickets(&'static StreamDef),
    /// A full-refresh list stream.
    List(&'static StreamDef),
    /// A derived metric stream (`sla_summary`, `technician_productivity`).
    Metric(&'static str),
}

/// The top-level `(name, type)` pairs of a field list.
fn top_level(fields: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut depth = 0usize;
    fields.split_whitespace().filter_map(move |token| {
        match token {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            _ if depth == 0 => return Some(token.split_once(':').unwrap_or((token, "str"))),
            _ => {}
        }
        None
    })
}

/// The GraphQL selection of a field list: the text without its type annotations.
pub fn selection(fields: &str) -> String {
    let mut depth = 0usize;
    let tokens: Vec<&str> = fields
        .split_whitespace()
        .map(|token| match token {
            "{" => {
                depth += 1;
                token
            }
            "}" => {
                depth = depth.saturating_sub(1);
                token
            }
            _ if depth == 0 => token.split_once(':').map_or(token, |(name, _)| name),
            _ => token,
        })
        .collect();
    tokens.join(" ")
}

/// The JSON Schema of a row with these fields.
pub fn object(fields: &str) -> Value {
    let mut props = Map::new();
    let mut key = None;
    for (name, ty) in top_level(fields) {
        let mut s = match ty {
            "id" => {
                json!({"type": ["string", "null"], "description": "ID, always a string (19 digits, beyond 2^53)"})
            }
            "time" => {
                json!({"type": ["string", "null"], "description": "zone-less UTC timestamp as the API sends it"})
            }
            "date" => json!({"type": ["string", "null"], "format": "date"}),
            "money" => json!({"type": ["string", "null"], "description": "exact decimal text"}),
            "bool" => json!({"type": ["boolean", "null"]}),
            "int" => json!({"type": ["integer", "null"]}),
            "num" => json!({"type": ["number", "null"]}),
            "list" => json!({"type": ["array", "null"]}),
            "json" => {
                json!({"type": ["object", "array", "null"], "description": "JSON association; IDs inside are strings"})
            }
            _ => json!({"type": ["string", "null"]}),
        };
        if key.is_none() {
            s["type"] = json!("string");
            key = Some(name);
        }
        props.insert(name.to_string(), s);
    }
    json!({"type": "object", "properties": props, "required": key.into_iter().collect::<Vec<_>>()})
}

/// The key of a field list: its first field.
fn key(fields: &str) -> &str {
    top_level(fields).next().map_or("", |(name, _)| name)
}

/// Every stream, declared once: `discover`'s catalog and `read`'s lookup both come from
/// here, in catalog order.
pub fn declared() -> Streams<Stream> {
    let mut streams = Streams::new("superops");
    for def in STREAMS {
        let schema = object(def.fields);
        let (descriptor, stream) = match def.name {
            "tickets" => (
                StreamDescriptor::incremental(def.name, schema, &[key(def.fields)], "updatedTime"),
                Stream::Tickets(def),
            ),
            _ => (
                StreamDescriptor::full_refresh(def.name, schema, &[key(def.fields)]),
                Stream::List(def),
            ),
        };
        let descriptor = descriptor.window_field(def.date.map(|(field, _)| field));
        let descriptor = match (def.client, def.name) {
            (Some((field, _)), _) => descriptor.client_field(field),
            // Attributed to a client through the ticket it was logged on.
            (None, "worklog_entries") => descriptor.client_field("workItem.workId"),
            (None, _) => descriptor,
        };
        streams = streams.with(descriptor, stream);
    }
    for (name, fields, window, client) in METRIC_FIELDS {
        let descriptor = StreamDescriptor::full_refresh(name, object(fields), &[key(fields)])
            .window_field(Some(window))
            .client_field(client);
        streams = streams.with(descriptor, Stream::Metric(name));
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = "id:id name hq:bool hours:list { day start end } when:time";

    #[test]
    fn one_field_list_gives_the_selection_and_the_schema() {
        assert_eq!(selection(FIELDS), "id name hq hours { day start end } when");
        let schema = object(FIELDS);
        assert_eq!(schema["required"], json!(["id"]));
        assert_eq!(schema["properties"]["id"]["type"], "string");
        assert_eq!(
            schema["properties"]["name"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(
            schema["properties"]["hq"]["type"],
            json!(["boolean", "null"])
        );
        assert_eq!(
            schema["properties"]["hours"]["type"],
            json!(["array", "null"])
        );
        let names: Vec<&String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            names.len(),
            5,
            "sub-selected fields are not top-level: {names:?}"
        );
    }

    #[test]
    fn every_stream_has_a_typed_key_and_a_known_type_per_field() {
        let known = [
            "id", "str", "time", "date", "bool", "int", "num", "money", "json", "list",
        ];
        let streams = declared();
        for d in streams.catalog().streams {
            assert!(
                d.json_schema["properties"][&d.primary_key[0]].is_object(),
                "{}",
                d.name
            );
        }
        let lists = STREAMS.iter().map(|d| d.fields);
        for fields in lists.chain(METRIC_FIELDS.iter().map(|m| m.1)) {
            for (name, ty) in top_level(fields) {
                assert!(known.contains(&ty), "{name}:{ty}");
            }
        }
    }
}
