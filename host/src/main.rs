//! `tributary`: loads connector plugins and syncs their streams into a warehouse, as the
//! manifest (`connectors.toml`) says. The command line lives here; everything it drives is
//! the `tributary` library (`src/lib.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use tributary::credentials::Credentials;
use tributary::loader::Registry;
use tributary::manifest::Manifest;
use tributary::plan::{DestinationPlan, Overrides, Plan};
use tributary::progress::{self, Progress};
use tributary::quality::{self, assemble, QualityReport};
use tributary::runner::{self, PreparedSource, RunOptions, Services};
use tributary::{clients, destination, lock, manifest, plan, sandbox, views};

#[derive(Debug, Parser)]
#[command(
    name = "tributary",
    version,
    about = "Sync SuperOps, QuickBooks and your own database into one warehouse"
)]
struct Cli {
    /// The manifest. Default: ./connectors.toml, else the built-in default manifest.
    #[arg(long, short, global = true, env = "TRIBUTARY_MANIFEST")]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the manifest and resolve its plugins without touching any source.
    Validate,
    /// List the plugins found in the plugin directory.
    Plugins,
    /// Print the config schema of a source's plugin (or of a plugin by name).
    Spec {
        /// Source name in the manifest, or plugin name.
        source: String,
    },
    /// Check that sources can connect and authenticate.
    Check {
        /// Only this source (default: every enabled source).
        source: Option<String>,
    },
    /// Print the streams each source offers.
    Discover {
        /// Only this source (default: every enabled source).
        source: Option<String>,
    },
    /// Sync every enabled source (incrementally, in parallel).
    Run(RunArgs),
    /// Runs one plugin call in this process for a host (`isolation = "process"`).
    #[command(hide = true)]
    PluginHost(tributary::isolation::PluginHostArgs),
    /// Print `client_360`: one row per client across the sources (SQLite or PostgreSQL).
    Clients {
        /// Only this client, by id or name (repeatable).
        #[arg(long = "client")]
        clients: Vec<String>,
        /// JSON (an array of objects with every column) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or reset the saved incremental state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Measure data quality from the warehouse alone (exit 3 if a [quality] limit breaks).
    Quality(QualityArgs),
}

#[derive(Debug, Args)]
struct QualityArgs {
    /// Print the whole report as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Only this source's streams (the referential checks still use every source).
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// One source at a time.
    #[arg(long)]
    sequential: bool,
    /// Only these sources (repeatable; runs them even if disabled).
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Only these streams: `stream` or `source.stream` (repeatable).
    #[arg(long = "stream")]
    streams: Vec<String>,
    /// Start of the window: YYYY-MM-DD or RFC 3339 (inclusive).
    #[arg(long)]
    since: Option<String>,
    /// End of the window: YYYY-MM-DD or RFC 3339 (exclusive).
    #[arg(long)]
    until: Option<String>,
    /// At most this many records per stream.
    #[arg(long)]
    limit: Option<u64>,
    /// Only this client, by id or name, in every source (repeatable); resolved through
    /// `[clients]` or the internal database's `client_profiles`.
    #[arg(long = "client")]
    clients: Vec<String>,
    /// Ignore saved state and read everything again (records are upserted).
    #[arg(long)]
    full_refresh: bool,
    /// Also write the summary as JSON to this file (for scripts and monitoring).
    #[arg(long)]
    report: Option<PathBuf>,
    /// If another run holds the destination or a source's credentials, wait for it
    /// instead of failing at once.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print saved state: all, `source`, or `source.stream`.
    Show { target: Option<String> },
    /// Forget saved state: all, `source`, or `source.stream`; the next run starts over.
    Reset { target: Option<String> },
}

/// A user error (bad manifest, bad arguments): printed as is, exit code 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

struct Loaded {
    manifest: Manifest,
    dir: PathBuf,
    path: PathBuf,
}

fn load_manifest(explicit: Option<&Path>) -> Result<Loaded> {
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
fn plugin_dir(loaded: &Loaded) -> Result<PathBuf> {
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

fn scan(loaded: &Loaded, warn: bool) -> Result<Registry> {
    let dir = plugin_dir(loaded)?;
    let registry = Registry::scan(&dir).map_err(|e| {
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

fn build_plan(loaded: &Loaded, registry: &Registry, overrides: &Overrides) -> Result<Plan> {
    plan::build(&loaded.manifest, &loaded.dir, registry, overrides)
        .map_err(|errors| usage(manifest::list_problems(&errors)))
}

fn services(plan: &Plan, cancel: Arc<AtomicBool>) -> Services {
    Services {
        credentials: Arc::new(Credentials::new(plan.credentials_path.clone())),
        cancel,
        progress: Arc::new(Progress::new()),
    }
}

/// A held destination lock.
enum DestinationLock {
    /// A lock file beside the file or in the directory.
    File(#[allow(dead_code)] lock::Lock),
    /// A session advisory lock in PostgreSQL, held by its own connection.
    Advisory(#[allow(dead_code)] destination::AdvisoryLock),
}

/// The exclusive lock of the plan's destination (correctness rule 7: one writer).
fn lock_destination(plan: &DestinationPlan, wait: bool) -> Result<DestinationLock> {
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
fn lock_credentials(plan: &Plan, wait: bool) -> Result<Vec<lock::Lock>> {
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

fn only(name: Option<&String>) -> Overrides {
    Overrides {
        sources: name.into_iter().cloned().collect(),
        ..Overrides::default()
    }
}

fn cmd_validate(loaded: &Loaded) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let plan = build_plan(loaded, &registry, &Overrides::default())?;
    println!(
        "{}: OK ({} source(s), {} enabled; destination {} at {})",
        loaded.path.display(),
        loaded.manifest.sources.len(),
        plan.sources.len(),
        plan.destination.kind(),
        plan.destination.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_plugins(loaded: &Loaded) -> Result<ExitCode> {
    let registry = scan(loaded, false)?;
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["name", "version", "sdk", "path", "compatible"]);
    for p in registry.plugins.values() {
        let info = p.info();
        table.add_row(vec![
            info.name.clone(),
            info.version.clone(),
            info.sdk_version.clone(),
            p.path().display().to_string(),
            "yes".to_string(),
        ]);
    }
    for (path, reason) in &registry.refused {
        let reason = reason
            .strip_prefix(&format!("{}: ", path.display()))
            .unwrap_or(reason)
            .to_string();
        table.add_row(vec![
            "?".into(),
            "?".into(),
            "?".into(),
            path.display().to_string(),
            format!("no: {reason}"),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_spec(loaded: &Loaded, name: &str) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let plugin_name = loaded
        .manifest
        .sources
        .get(name)
        .map(|s| s.plugin.clone())
        .unwrap_or_else(|| name.to_string());
    let plugin = registry
        .plugins
        .get(&plugin_name)
        .ok_or_else(|| usage(format!("no source or plugin named `{name}`")))?;
    let spec = plugin.spec().map_err(|e| anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&spec)?);
    Ok(ExitCode::SUCCESS)
}

fn cmd_check(
    loaded: &Loaded,
    source: Option<&String>,
    cancel: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let mut plan = build_plan(loaded, &registry, &only(source))?;
    let _locks = lock_credentials(&plan, false)?;
    let _sandboxes = sandbox::start(&mut plan)?;
    let services = services(&plan, cancel);
    let mut ok = true;
    for s in &plan.sources {
        match s
            .plugin
            .check(&s.config, runner::control_handler(&s.name, &services))
        {
            Ok(()) => println!("{}: OK", s.name),
            Err(e) => {
                ok = false;
                println!("{}: FAILED ({}): {}", s.name, e.kind, e.message);
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_discover(
    loaded: &Loaded,
    source: Option<&String>,
    cancel: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let mut plan = build_plan(loaded, &registry, &only(source))?;
    let _locks = lock_credentials(&plan, false)?;
    let _sandboxes = sandbox::start(&mut plan)?;
    let services = services(&plan, cancel);
    let mut ok = true;
    let mut out = serde_json::Map::new();
    for s in &plan.sources {
        match s
            .plugin
            .discover(&s.config, runner::control_handler(&s.name, &services))
        {
            Ok(catalog) => {
                out.insert(s.name.clone(), serde_json::to_value(&catalog)?);
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: FAILED ({}): {}", s.name, e.kind, e.message);
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_run(loaded: &Loaded, args: &RunArgs, cancel: Arc<AtomicBool>) -> Result<ExitCode> {
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

    // Discover every source first, so a bad stream name fails before anything is written.
    let mut prepared = Vec::new();
    let mut catalogs = std::collections::HashMap::new();
    let mut failed_early = Vec::new();
    let mut problems = Vec::new();
    let discovered: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .sources
            .iter()
            .map(|s| {
                let handler = runner::control_handler(&s.name, &services);
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
            Ok(catalog) => match runner::select_streams(source, &catalog, args.full_refresh) {
                Ok(configured) if configured.streams.is_empty() => problems.push(format!(
                    "source `{}`: no stream selected{} (plugin {} offers: {})",
                    source.name,
                    if args.streams.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " by --stream {} among the manifest's streams",
                            args.streams.join(", --stream ")
                        )
                    },
                    source.plugin.info().name,
                    catalog
                        .streams
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
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

    let dest = destination::open(&plan.destination).with_context(|| {
        format!(
            "cannot open the destination {}",
            plan.destination.describe()
        )
    })?;
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
        let streams: Vec<_> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "source": r.source,
                    "stream": r.stream,
                    "records": r.records,
                    "deleted": r.deleted,
                    "seconds": r.seconds,
                    "status": if r.error.is_none() { "complete" } else { "incomplete" },
                    "error": r.error,
                })
            })
            .collect();
        let json = serde_json::json!({ "streams": streams, "quality": quality_report });
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

/// The sources `client_360` reads, from the manifest (a narrowed run defines it whole).
fn client_360_sources(manifest: &Manifest) -> Option<views::Client360Sources> {
    views::Client360Sources::find(
        manifest
            .sources
            .iter()
            .map(|(name, s)| (name.as_str(), s.plugin.as_str(), s.enabled)),
    )
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

/// The manifest's destination, which must exist already (a file or directory is not
/// created just to be read).
fn existing_destination(loaded: &Loaded) -> Result<DestinationPlan> {
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

fn cmd_clients(loaded: &Loaded, wanted: &[String], json: bool) -> Result<ExitCode> {
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

/// (name, plugin) of every source the manifest declares, enabled or not: the warehouse
/// may hold any of them.
fn manifest_sources(loaded: &Loaded) -> Vec<(String, String)> {
    loaded
        .manifest
        .sources
        .iter()
        .map(|(name, s)| (name.clone(), s.plugin.clone()))
        .collect()
}

/// Exit code 3 when a `[quality]` limit broke (each breach printed to stderr too).
fn breach_code(report: &QualityReport) -> ExitCode {
    if report.breaches.is_empty() {
        return ExitCode::SUCCESS;
    }
    for b in &report.breaches {
        eprintln!("quality breach: {b}");
    }
    ExitCode::from(quality::EXIT_BREACH)
}

fn cmd_quality(loaded: &Loaded, args: &QualityArgs) -> Result<ExitCode> {
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

/// Peak resident set size of this process (Linux: VmHWM), for the closing summary.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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

fn cmd_state(loaded: &Loaded, command: &StateCommand) -> Result<ExitCode> {
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

/// Makes the manifest's directory the working directory, so that every relative path in
/// the manifest, the host's own and those inside a source's `config` (a `sqlite:` URL, a
/// certificate file), means the same file wherever `tributary` is started from. Paths
/// given on the command line are resolved against the caller's directory first.
fn enter_manifest_dir(loaded: &Loaded, command: &mut Command) -> Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Command::Run(args) = command {
        if let Some(report) = &mut args.report {
            *report = cwd.join(&*report);
        }
    }
    std::env::set_current_dir(&loaded.dir).with_context(|| {
        format!(
            "cannot enter the manifest's directory {}",
            loaded.dir.display()
        )
    })
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core),
/// and memory freed in one arena is not reused by another. With a tokio runtime in every
/// plugin plus the host's threads, that fragmentation alone doubled a sync's peak RSS
/// (a 200,000-invoice QuickBooks sync: 110–146 MiB, 54 MiB with two arenas, at the same
/// speed). Two arenas for the whole process, plugins included (they share the C
/// allocator), unless `MALLOC_ARENA_MAX` says otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it runs first thing in `main`,
        // before any other thread exists, and a refusal (return 0) changes nothing.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Command::PluginHost(args) = &cli.command {
        return tributary::isolation::plugin_host(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // On a terminal the progress lines say what happens; logs would
                // bury them. Elsewhere (CI, cron, systemd) the log is the record.
                let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
                tracing_subscriber::EnvFilter::new(if terminal { "warn" } else { "info,sqlx=warn" })
            }),
        )
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            // SIGINT, SIGTERM (systemd, Docker, Kubernetes) and SIGHUP all land here.
            eprintln!("stopping: finishing the current batches (signal again to abort)");
        });
    }

    let mut cli = cli;
    let result = load_manifest(cli.manifest.as_deref())
        .and_then(|loaded| enter_manifest_dir(&loaded, &mut cli.command).map(|()| loaded))
        .and_then(|loaded| match &cli.command {
            Command::Validate => cmd_validate(&loaded),
            Command::Plugins => cmd_plugins(&loaded),
            Command::Spec { source } => cmd_spec(&loaded, source),
            Command::Check { source } => cmd_check(&loaded, source.as_ref(), cancel.clone()),
            Command::Discover { source } => cmd_discover(&loaded, source.as_ref(), cancel.clone()),
            Command::Run(args) => cmd_run(&loaded, args, cancel.clone()),
            Command::State { command } => cmd_state(&loaded, command),
            Command::Clients { clients, json } => cmd_clients(&loaded, clients, *json),
            Command::Quality(args) => cmd_quality(&loaded, args),
            Command::PluginHost(_) => unreachable!("the plugin process returns before this"),
        });
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
