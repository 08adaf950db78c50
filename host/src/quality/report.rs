//! The quality report: what `run --report` and `quality --json` write, and the short
//! table under the run summary.

use std::collections::BTreeMap;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde::Serialize;

use super::Breach;

/// One stream's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamQuality {
    /// Source name.
    pub source: String,
    /// Stream name.
    pub stream: String,
    /// Live records measured (deletion markers are counted apart, and not measured).
    pub records: u64,
    /// Deletion markers (run) or rows marked deleted (warehouse).
    pub deleted: u64,
    /// Populated values over (fields × records), 0–1; `None` without records.
    pub completeness: Option<f64>,
    /// Per top-level field: the share of records where it is populated (present, not
    /// null, not an empty string).
    pub fields: BTreeMap<String, f64>,
    /// Records that broke the stream's JSON Schema (flagged in `_violations`).
    pub violations: u64,
    /// The first few violations: key, JSON path, message.
    pub violation_samples: Vec<ViolationSample>,
    /// Records whose primary key was already emitted earlier in the run. `None` where it
    /// cannot be known: a warehouse keeps one row per key.
    pub duplicates: Option<u64>,
    /// Live records older than the stream's newest cursor in the warehouse when an
    /// incremental run began. `None` where not measured (full reads, narrowed runs, the
    /// warehouse alone).
    pub cursor_regressions: Option<u64>,
    /// The newest cursor seen (timestamps compared as instants).
    pub newest_cursor: Option<String>,
    /// Seconds from the newest cursor to now, when the cursor is a timestamp or a date.
    pub freshness_seconds: Option<i64>,
}

/// A record that broke its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ViolationSample {
    /// The record's primary key.
    #[serde(default)]
    pub pk: String,
    /// JSON pointer of the offending value (empty: the record itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// One cross-source check: values of `from`.`field` that match no `to` key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReferentialGap {
    /// What is checked, in words.
    pub check: String,
    /// `source.stream` holding the references.
    pub from: String,
    /// The referencing field (a path such as `client.accountId`).
    pub field: String,
    /// `source.stream` holding the keys.
    pub to: String,
    /// Live rows of `from` with a reference.
    pub checked: u64,
    /// Of those, rows whose reference matches nothing.
    pub gaps: u64,
    /// The first few unmatched rows: `pk → reference`.
    pub samples: Vec<String>,
}

/// Everything measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QualityReport {
    /// `run`: the records of this run; `warehouse`: the live rows.
    pub measured_from: &'static str,
    /// Per stream, in name order.
    pub streams: Vec<StreamQuality>,
    /// Cross-source checks whose tables exist.
    pub referential: Vec<ReferentialGap>,
    /// Thresholds of `[quality]` not met.
    pub breaches: Vec<Breach>,
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn opt(v: Option<u64>) -> String {
    v.map_or("n/a".to_string(), |v| v.to_string())
}

/// `90s`, `5m`, `3h`, `2d`: coarse on purpose, it sits in a table.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

impl QualityReport {
    /// The per-stream table, then a line per referential check and per breach.
    pub fn summary(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec![
            "source",
            "stream",
            "complete",
            "violations",
            "duplicates",
            "regressions",
            "freshness",
        ]);
        for s in &self.streams {
            let right = |v: String| Cell::new(v).set_alignment(CellAlignment::Right);
            table.add_row(vec![
                Cell::new(&s.source),
                Cell::new(&s.stream),
                right(percent(s.completeness)),
                right(s.violations.to_string()),
                right(opt(s.duplicates)),
                right(opt(s.cursor_regressions)),
                right(s.freshness_seconds.map_or("-".to_string(), age)),
            ]);
        }
        let mut out = format!("quality ({}):\n{table}", self.measured_from);
        for s in &self.streams {
            for v in &s.violation_samples {
                out.push_str(&format!(
                    "\n  violation {}.{} key {} at {}: {}",
                    s.source,
                    s.stream,
                    v.pk,
                    if v.path.is_empty() { "/" } else { &v.path },
                    v.message
                ));
            }
        }
        for g in &self.referential {
            out.push_str(&format!(
                "\n  referential: {} of {} {} rows: {} matches no {} ({})",
                g.gaps, g.checked, g.from, g.field, g.to, g.check
            ));
        }
        for b in &self.breaches {
            out.push_str(&format!("\n  QUALITY BREACH: {b}"));
        }
        out
    }
}
