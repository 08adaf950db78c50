//! `run`: plans, discovers, syncs every selected source into the destination, measures
//! quality, refreshes `client_360`, and reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use tributary_sdk::Catalog;

use super::{
    breach_code, build_plan, client_360_sources, lock_credentials, lock_destination,
    manifest_sources, only, scan, services, usage, Loaded,
};
use crate::loader::Registry;
use crate::plan::{Overrides, Plan};
use crate::progress;
use crate::quality::{self, assemble, QualityReport};
use crate::runner::{self, PreparedSource, RunOptions, StreamReport};
use crate::{clients, destination, sandbox};

/// The arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// One source at a time.
    #[arg(long)]
    pub sequential: bool,
    /// Only these sources (repeatable; runs them even if disabled).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Only these streams: `stream` or `source.stream` (repeatable).
    #[arg(long = "stream")]
    pub streams: Vec<String>,
    /// Start of the window: YYYY-MM-DD or RFC 3339 (inclusive).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window: YYYY-MM-DD or RFC 3339 (exclusive).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records per stream.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Only this client, by id or name, in every source (repeatable); resolved through
    /// `[clients]` or the internal database's `client_profiles`.
    #[arg(long = "client")]
    pub clients: Vec<String>,
    /// Ignore saved state and read everything again (records are upserted).
    #[arg(long)]
    pub full_refresh: bool,
    /// Also write the summary as JSON to this file (for scripts and monitoring).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// If another run holds the destination or a source's credentials, wait for it
    /// instead of failing at once.
    #[arg(long)]
    pub wait: bool,
}

/// What `run --report FILE` writes: every stream's outcome and the quality report.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    /// One entry per stream, in (source, stream) order.
    pub streams: Vec<StreamOutcome<'a>>,
    /// The run's data-quality report.
    pub quality: &'a QualityReport,
}

/// One stream's outcome in a [`RunReport`].
#[derive(Debug, Serialize)]
pub struct StreamOutcome<'a> {
    /// Source name.
    pub source: &'a str,
    /// Stream name (`*` for a failure before any stream started).
    pub stream: &'a str,
    /// Records received.
    pub records: u64,
    /// Rows deleted (deletion records and rows a snapshot marked).
    pub deleted: u64,
    /// Seconds from start to end.
    pub seconds: f64,
    /// `complete` or `incomplete`.
    pub status: &'static str,
    /// Why the stream is incomplete.
    pub error: Option<&'a tributary_sdk::ConnectorError>,
}

impl<'a> RunReport<'a> {
    /// The report of `reports` and `quality`.
    pub fn new(reports: &'a [StreamReport], quality: &'a QualityReport) -> Self {
        let streams = reports
            .iter()
            .map(|r| StreamOutcome {
                source: &r.source,
                stream: &r.stream,
                records: r.records,
                deleted: r.deleted,
                seconds: r.seconds,
                status: if r.error.is_none() {
                    "complete"
                } else {
                    "incomplete"
                },
                error: r.error.as_ref(),
            })
            .collect();
        RunReport { streams, quality }
    }
}

/// `run`: syncs the selected sources; exit 1 if a stream is incomplete, 3 on a quality
/// breach.
pub fn run(loaded: &Loaded, args: &RunArgs, cancel: Arc<AtomicBool>) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let overrides = Overrides {
        sources: args.sources.clone(),
        streams: args.streams.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        limit: args.limit,
        clients: args.clients.clone(),
    };
    let mut plan = build_plan(loaded, &registry, &overrides)?;
    if plan.sources.is_empty() {
        return Err(usage(format!(
            "{}: no source selected (enable one, or pass --source)",
            loaded.path.display()
        )));
    }
    // One writer per destination, one user per credential, for the whole run; taken
    // before anything (a token refresh during discover included) can write.
    let _destination_lock = lock_destination(&plan.destination, args.wait)?;
    let _credential_locks = lock_credentials(&plan, args.wait)?;
    let _sandboxes = sandbox::start(&mut plan)?;
    if !args.clients.is_empty() {
        narrow_to_clients(loaded, &registry, &mut plan, &args.clients)?;
    }
    let services = services(&plan, cancel);

    let Prepared {
        sources: mut prepared,
        catalogs,
        failed_early,
    } = prepare(&plan, &services, args.full_refresh, &args.streams)?;

    let dest = open_destination(&plan, &prepared, &catalogs)?;
    let state = dest.load_state().context("cannot read saved state")?;
    let limits = &loaded.manifest.quality;
    if limits.validate {
        for p in &mut prepared {
            if let Some(catalog) = catalogs.get(&p.plan.name) {
                p.trackers = assemble::trackers(&*dest, &p.plan, catalog, &p.catalog, &state);
            }
        }
    }
    let options = RunOptions {
        full_refresh: args.full_refresh,
        parallelism: if args.sequential { 1 } else { plan.parallelism },
    };
    let mut reports = runner::run(prepared, dest, state, &options, &services);
    reports.extend(failed_early);
    reports.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
    println!("{}", progress::summary_table(&reports));
    // Referential checks read the warehouse the run left (a fresh connection: the
    // writer's is gone with it); the destination lock is still ours.
    let mut quality_report = destination::open(&plan.destination)
        .and_then(|dest| assemble::run_report(&reports, &*dest, &manifest_sources(loaded)))
        .unwrap_or_else(|e| {
            tracing::warn!("no referential checks: {e}");
            QualityReport {
                measured_from: "run",
                streams: reports.iter().filter_map(|r| r.quality.clone()).collect(),
                ..QualityReport::default()
            }
        });
    quality_report.breaches = quality::breaches(limits, &quality_report);
    if !quality_report.streams.is_empty() || !quality_report.referential.is_empty() {
        println!("{}", quality_report.summary());
    }
    define_client_360(loaded, &plan);
    if let Some(path) = &args.report {
        let json = RunReport::new(&reports, &quality_report);
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    if let Some(rss) = peak_rss_bytes() {
        println!(
            "peak memory (RSS): {:.1} MiB",
            rss as f64 / (1024.0 * 1024.0)
        );
    }
    let incomplete = reports.iter().filter(|r| r.error.is_some()).count();
    if incomplete == 0 {
        println!("all {} stream(s) complete", reports.len());
        Ok(breach_code(&quality_report))
    } else {
        println!("{incomplete} of {} stream(s) INCOMPLETE", reports.len());
        Ok(ExitCode::from(1))
    }
}

/// Opens the plan's destination and keeps the streams' schemas with the warehouse, so
/// `tributary quality` can measure completeness against every declared field, filled or
/// not.
pub(super) fn open_destination(
    plan: &Plan,
    sources: &[PreparedSource],
    catalogs: &HashMap<String, Catalog>,
) -> Result<Box<dyn destination::Destination>> {
    let mut dest = destination::open(&plan.destination).with_context(|| {
        format!(
            "cannot open the destination {}",
            plan.destination.describe()
        )
    })?;
    for p in sources {
        if let Some(catalog) = catalogs.get(&p.plan.name) {
            let schemas: Vec<(&str, &serde_json::Value)> = catalog
                .streams
                .iter()
                .filter(|d| p.catalog.streams.iter().any(|s| s.name == d.name))
                .map(|d| (d.name.as_str(), &d.json_schema))
                .collect();
            dest.save_schemas(&p.plan.name, &schemas)
                .with_context(|| format!("cannot keep the stream schemas of {}", p.plan.name))?;
        }
    }
    Ok(dest)
}

/// Every source of a plan, discovered and with its streams selected.
pub(super) struct Prepared {
    /// The sources to read.
    pub sources: Vec<PreparedSource>,
    /// Each read source's discovered catalog, by source name.
    pub catalogs: HashMap<String, Catalog>,
    /// Reports of the sources whose discover failed (the others still run).
    pub failed_early: Vec<runner::StreamReport>,
}

/// Discovers every source first, so a bad stream name fails (a usage error listing every
/// problem) before anything is written. `streams`: the `--stream` arguments, for messages.
pub(super) fn prepare(
    plan: &Plan,
    services: &runner::Services,
    full_refresh: bool,
    streams: &[String],
) -> Result<Prepared> {
    let mut prepared = Vec::new();
    let mut catalogs = HashMap::new();
    let mut failed_early = Vec::new();
    let mut problems = Vec::new();
    let discovered: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .sources
            .iter()
            .map(|s| {
                let handler = runner::control_handler(&s.name, services);
                scope.spawn(move || s.plugin.discover(&s.config, handler))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(tributary_sdk::ConnectorError::system(
                        "discover panicked in the host",
                    ))
                })
            })
            .collect()
    });
    for (source, catalog) in plan.sources.iter().zip(discovered) {
        match catalog {
            Ok(catalog) => match runner::select_streams(source, &catalog, full_refresh) {
                Ok(configured) if configured.streams.is_empty() => problems.push(format!(
                    "source `{}`: no stream selected{} (plugin {} offers: {})",
                    source.name,
                    if streams.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " by --stream {} among the manifest's streams",
                            streams.join(", --stream ")
                        )
                    },
                    source.plugin.info().name,
                    catalog.stream_names()
                )),
                Ok(configured) => {
                    prepared.push(PreparedSource {
                        plan: source.clone(),
                        catalog: configured,
                        trackers: Default::default(),
                    });
                    catalogs.insert(source.name.clone(), catalog);
                }
                Err(e) => problems.push(e),
            },
            Err(e) => {
                tracing::error!(source = %source.name, "discover failed: {e}");
                // The streams the manifest selected, when it names them; `*` otherwise
                // (the catalog that would list them is what failed).
                let streams = source
                    .streams
                    .clone()
                    .unwrap_or_else(|| vec!["*".to_string()]);
                failed_early.extend(streams.into_iter().map(|stream| runner::StreamReport {
                    source: source.name.clone(),
                    stream,
                    records: 0,
                    deleted: 0,
                    seconds: 0.0,
                    error: Some(e.clone()),
                    quality: None,
                }));
            }
        }
    }
    if !problems.is_empty() {
        return Err(usage(problems.join("\n")));
    }

    Ok(Prepared {
        sources: prepared,
        catalogs,
        failed_early,
    })
}

/// Refreshes the `client_360` view after a run, so it matches the manifest's sources and
/// the tables that exist now. The records are committed already: a failure only warns.
fn define_client_360(loaded: &Loaded, plan: &Plan) {
    let Some(sources) = client_360_sources(&loaded.manifest) else {
        return;
    };
    let defined =
        destination::open(&plan.destination).and_then(|mut d| d.define_client_360(&sources));
    match defined {
        Ok(true) => println!(
            "warehouse: {} (client_360 view: `tributary clients`)",
            plan.destination.describe()
        ),
        Ok(false) => println!("warehouse: {}", plan.destination.describe()),
        Err(e) => tracing::warn!("cannot define the client_360 view: {e}"),
    }
}

/// `--client`: finds the wanted clients in the directory (`[clients]`, else the
/// internal-db source's `client_profiles`) and narrows every source to their ids there.
/// Without a directory the values stay as given: each source's own ids.
fn narrow_to_clients(
    loaded: &Loaded,
    registry: &Registry,
    plan: &mut Plan,
    wanted: &[String],
) -> Result<()> {
    let directory = if !loaded.manifest.clients.is_empty() {
        clients::Directory::from_table(&loaded.manifest.clients)
    } else if let Some(name) = loaded
        .manifest
        .sources
        .iter()
        .find(|(_, s)| s.enabled && s.plugin == "internal-db")
        .map(|(name, _)| name.clone())
    {
        let mut lookup = build_plan(loaded, registry, &only(Some(&name)))?;
        let _sandbox = sandbox::start(&mut lookup)?;
        let source = lookup
            .sources
            .first()
            .with_context(|| format!("source `{name}` is not selectable"))?;
        let Some(profiles) = clients::read_profiles(source).map_err(anyhow::Error::msg)? else {
            tracing::info!(source = %name, "no client_profiles table: --client values are each source's own ids");
            return Ok(());
        };
        let columns: Vec<(String, &str)> = plan
            .sources
            .iter()
            .filter_map(|s| {
                let (_, column) = clients::PROFILE_COLUMNS
                    .iter()
                    .find(|(plugin, _)| *plugin == s.plugin.info().name)?;
                Some((s.name.clone(), *column))
            })
            .collect();
        clients::Directory::from_profiles(
            &format!("{name}.{}", clients::PROFILES_STREAM),
            &profiles,
            &columns,
        )
    } else {
        return Ok(());
    };
    let narrowed = clients::narrow(&mut plan.sources, &directory, wanted).map_err(usage)?;
    for c in &narrowed.clients {
        let ids: Vec<String> = c.ids.iter().map(|(s, id)| format!("{s} {id}")).collect();
        println!("client {} (id {}): {}", c.name, c.key, ids.join(", "));
    }
    for s in &narrowed.skipped {
        println!("source {s}: none of these clients is known there; not read");
    }
    if plan.sources.is_empty() {
        return Err(usage(
            "no selected source knows these clients; nothing to read",
        ));
    }
    Ok(())
}

/// Peak resident set size of this process (Linux: VmHWM), for the closing summary.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
