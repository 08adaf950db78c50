//! The commands `tributary` runs, apart from its command line (as axum keeps `app()`
//! apart from `main`): `main.rs` parses arguments and calls one function here.
//!
//! - this module: loading the manifest, scanning plugins, building the plan, locks, and
//!   the user-error type every command shares;
//! - [`inspect`]: `validate`, `plugins`, `spec`, `check`, `discover`;
//! - [`run`]: `run`, with its report ([`run::RunReport`]);
//! - [`view`]: `clients` (the `client_360` view);
//! - [`quality`]: `quality` (the warehouse's data quality);
//! - [`state`]: `state show` and `state reset`;
//! - [`scaffold`]: `new-connector`, a connector crate from the template;
//! - [`watch`]: `watch`, the long-running incremental sync and its change feed;
//! - [`tail`]: `tail`, the change feed of a running `watch`.
//!
//! Commands are the application's edge, so they return `anyhow` errors; a
//! [`UsageError`] (bad manifest, bad arguments) exits 2, anything else 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::credentials::Credentials;
use crate::loader::{Registry, ScanMode};
use crate::manifest::{self, Manifest};
use crate::plan::{self, DestinationPlan, Overrides, Plan};
use crate::progress::Progress;
use crate::quality::{QualityReport, EXIT_BREACH};
use crate::runner::Services;
use crate::{destination, lock, views};

pub mod inspect;
pub mod quality;
pub mod run;
pub mod scaffold;
pub mod state;
pub mod tail;
pub mod view;
pub mod watch;

/// A user error (bad manifest, bad arguments): printed as is, exit code 2.
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`].
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The manifest, where it was found, and the directory its relative paths start from.
pub struct Loaded {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The directory relative paths in the manifest start from.
    pub dir: PathBuf,
    /// Where the manifest was read (`<built-in connectors.toml>` for the default).
    pub path: PathBuf,
}

/// Loads the manifest: `explicit`, else `./connectors.toml`, else the embedded default.
pub fn load_manifest(explicit: Option<&Path>) -> Result<Loaded> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let (path, manifest) = match explicit {
        Some(p) => (
            p.to_owned(),
            manifest::load(p).map_err(|e| usage(e.to_string()))?,
        ),
        None if Path::new("connectors.toml").exists() => {
            let p = PathBuf::from("connectors.toml");
            (
                p.clone(),
                manifest::load(&p).map_err(|e| usage(e.to_string()))?,
            )
        }
        None => {
            let p = PathBuf::from("<built-in connectors.toml>");
            (
                p.clone(),
                manifest::parse(manifest::EMBEDDED_DEFAULT, &p)
                    .map_err(|e| usage(e.to_string()))?,
            )
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && path.exists())
        .map(|d| cwd.join(d))
        .unwrap_or(cwd);
    Ok(Loaded {
        manifest,
        dir,
        path,
    })
}

/// The plugin directory, resolved against the manifest. A directory that does not exist
/// is an error, not a silent fallback: the user would run other plugins than they think.
pub fn plugin_dir(loaded: &Loaded) -> Result<PathBuf> {
    let dir = manifest::resolve_path(&loaded.dir, &loaded.manifest.host.plugin_dir);
    if dir.is_dir() {
        return Ok(dir);
    }
    let hint = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
        .map(|d| format!(" (this binary's plugins are in {})", d.display()))
        .unwrap_or_default();
    Err(usage(format!(
        "{}: [host] plugin_dir {} does not exist{hint}; build the plugins with `cargo build --release` or fix plugin_dir",
        loaded.path.display(),
        dir.display()
    )))
}

/// Scans the plugin directory as the manifest's isolation asks
/// ([`plan::scan_mode`]); `warn` prints the plugins refused.
pub fn scan(loaded: &Loaded, warn: bool) -> Result<Registry> {
    let mode = plan::scan_mode(&loaded.manifest).map_err(|e| anyhow!(e))?;
    scan_with(loaded, &mode, warn)
}

/// Scans the plugin directory in `mode`; `warn` prints the plugins refused.
pub fn scan_with(loaded: &Loaded, mode: &ScanMode, warn: bool) -> Result<Registry> {
    let dir = plugin_dir(loaded)?;
    let registry = Registry::scan(&dir, mode).map_err(|e| {
        usage(format!(
            "{}: plugin_dir {}: {e} (build the plugins with `cargo build --release`)",
            loaded.path.display(),
            dir.display()
        ))
    })?;
    if warn {
        for (_, line) in &registry.refused {
            eprintln!("warning: {line}");
        }
    }
    Ok(registry)
}

/// Resolves the manifest with `overrides` into sources ready to run.
pub fn build_plan(loaded: &Loaded, registry: &Registry, overrides: &Overrides) -> Result<Plan> {
    plan::build(&loaded.manifest, &loaded.dir, registry, overrides)
        .map_err(|errors| usage(manifest::list_problems(&errors)))
}

/// What every source's handler shares during one command.
pub fn services(plan: &Plan, cancel: Arc<AtomicBool>) -> Services {
    Services {
        credentials: Arc::new(Credentials::new(plan.credentials_path.clone())),
        cancel,
        progress: Arc::new(Progress::new()),
        usage: Arc::default(),
    }
}

/// A held destination lock.
pub enum DestinationLock {
    /// A lock file beside the file or in the directory.
    File(#[allow(dead_code)] lock::Lock),
    /// A session advisory lock in PostgreSQL, held by its own connection.
    Advisory(#[allow(dead_code)] destination::AdvisoryLock),
}

/// The exclusive lock of the plan's destination (correctness rule 7: one writer).
pub fn lock_destination(plan: &DestinationPlan, wait: bool) -> Result<DestinationLock> {
    match plan {
        DestinationPlan::Sqlite { path } | DestinationPlan::Jsonl { path } => {
            let what = format!("destination {}", path.display());
            lock::acquire(&lock::destination_lock_path(plan.kind(), path), &what, wait)
                .map(DestinationLock::File)
                .map_err(|e| usage(e.to_string()))
        }
        DestinationPlan::Postgres { url, schema } => {
            match destination::AdvisoryLock::acquire(url, schema, wait) {
                Ok(held) => Ok(DestinationLock::Advisory(held)),
                Err(e @ destination::AdvisoryLockError::Busy { .. }) => Err(usage(e.to_string())),
                Err(e) => Err(anyhow!("{e}")),
            }
        }
    }
}

/// One lock per selected source's entry in the credentials store, so that two processes
/// never refresh (and rotate) the same credentials at once: the loser of such a race
/// would hold a dead refresh token. Taken in name order, so `--wait` cannot deadlock.
pub fn lock_credentials(plan: &Plan, wait: bool) -> Result<Vec<lock::Lock>> {
    let mut names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let what = format!(
                "the credentials of source `{name}` ({})",
                plan.credentials_path.display()
            );
            lock::acquire(
                &lock::credentials_lock_path(&plan.credentials_path, name),
                &what,
                wait,
            )
            .map_err(|e| usage(e.to_string()))
        })
        .collect()
}

/// Overrides selecting one source (all when `None`).
pub fn only(name: Option<&String>) -> Overrides {
    Overrides {
        sources: name.into_iter().cloned().collect(),
        ..Overrides::default()
    }
}

/// The sources `client_360` reads, from the manifest (a narrowed run defines it whole).
pub fn client_360_sources(manifest: &Manifest) -> Option<views::Client360Sources> {
    views::Client360Sources::find(
        manifest
            .sources
            .iter()
            .map(|(name, s)| (name.as_str(), s.plugin.as_str(), s.enabled)),
    )
}

/// The manifest's destination, which must exist already (a file or directory is not
/// created just to be read).
pub fn existing_destination(loaded: &Loaded) -> Result<DestinationPlan> {
    let target = plan::resolve_destination(&loaded.manifest, &loaded.dir)
        .map_err(|errors| usage(manifest::list_problems(&errors)))?;
    match &target {
        DestinationPlan::Sqlite { path } | DestinationPlan::Jsonl { path } if !path.exists() => {
            Err(usage(format!(
                "no warehouse yet ({} does not exist): run `tributary run` first",
                path.display()
            )))
        }
        _ => Ok(target),
    }
}

/// (name, plugin) of every source the manifest declares, enabled or not: the warehouse
/// may hold any of them.
pub fn manifest_sources(loaded: &Loaded) -> Vec<(String, String)> {
    loaded
        .manifest
        .sources
        .iter()
        .map(|(name, s)| (name.clone(), s.plugin.clone()))
        .collect()
}

/// Exit code 3 when a `[quality]` limit broke (each breach printed to stderr too).
pub fn breach_code(report: &QualityReport) -> ExitCode {
    if report.breaches.is_empty() {
        return ExitCode::SUCCESS;
    }
    for b in &report.breaches {
        eprintln!("quality breach: {b}");
    }
    ExitCode::from(EXIT_BREACH)
}
