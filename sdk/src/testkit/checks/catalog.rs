//! `discover.catalog`: every stream can be stored and resumed as declared.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{verdict, DISCOVER_CATALOG};
use crate::protocol::{Catalog, StreamDescriptor, SyncMode};
use crate::testkit::report::CheckResult;

/// Every stream has a unique `[a-z0-9_]+` name, an object schema that compiles, a
/// non-empty primary key whose fields are in the schema, at least one sync mode, and —
/// when it supports incremental reads — a cursor field in the schema.
pub fn catalog(catalog: &Catalog) -> CheckResult {
    let mut problems = Vec::new();
    if catalog.streams.is_empty() {
        problems.push("the catalog has no streams".to_string());
    }
    let mut names = BTreeSet::new();
    for stream in &catalog.streams {
        if !names.insert(stream.name.as_str()) {
            problems.push(format!("stream `{}` is listed twice", stream.name));
        }
        problems.extend(stream_problems(stream));
    }
    verdict(
        DISCOVER_CATALOG,
        problems,
        format!(
            "{} stream(s), each with a schema, a key and a cursor consistent with its modes",
            catalog.streams.len()
        ),
    )
}

fn stream_problems(stream: &StreamDescriptor) -> Vec<String> {
    let name = &stream.name;
    let mut problems = Vec::new();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        problems.push(format!("stream name `{name}` is not [a-z0-9_]+"));
    }
    if let Err(e) = jsonschema::validator_for(&stream.json_schema) {
        problems.push(format!("stream `{name}`: schema does not compile: {e}"));
    }
    let properties = stream
        .json_schema
        .get("properties")
        .and_then(Value::as_object);
    if properties.is_none() {
        problems.push(format!("stream `{name}`: schema lists no properties"));
    }
    let declared = |field: &str| field_schema(&stream.json_schema, field).is_some();
    if stream.primary_key.is_empty() {
        problems.push(format!("stream `{name}` has no primary key"));
    }
    for key in &stream.primary_key {
        if !declared(key) {
            problems.push(format!(
                "stream `{name}`: primary key field `{key}` is not in its schema"
            ));
        }
    }
    if stream.sync_modes.is_empty() {
        problems.push(format!("stream `{name}` supports no sync mode"));
    }
    if stream.sync_modes.contains(&SyncMode::Incremental) {
        match &stream.cursor_field {
            None => problems.push(format!(
                "stream `{name}` is incremental but has no cursor field"
            )),
            Some(cursor) if !declared(cursor) => problems.push(format!(
                "stream `{name}`: cursor field `{cursor}` is not in its schema"
            )),
            Some(_) => {}
        }
    }
    problems
}

/// The schema of `field` in an object schema; a dotted name is a path into nested objects.
pub fn field_schema<'a>(schema: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(direct) = schema.get("properties").and_then(|p| p.get(field)) {
        return Some(direct);
    }
    field
        .split('.')
        .try_fold(schema, |s, part| s.get("properties")?.get(part))
}
