//! `clients`: prints the `client_360` view, one row per client across the sources.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{client_360_sources, existing_destination, usage, Loaded};
use crate::{destination, views};

/// `clients`: the `client_360` rows of the wanted clients (all without any), as a table
/// or JSON.
pub fn clients(loaded: &Loaded, wanted: &[String], json: bool) -> Result<ExitCode> {
    let target = existing_destination(loaded)?;
    let kind = &loaded.manifest.destination.kind;
    let mut dest = destination::open(&target)
        .with_context(|| format!("cannot open the destination {}", target.describe()))?;
    let mut rows = dest.read_view(views::CLIENT_360)?;
    if rows.is_none() {
        if let Some(sources) = client_360_sources(&loaded.manifest) {
            dest.define_client_360(&sources)?;
            rows = dest.read_view(views::CLIENT_360)?;
        }
    }
    let Some(rows) = rows else {
        return Err(usage(format!(
            "no client_360 view: it needs an internal-db source (client profiles) and a {kind} warehouse with SQL views (sqlite or postgres)"
        )));
    };
    let rows = views::select_clients(rows, wanted).map_err(usage)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows.to_objects())?);
    } else {
        println!("{}", views::render(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
