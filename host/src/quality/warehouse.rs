//! The per-stream figures again, from a destination's live rows alone (`tributary
//! quality`). What only a run can see is reported as not applicable: a warehouse keeps one
//! row per key (no duplicates to count), and without the run's starting point there is no
//! regression to find. Violations are the rows still flagged in `_violations`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::tracker::{Completeness, Newest};
use super::{StreamQuality, ViolationSample, SAMPLES};
use crate::destination::{Destination, DestinationError};

/// Measures the live rows of `source.stream`. `label` is the source name to report
/// (`source` is how the destination names it); `schema`, the stream's discovered schema
/// when the warehouse kept it, lists the declared fields no row fills.
pub fn measure(
    dest: &dyn Destination,
    source: &str,
    label: &str,
    stream: &str,
    schema: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<StreamQuality, DestinationError> {
    let mut completeness = Completeness::with_schema(schema);
    let mut newest = Newest::default();
    let mut q = StreamQuality {
        source: label.to_string(),
        stream: stream.to_string(),
        ..StreamQuality::default()
    };
    dest.for_each_row(source, stream, &mut |row| {
        if row.deleted {
            q.deleted += 1;
            return;
        }
        if let Some(c) = row.cursor {
            newest.offer(c);
        }
        completeness.record(&serde_json::from_str::<Value>(row.data).unwrap_or(Value::Null));
        let Some(flags) = row.violations.filter(|v| *v != "null") else {
            return;
        };
        q.violations += 1;
        if q.violation_samples.len() < SAMPLES {
            let first = serde_json::from_str::<Vec<ViolationSample>>(flags)
                .ok()
                .and_then(|v| v.into_iter().next());
            q.violation_samples.push(ViolationSample {
                pk: row.pk.to_string(),
                ..first.unwrap_or(ViolationSample {
                    pk: String::new(),
                    path: String::new(),
                    message: flags.to_string(),
                })
            });
        }
    })?;
    let (overall, fields) = completeness.finish();
    let (newest_cursor, freshness_seconds) = newest.finish(now);
    q.records = completeness.records();
    q.completeness = overall;
    q.fields = fields;
    q.newest_cursor = newest_cursor;
    q.freshness_seconds = freshness_seconds;
    Ok(q)
}
