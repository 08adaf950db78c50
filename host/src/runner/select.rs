//! What a read covers: the streams chosen from the catalog, and the state scope of a
//! narrowed read.

use tributary_sdk::{Catalog, ConfiguredCatalog, ConfiguredStream, SyncMode, Window};

use crate::destination;
use crate::plan::SourcePlan;

/// The state scope of a read narrowed by clients or dates: its own position, so that it
/// never moves the main sync's position past rows it did not read (a scope without a
/// position of its own starts from the main one). `None` for an unnarrowed read. A limit
/// is not a scope: a limited read stops at an exact position.
pub fn scope_of(window: &Window) -> Option<String> {
    if !window.narrows() {
        return None;
    }
    let mut parts = Vec::new();
    if !window.clients.is_empty() {
        let mut clients: Vec<&str> = window.clients.iter().map(String::as_str).collect();
        clients.sort_unstable();
        clients.dedup();
        parts.push(format!("clients={}", clients.join(",")));
    }
    let stamp =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    if let Some(s) = &window.start {
        parts.push(format!("since={}", stamp(s)));
    }
    if let Some(e) = &window.end {
        parts.push(format!("until={}", stamp(e)));
    }
    Some(parts.join(";"))
}

/// Chooses the streams to read from the catalog. Errors name unknown streams.
pub fn select_streams(
    source: &SourcePlan,
    catalog: &Catalog,
    full_refresh: bool,
) -> Result<ConfiguredCatalog, String> {
    let names: Vec<String> = match &source.streams {
        Some(list) => {
            let unknown: Vec<&String> = list
                .iter()
                .filter(|s| !catalog.streams.iter().any(|c| &c.name == *s))
                .collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "source `{}`: unknown stream(s) {} (plugin {} offers: {})",
                    source.name,
                    unknown
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source.plugin.info().name,
                    catalog.stream_names()
                ));
            }
            list.clone()
        }
        None => catalog.streams.iter().map(|s| s.name.clone()).collect(),
    };
    let bad: Vec<String> = catalog
        .streams
        .iter()
        .filter(|s| names.contains(&s.name))
        .filter_map(|s| {
            destination::stream_name_problem(&s.name).map(|why| {
                format!(
                    "source `{}`: plugin {} declares stream `{}`: {why}",
                    source.name,
                    source.plugin.info().name,
                    s.name
                )
            })
        })
        .collect();
    if !bad.is_empty() {
        return Err(bad.join("\n"));
    }
    let streams = names
        .into_iter()
        .filter_map(|name| {
            let desc = catalog.streams.iter().find(|c| c.name == name)?;
            let sync_mode = if !full_refresh && desc.sync_modes.contains(&SyncMode::Incremental) {
                SyncMode::Incremental
            } else {
                SyncMode::FullRefresh
            };
            Some(ConfiguredStream { name, sync_mode })
        })
        .collect();
    Ok(ConfiguredCatalog { streams })
}
