//! `read.state_after_records`: state never runs ahead of the records it covers.
//!
//! State is the connector's own JSON, so the kit cannot read a position out of it. It
//! tests what a position means instead: for each incremental stream, the earliest
//! checkpoint that still has records of the stream after it is passed back to a resumed
//! read, which must deliver every record of the full read that was not sent before that
//! checkpoint. A checkpoint written ahead of its records (before them, or naming a later
//! position) loses them here, exactly as a crash right after it would. A checkpoint of
//! an empty range before the first record (a report's quiet first days) is fine.
//!
//! Besides, no checkpoint may name (anywhere in its JSON) the cursor of a record that is
//! sent only later, beyond every cursor sent so far.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{verdict, READ_ORDER};
use crate::testkit::recorder::{Event, SeenRecord};
use crate::testkit::report::CheckResult;

/// The earliest checkpoint of a stream with records after it.
#[derive(Debug, Clone)]
pub struct EarlyCheckpoint {
    /// Stream.
    pub stream: String,
    /// The state, to resume from.
    pub state: Value,
    /// Its number among the stream's checkpoints, from 1.
    pub number: usize,
    /// Keys of the stream's records sent before it.
    pub sent_before: BTreeSet<String>,
}

/// For each of `streams`, its earliest checkpoint in `events` that has records of the
/// stream after it.
pub fn earliest_checkpoints(events: &[Event], streams: &[String]) -> Vec<EarlyCheckpoint> {
    let mut out = Vec::new();
    for stream in streams {
        let mut number = 0;
        let mut sent_before = BTreeSet::new();
        for (at, event) in events.iter().enumerate() {
            match event {
                Event::Records { stream: s, records } if s == stream => {
                    sent_before.extend(records.iter().map(|r| r.pk.clone()));
                }
                Event::State { stream: s, state } if s == stream => {
                    number += 1;
                    let more_after = events[at + 1..].iter().any(|e| {
                        matches!(e, Event::Records { stream: s, records } if s == stream && !records.is_empty())
                    });
                    if more_after {
                        out.push(EarlyCheckpoint {
                            stream: stream.clone(),
                            state: serde_json::from_str(state).unwrap_or(Value::Null),
                            number,
                            sent_before: sent_before.clone(),
                        });
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Checks a read started without state: `events` are the full read's, `resumed` what a
/// read resumed from `early` delivered (or why it failed).
pub fn state_after_records(
    events: &[Event],
    full: &BTreeMap<String, Vec<SeenRecord>>,
    early: &[EarlyCheckpoint],
    resumed: Result<&BTreeMap<String, Vec<SeenRecord>>, String>,
) -> CheckResult {
    let mut problems = cursors_ahead(events);
    match resumed {
        Err(why) if !early.is_empty() => {
            problems.push(format!("the read resumed from early checkpoints {why}"))
        }
        Err(_) => {}
        Ok(resumed) => {
            for cp in early {
                let got: BTreeSet<&str> = resumed
                    .get(&cp.stream)
                    .into_iter()
                    .flatten()
                    .map(|r| r.pk.as_str())
                    .collect();
                let lost: Vec<&str> = full
                    .get(&cp.stream)
                    .into_iter()
                    .flatten()
                    .map(|r| r.pk.as_str())
                    .filter(|k| !cp.sent_before.contains(*k) && !got.contains(k))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if let Some(first) = lost.first() {
                    let when = if cp.sent_before.is_empty() {
                        "before any of its records".to_string()
                    } else {
                        format!("after {} of its records", cp.sent_before.len())
                    };
                    problems.push(format!(
                        "stream `{}` checkpointed {when} a state that runs ahead of them: resuming from checkpoint {} lost {} record(s), first `{first}`",
                        cp.stream,
                        cp.number,
                        lost.len()
                    ));
                }
            }
        }
    }
    let checkpoints = events
        .iter()
        .filter(|e| matches!(e, Event::State { .. }))
        .count();
    verdict(
        READ_ORDER,
        problems,
        format!(
            "{checkpoints} checkpoint(s), none ahead of its records ({} resumed from)",
            early.len()
        ),
    )
}

/// Checkpoints that name the cursor of a record sent only later.
fn cursors_ahead(events: &[Event]) -> Vec<String> {
    let mut problems = Vec::new();
    // Cursors of each stream's records, in order, with the event index they arrived at.
    let mut cursors: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (at, event) in events.iter().enumerate() {
        if let Event::Records { stream, records } = event {
            cursors.entry(stream.as_str()).or_default().extend(
                records
                    .iter()
                    .filter_map(|r| r.cursor.as_deref().map(|c| (at, c))),
            );
        }
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for (at, event) in events.iter().enumerate() {
        let Event::State { stream, state } = event else {
            continue;
        };
        let Some(list) = cursors.get(stream.as_str()) else {
            continue;
        };
        if reported.contains(stream.as_str()) {
            continue;
        }
        let sent: Vec<&str> = list
            .iter()
            .filter(|(i, _)| *i < at)
            .map(|(_, c)| *c)
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
    problems
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
