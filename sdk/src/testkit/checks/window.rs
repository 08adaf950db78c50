//! `read.limit` and `read.window`: a narrowed read stays inside what it was asked for.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{verdict, READ_LIMIT, READ_WINDOW};
use crate::testkit::recorder::SeenRecord;
use crate::testkit::report::CheckResult;

/// Every stream of a read with `limit` emitted at most `limit` records.
pub fn limit(limit: u64, records: &BTreeMap<String, Vec<SeenRecord>>) -> CheckResult {
    let problems = records
        .iter()
        .filter(|(_, list)| list.len() as u64 > limit)
        .map(|(stream, list)| {
            format!(
                "stream `{stream}` emitted {} records under a limit of {limit}",
                list.len()
            )
        })
        .collect();
    verdict(
        READ_LIMIT,
        problems,
        format!("at most {limit} record(s) per stream under a limit of {limit}"),
    )
}

/// A read with a start date emitted only records the full read had, and none whose
/// timestamp cursor is before the start.
pub fn window(
    start: DateTime<Utc>,
    full: &BTreeMap<String, Vec<SeenRecord>>,
    windowed: &BTreeMap<String, Vec<SeenRecord>>,
) -> CheckResult {
    let mut problems = Vec::new();
    let mut total = 0usize;
    for (stream, list) in windowed {
        total += list.len();
        let known: BTreeSet<&str> = full
            .get(stream)
            .into_iter()
            .flatten()
            .map(|r| r.pk.as_str())
            .collect();
        if let Some(extra) = list.iter().find(|r| !known.contains(r.pk.as_str())) {
            problems.push(format!(
                "stream `{stream}`: record `{}` is not in the full read",
                extra.pk
            ));
        }
        let early = list
            .iter()
            .filter(|r| {
                r.cursor
                    .as_deref()
                    .and_then(instant)
                    .is_some_and(|c| c < start)
            })
            .count();
        if early > 0 {
            problems.push(format!(
                "stream `{stream}`: {early} record(s) with a cursor before the window's start {}",
                start.to_rfc3339()
            ));
        }
    }
    verdict(
        READ_WINDOW,
        problems,
        format!(
            "{total} record(s) from {}, all inside the full read",
            start.to_rfc3339()
        ),
    )
}

/// A cursor text as an instant (see [`crate::cursor_instant`]).
pub fn instant(text: &str) -> Option<DateTime<Utc>> {
    crate::cursor_instant(text)
}
