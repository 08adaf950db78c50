//! `read.records_match_schema` and `read.records_carry_key`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{verdict, READ_KEY, READ_SCHEMA};
use crate::protocol::Catalog;
use crate::record::Record;
use crate::testkit::recorder::SeenRecord;
use crate::testkit::report::CheckResult;

/// Every record is a JSON object valid against its stream's schema. Deletion markers are
/// exempt (they may carry only their key), and so are streams missing from the catalog,
/// which is a violation of its own.
pub fn match_schema(catalog: &Catalog, records: &BTreeMap<String, Vec<SeenRecord>>) -> CheckResult {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    for (stream, list) in records {
        let Some(descriptor) = catalog.streams.iter().find(|s| &s.name == stream) else {
            problems.push(format!(
                "records on stream `{stream}`, which the catalog does not list"
            ));
            continue;
        };
        let Ok(validator) = jsonschema::validator_for(&descriptor.json_schema) else {
            continue; // reported by discover.catalog
        };
        let mut bad = 0usize;
        let mut first = None;
        for record in list.iter().filter(|r| !r.deleted) {
            checked += 1;
            let problem = match serde_json::from_str::<Value>(&record.data) {
                Err(e) => Some(format!("is not JSON ({e})")),
                Ok(value) if !value.is_object() => Some("is not a JSON object".to_string()),
                Ok(value) => validator.iter_errors(&value).next().map(|e| {
                    let at = e.instance_path().to_string();
                    format!("at {}: {e}", if at.is_empty() { "/" } else { &at })
                }),
            };
            if let Some(problem) = problem {
                bad += 1;
                first.get_or_insert_with(|| format!("record `{}` {problem}", record.pk));
            }
        }
        if let Some(first) = first {
            problems.push(format!(
                "{bad} of {} record(s) of `{stream}` do not match its schema; first: {first}",
                list.len()
            ));
        }
    }
    verdict(
        READ_SCHEMA,
        problems,
        format!("{checked} record(s) match their stream's schema"),
    )
}

/// Every record holds each primary-key field (not null), and its key text is what the
/// fields spell: the value itself for one field (a string as is, a number in JSON), the
/// JSON array of the parts ([`Record::composite_key`]) for several.
pub fn carry_key(catalog: &Catalog, records: &BTreeMap<String, Vec<SeenRecord>>) -> CheckResult {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    for (stream, list) in records {
        let Some(descriptor) = catalog.streams.iter().find(|s| &s.name == stream) else {
            continue; // reported by read.records_match_schema
        };
        if descriptor.primary_key.is_empty() {
            problems.push(format!(
                "stream `{stream}` declares no primary key, so its records carry none"
            ));
            continue;
        }
        let mut bad = 0usize;
        let mut first = None;
        for record in list {
            checked += 1;
            if let Some(problem) = key_problem(&descriptor.primary_key, record) {
                bad += 1;
                first.get_or_insert(problem);
            }
        }
        if let Some(first) = first {
            problems.push(format!(
                "{bad} of {} record(s) of `{stream}` do not carry their key; first: {first}",
                list.len()
            ));
        }
    }
    verdict(
        READ_KEY,
        problems,
        format!("{checked} record(s) carry their primary key"),
    )
}

fn key_problem(key: &[String], record: &SeenRecord) -> Option<String> {
    if record.pk.is_empty() {
        return Some("a record has an empty key text".to_string());
    }
    let Ok(value) = serde_json::from_str::<Value>(&record.data) else {
        return None; // reported by read.records_match_schema
    };
    let mut parts = Vec::with_capacity(key.len());
    for field in key {
        match field_value(&value, field) {
            None | Some(Value::Null) => {
                return Some(format!("record `{}` has no `{field}`", record.pk))
            }
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(other) => parts.push(other.to_string()),
        }
    }
    let expected = match parts.as_slice() {
        [one] => one.clone(),
        many => Record::composite_key(many),
    };
    (expected != record.pk)
        .then(|| format!("record `{}`: its key fields spell `{expected}`", record.pk))
}

/// A field of a record; a dotted name is a path into nested objects.
fn field_value<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    record
        .get(field)
        .or_else(|| field.split('.').try_fold(record, |v, part| v.get(part)))
}
