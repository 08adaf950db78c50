//! `quality`: the data-quality report measured from the warehouse alone.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{breach_code, existing_destination, lock_destination, manifest_sources, usage, Loaded};
use crate::destination;
use crate::quality::{self, assemble};

/// The arguments of `quality`.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Print the whole report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Only this source's streams (the referential checks still use every source).
    #[arg(long)]
    pub source: Option<String>,
}

/// `quality`: measures the warehouse alone; exit 3 on a breached limit.
pub fn report(loaded: &Loaded, args: &QualityArgs) -> Result<ExitCode> {
    let target = existing_destination(loaded)?;
    if let Some(source) = &args.source {
        if !loaded.manifest.sources.contains_key(source) {
            return Err(usage(format!("no source `{source}` in the manifest")));
        }
    }
    // Opening a JSONL warehouse rolls back uncommitted bytes: never under a running sync.
    let _lock = lock_destination(&target, false)?;
    let dest = destination::open(&target)
        .with_context(|| format!("cannot open the destination {}", target.describe()))?;
    let mut report =
        assemble::warehouse_report(&*dest, &manifest_sources(loaded), args.source.as_deref())?;
    report.breaches = quality::breaches(&loaded.manifest.quality, &report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.summary());
    }
    Ok(breach_code(&report))
}
