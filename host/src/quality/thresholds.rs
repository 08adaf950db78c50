//! `[quality]` limits against a report. Every breach names its stream and, where one is
//! to blame, its field.

use serde::Serialize;

use super::{QualityReport, StreamQuality};
use crate::manifest::{QualitySection, StreamQualitySection};

/// One limit not met.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    /// `source.stream`.
    pub stream: String,
    /// The field to blame, if one is.
    pub field: Option<String>,
    /// The manifest key whose limit is broken (`min_completeness`, ...).
    pub limit: String,
    /// What was found, in words.
    pub message: String,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {}", self.stream)?;
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {} ({})", self.message, self.limit)
    }
}

/// Fields shown when a stream's overall completeness is too low: the least complete.
const BLAMED_FIELDS: usize = 3;

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// Every breach of `report` against `limits`. Figures a report does not have (duplicates
/// and regressions measured from the warehouse) break nothing.
pub fn breaches(limits: &QualitySection, report: &QualityReport) -> Vec<Breach> {
    let none = StreamQualitySection::default();
    let mut out = Vec::new();
    for s in &report.streams {
        let key = format!("{}.{}", s.source, s.stream);
        let own = limits.streams.get(&key).unwrap_or(&none);
        check_stream(limits, own, s, &key, &mut out);
    }
    out
}

fn check_stream(
    all: &QualitySection,
    own: &StreamQualitySection,
    s: &StreamQuality,
    key: &str,
    out: &mut Vec<Breach>,
) {
    let breach = |field: Option<String>, limit: &str, message: String| Breach {
        stream: key.to_string(),
        field,
        limit: limit.to_string(),
        message,
    };
    if let (Some(min), Some(got)) = (
        own.min_completeness.or(all.min_completeness),
        s.completeness,
    ) {
        if got < min {
            let mut fields: Vec<(&String, &f64)> = s.fields.iter().collect();
            fields.sort_by(|a, b| a.1.total_cmp(b.1).then_with(|| a.0.cmp(b.0)));
            let blamed: Vec<String> = fields
                .iter()
                .take(BLAMED_FIELDS)
                .filter(|(_, v)| **v < 1.0)
                .map(|(f, v)| format!("{f} {}", pct(**v)))
                .collect();
            out.push(breach(
                fields.first().map(|(f, _)| (*f).clone()),
                "min_completeness",
                format!(
                    "completeness {} is below {} (least complete: {})",
                    pct(got),
                    pct(min),
                    blamed.join(", ")
                ),
            ));
        }
    }
    for (field, &min) in &own.fields {
        // A field no record has is 0% complete (when there are records at all).
        let got = match s.fields.get(field) {
            Some(v) => *v,
            None if s.records > 0 => 0.0,
            None => continue,
        };
        if got < min {
            out.push(breach(
                Some(field.clone()),
                "fields",
                format!("completeness {} is below {}", pct(got), pct(min)),
            ));
        }
    }
    if let Some(max) = own.max_violations.or(all.max_violations) {
        if s.violations > max {
            let first = s.violation_samples.first();
            out.push(breach(
                first
                    .map(|v| v.path.trim_start_matches('/').replace('/', "."))
                    .filter(|f| !f.is_empty()),
                "max_violations",
                format!(
                    "{} record(s) break the schema, more than {max}{}",
                    s.violations,
                    first.map_or(String::new(), |v| format!(
                        " (first: key {}: {})",
                        v.pk, v.message
                    ))
                ),
            ));
        }
    }
    if let (Some(max), Some(got)) = (own.max_duplicates.or(all.max_duplicates), s.duplicates) {
        if got > max {
            out.push(breach(
                None,
                "max_duplicates",
                format!("{got} duplicate primary key(s) in the run, more than {max}"),
            ));
        }
    }
    if let (Some(max), Some(got)) = (
        own.max_regressions.or(all.max_regressions),
        s.cursor_regressions,
    ) {
        if got > max {
            out.push(breach(
                None,
                "max_regressions",
                format!("{got} record(s) older than the stream's newest cursor, more than {max}"),
            ));
        }
    }
    if let (Some(max), Some(age)) = (
        own.max_freshness_hours.or(all.max_freshness_hours),
        s.freshness_seconds,
    ) {
        if age as f64 > max * 3600.0 {
            out.push(breach(
                None,
                "max_freshness_hours",
                format!(
                    "newest cursor {} is {:.1} h old, more than {max} h",
                    s.newest_cursor.as_deref().unwrap_or("?"),
                    age as f64 / 3600.0
                ),
            ));
        }
    }
}
