//! `read.state_after_records`: state never runs ahead of the records it covers.
//!
//! State is the connector's own JSON, so the kit cannot read its position in general.
//! It checks what holds for every connector: a stream that has records in a read from
//! scratch checkpoints only after its first record, and no checkpoint names (anywhere in
//! its JSON) the cursor of a record that is sent only later, beyond every cursor sent so
//! far. That is exactly the state a crash would turn into lost records.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{verdict, READ_ORDER};
use crate::testkit::recorder::Event;
use crate::testkit::report::CheckResult;

/// Checks the order of records and checkpoints in one read started without state.
pub fn state_after_records(events: &[Event]) -> CheckResult {
    let mut problems = Vec::new();
    let mut checkpoints = 0usize;
    // Cursors of each stream's records, in order, with the event index they arrived at.
    let mut cursors: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (at, event) in events.iter().enumerate() {
        if let Event::Records { stream, records } = event {
            let list = cursors.entry(stream.as_str()).or_default();
            list.extend(
                records
                    .iter()
                    .filter_map(|r| r.cursor.as_deref().map(|c| (at, c))),
            );
            // A stream with records but no cursors still counts as having records.
            if list.is_empty() {
                list.push((at, ""));
            }
        }
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for (at, event) in events.iter().enumerate() {
        let Event::State { stream, state } = event else {
            continue;
        };
        checkpoints += 1;
        let Some(list) = cursors.get(stream.as_str()) else {
            continue; // no records at all: nothing it can run ahead of
        };
        if reported.contains(stream.as_str()) {
            continue;
        }
        let first_record = list.first().map_or(usize::MAX, |(i, _)| *i);
        if at < first_record {
            problems.push(format!(
                "stream `{stream}` checkpointed before any of its records"
            ));
            reported.insert(stream);
            continue;
        }
        let sent: Vec<&str> = list
            .iter()
            .filter(|(i, _)| *i < at)
            .map(|(_, c)| *c)
            .filter(|c| !c.is_empty())
            .collect();
        let highest_sent = sent.iter().copied().max_by(|a, b| compare(a, b));
        let later: BTreeSet<&str> = list
            .iter()
            .filter(|(i, _)| *i > at)
            .map(|(_, c)| *c)
            .collect();
        let ahead = leaves(state).into_iter().find(|leaf| {
            later.contains(leaf.as_str())
                && !sent.contains(&leaf.as_str())
                && highest_sent.is_none_or(|h| compare(leaf, h) == Ordering::Greater)
        });
        if let Some(cursor) = ahead {
            problems.push(format!(
                "stream `{stream}` checkpointed cursor `{cursor}` before sending the records up to it"
            ));
            reported.insert(stream);
        }
    }
    verdict(
        READ_ORDER,
        problems,
        format!("{checkpoints} checkpoint(s), each after the records it covers"),
    )
}

/// Every string and number inside a state's JSON, as text.
fn leaves(state: &str) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(state) {
        walk(&v, &mut out);
    }
    out
}

/// Cursor order: numeric when both are numbers, by instant when both are timestamps,
/// else as text.
pub fn compare(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (super::window::instant(a), super::window::instant(b)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}
