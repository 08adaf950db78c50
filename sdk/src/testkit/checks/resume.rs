//! `read.resume`: stopping at a checkpoint and resuming from it loses nothing and repeats
//! nothing.
//!
//! The suite reads each incremental stream three times: in full, with a record limit
//! (which must stop at an exact, checkpointed position), and again from the limited
//! read's last state. The limited and resumed reads together must be the full read.

use std::collections::{BTreeMap, BTreeSet};

use super::{verdict, READ_RESUME};
use crate::testkit::recorder::SeenRecord;
use crate::testkit::report::CheckResult;

/// Records of one stream in the three reads.
#[derive(Debug)]
pub struct ResumedStream<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// The full read's records.
    pub full: &'a [SeenRecord],
    /// The limited read's records (up to its last checkpoint).
    pub before: &'a [SeenRecord],
    /// The resumed read's records.
    pub after: &'a [SeenRecord],
}

/// No key of the full read is missing from before ∪ after, and none is in both.
pub fn no_gap_no_duplicate(streams: &[ResumedStream<'_>]) -> CheckResult {
    let mut problems = Vec::new();
    for s in streams {
        let keys = |list: &[SeenRecord]| -> BTreeSet<String> {
            list.iter().map(|r| r.pk.clone()).collect()
        };
        let (full, before, after) = (keys(s.full), keys(s.before), keys(s.after));
        let missing: Vec<&String> = full
            .iter()
            .filter(|k| !before.contains(*k) && !after.contains(*k))
            .collect();
        let repeated: Vec<&String> = before.intersection(&after).collect();
        if let Some(first) = missing.first() {
            problems.push(format!(
                "stream `{}`: {} record(s) of the full read missing after resuming (a gap), first `{first}`",
                s.stream,
                missing.len()
            ));
        }
        if let Some(first) = repeated.first() {
            problems.push(format!(
                "stream `{}`: {} record(s) sent again after resuming (a duplicate), first `{first}`",
                s.stream,
                repeated.len()
            ));
        }
    }
    let summary: BTreeMap<&str, (usize, usize)> = streams
        .iter()
        .map(|s| (s.stream, (s.before.len(), s.after.len())))
        .collect();
    let described = summary
        .iter()
        .map(|(name, (b, a))| format!("{name} {b}+{a}"))
        .collect::<Vec<_>>()
        .join(", ");
    verdict(
        READ_RESUME,
        problems,
        format!("resumed without gap or duplicate: {described}"),
    )
}
