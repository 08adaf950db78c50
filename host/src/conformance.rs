//! `tributary conformance <source>`: runs the SDK's conformance kit
//! ([`tributary_sdk::testkit`]) against one source of the manifest — its plugin with its
//! resolved config, behind its `[sandbox]` emulator when it has one, exactly as `run`
//! would start it — and prints a pass/fail table with the reasons.
//!
//! The kit reads the source several times (full, limited, resumed, windowed, cancelled)
//! into memory; nothing is written to the destination and no state is saved. A secret
//! the plugin rotates on the way (a QuickBooks refresh token) is persisted to the
//! credentials store as a sync would, under the same lock, so the source keeps working.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use tributary_sdk::testkit::{Report, Suite};
use tributary_sdk::ControlMessage;

use crate::credentials::Credentials;
use crate::loader::Registry;
use crate::manifest::{self, Manifest};
use crate::plan::{self, Overrides};
use crate::{lock, sandbox};

/// The command line of `tributary conformance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// Source name in the manifest.
    pub source: String,
    /// Only this stream (repeatable; default: the source's streams, else all).
    #[arg(long = "stream")]
    pub streams: Vec<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why the kit could not be run at all (a connector that fails checks is not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// The manifest does not resolve to a runnable source.
    #[error("{0}")]
    Manifest(String),
    /// The plugin directory cannot be scanned.
    #[error("plugin_dir {dir}: {error}")]
    PluginDir {
        /// The directory.
        dir: String,
        /// Why.
        error: std::io::Error,
    },
    /// Another process holds the source's credentials.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The source's emulator did not start.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
}

/// Runs the kit against `args.source` and prints the report; exit code 1 when a check
/// failed.
pub fn command(
    manifest: &Manifest,
    manifest_dir: &Path,
    args: &ConformanceArgs,
) -> Result<ExitCode, ConformanceError> {
    let report = run(manifest, manifest_dir, args)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ConformanceError::Manifest(format!("report does not serialize: {e}")))?;
        println!("{json}");
    } else {
        println!("{}", table(&report));
        println!("{}", summary(&args.source, &report));
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Resolves the source as `run` does and runs the kit against it.
pub fn run(
    manifest: &Manifest,
    manifest_dir: &Path,
    args: &ConformanceArgs,
) -> Result<Report, ConformanceError> {
    let dir = manifest::resolve_path(manifest_dir, &manifest.host.plugin_dir);
    let mode = plan::scan_mode(manifest).map_err(ConformanceError::Manifest)?;
    let registry = Registry::scan(&dir, &mode).map_err(|error| ConformanceError::PluginDir {
        dir: dir.display().to_string(),
        error,
    })?;
    let overrides = Overrides {
        sources: vec![args.source.clone()],
        ..Overrides::default()
    };
    let mut plan = plan::build(manifest, manifest_dir, &registry, &overrides)
        .map_err(|errors| ConformanceError::Manifest(manifest::list_problems(&errors)))?;
    let what = format!(
        "the credentials of source `{}` ({})",
        args.source,
        plan.credentials_path.display()
    );
    let _lock = lock::acquire(
        &lock::credentials_lock_path(&plan.credentials_path, &args.source),
        &what,
        false,
    )?;
    let _sandboxes = sandbox::start(&mut plan)?;
    let source = plan
        .sources
        .iter()
        .find(|s| s.name == args.source)
        .ok_or_else(|| {
            ConformanceError::Manifest(format!("no enabled source `{}`", args.source))
        })?;

    let credentials = Arc::new(Credentials::new(plan.credentials_path.clone()));
    let name = source.name.clone();
    let mut suite = Suite::new(source.plugin.clone(), source.config.clone()).on_control(
        move |message: &ControlMessage| match message {
            ControlMessage::ConfigUpdate { values } => {
                credentials.update(&name, values).map_err(|e| e.to_string())
            }
        },
    );
    let streams = match (&args.streams, &source.streams) {
        (wanted, _) if !wanted.is_empty() => Some(wanted.clone()),
        (_, configured) => configured.clone(),
    };
    if let Some(streams) = streams {
        suite = suite.streams(streams);
    }
    Ok(suite.run())
}

/// The report as a table: check, result, reason.
pub fn table(report: &Report) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    // Reasons can be long: wrap them to the terminal, or to 120 columns in a pipe or log.
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(120);
    }
    table.set_header(vec!["check", "result", "reason"]);
    for check in &report.checks {
        table.add_row(vec![
            check.name.to_string(),
            check.outcome.as_str().to_uppercase(),
            check.reason.clone(),
        ]);
    }
    table
}

/// One line: how many checks passed, failed and were skipped.
pub fn summary(source: &str, report: &Report) -> String {
    let count = |o| report.checks.iter().filter(|c| c.outcome == o).count();
    use tributary_sdk::testkit::Outcome;
    format!(
        "source `{source}` (plugin {}): {} passed, {} failed, {} skipped — {}",
        report.connector,
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip),
        if report.passed() {
            "CONFORMS"
        } else {
            "DOES NOT CONFORM"
        }
    )
}
