//! Putting a report together: trackers before a run, the report after it, and the report
//! of the warehouse alone.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use tributary_sdk::{Catalog, ConfiguredCatalog, SyncMode};

use super::{referential, warehouse, QualityReport, StreamTracker};
use crate::destination::{table_prefix, Destination, DestinationError, StateMap};
use crate::plan::SourcePlan;
use crate::runner::{scope_of, StreamReport};

/// Trackers for the streams of `source` a run reads. A stream read incrementally from a
/// saved position, by an unnarrowed read, gets the newest cursor the warehouse holds as
/// its watermark (see [`StreamTracker::new`]).
pub fn trackers(
    dest: &dyn Destination,
    source: &SourcePlan,
    discovered: &Catalog,
    configured: &ConfiguredCatalog,
    state: &StateMap,
) -> HashMap<String, StreamTracker> {
    let narrowed = scope_of(&source.window).is_some();
    let saved = state.get(&source.name);
    let mut out = HashMap::new();
    for stream in &configured.streams {
        let Some(desc) = discovered.streams.iter().find(|d| d.name == stream.name) else {
            continue;
        };
        let resumes = stream.sync_mode == SyncMode::Incremental
            && saved.is_some_and(|s| s.contains_key(&stream.name));
        let watermark = if resumes && !narrowed {
            dest.newest_cursor(&source.name, &stream.name)
                .unwrap_or_else(|e| {
                    tracing::warn!(source = %source.name, stream = %stream.name, "no cursor regression check: {e}");
                    None
                })
        } else {
            None
        };
        let tracker = StreamTracker::new(Some(&desc.json_schema), watermark.as_deref())
            .or_else(|e| {
                tracing::warn!(source = %source.name, stream = %stream.name, "records not validated: {e}");
                StreamTracker::new(None, watermark.as_deref())
            });
        if let Ok(t) = tracker {
            out.insert(stream.name.clone(), t);
        }
    }
    out
}

/// `(table prefix, stream)` of every stream the destination holds.
fn present(dest: &dyn Destination) -> Result<BTreeSet<(String, String)>, DestinationError> {
    Ok(dest.streams()?.into_iter().collect())
}

/// The report of a run: what each stream's tracker measured, and the referential gaps
/// of the warehouse it left. `sources`: (name, plugin) of every source in the manifest.
pub fn run_report(
    reports: &[StreamReport],
    dest: &dyn Destination,
    sources: &[(String, String)],
) -> Result<QualityReport, DestinationError> {
    let mut streams: Vec<_> = reports.iter().filter_map(|r| r.quality.clone()).collect();
    streams.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
    Ok(QualityReport {
        measured_from: "run",
        streams,
        referential: referential::gaps(dest, sources, &present(dest)?)?,
        breaches: Vec::new(),
    })
}

/// The report of the warehouse alone: every stream it holds (of `only` if given), named
/// as the manifest's sources are, and the referential gaps.
pub fn warehouse_report(
    dest: &dyn Destination,
    sources: &[(String, String)],
    only: Option<&str>,
) -> Result<QualityReport, DestinationError> {
    let now = Utc::now();
    let present = present(dest)?;
    let schemas = dest.schemas()?;
    let mut streams = Vec::new();
    for (prefix, stream) in &present {
        let label = sources
            .iter()
            .find(|(name, _)| table_prefix(name) == *prefix)
            .map_or(prefix.as_str(), |(name, _)| name.as_str());
        if only.is_some_and(|o| table_prefix(o) != *prefix) {
            continue;
        }
        let schema = schemas.get(&(prefix.clone(), stream.clone()));
        streams.push(warehouse::measure(
            dest, prefix, label, stream, schema, now,
        )?);
    }
    streams.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
    Ok(QualityReport {
        measured_from: "warehouse",
        streams,
        referential: referential::gaps(dest, sources, &present)?,
        breaches: Vec::new(),
    })
}
