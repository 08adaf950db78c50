//! `state show` and `state reset`: the saved incremental state.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{lock_destination, usage, Loaded};
use crate::destination;
use crate::manifest::{self, Manifest};
use crate::plan::{self, DestinationPlan};

/// What `state` does.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print saved state: all, `source`, or `source.stream`.
    Show { target: Option<String> },
    /// Forget saved state: all, `source`, or `source.stream`; the next run starts over.
    Reset { target: Option<String> },
}

fn split_target(target: Option<&String>) -> (Option<&str>, Option<&str>) {
    match target.map(|t| {
        t.split_once('.')
            .map_or((t.as_str(), None), |(a, b)| (a, Some(b)))
    }) {
        Some((source, stream)) => (Some(source), stream),
        None => (None, None),
    }
}

/// `state show` / `state reset`.
pub fn state(loaded: &Loaded, command: &StateCommand) -> Result<ExitCode> {
    let plan = plan::resolve_destination(&loaded.manifest, &loaded.dir)
        .map_err(|errors| usage(manifest::list_problems(&errors)))?;
    match &plan {
        DestinationPlan::Sqlite { path } | DestinationPlan::Jsonl { path } if !path.exists() => {
            println!("no state yet ({} does not exist)", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let _lock = match command {
        StateCommand::Reset { .. } => Some(lock_destination(&plan, false)?),
        StateCommand::Show { .. } => None,
    };
    let mut dest = destination::open(&plan)
        .with_context(|| format!("cannot open the destination {}", plan.describe()))?;
    let saved = dest.load_state()?;
    let target = match command {
        StateCommand::Show { target } | StateCommand::Reset { target } => target.as_ref(),
    };
    let (source, stream) = split_target(target);
    if let Some(problem) = unknown_target(&loaded.manifest, &saved, source, stream) {
        return Err(usage(problem));
    }
    match command {
        StateCommand::Show { .. } => {
            let mut state = saved;
            state.retain(|s, _| source.is_none_or(|want| want == s));
            for streams in state.values_mut() {
                streams
                    .retain(|s, _| stream.is_none_or(|want| destination::state_key_is_of(s, want)));
            }
            state.retain(|_, streams| !streams.is_empty());
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        StateCommand::Reset { .. } => {
            let n = dest.reset_state(source, stream)?;
            println!("reset {n} stream state(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `source[.stream]` names nothing `state` could act on: a source neither in the
/// manifest nor in the saved state, or a stream with no saved state. Lists what exists.
fn unknown_target(
    manifest: &Manifest,
    saved: &destination::StateMap,
    source: Option<&str>,
    stream: Option<&str>,
) -> Option<String> {
    let source = source?;
    let saved_streams = saved.get(source);
    if saved_streams.is_none() && !manifest.sources.contains_key(source) {
        let mut known: Vec<&str> = manifest.sources.keys().map(String::as_str).collect();
        known.extend(saved.keys().map(String::as_str));
        known.sort_unstable();
        known.dedup();
        return Some(format!(
            "no source `{source}` in the manifest or the saved state (sources: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let stream = stream?;
    let keys: Vec<&String> = saved_streams
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    if keys.iter().any(|k| destination::state_key_is_of(k, stream)) {
        return None;
    }
    Some(format!(
        "source `{source}` has no saved state for stream `{stream}` (streams with state: {})",
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ))
}
