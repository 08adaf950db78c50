//! `watch`: every selected source in incremental sync on its own interval, through one
//! writer (the same destination, state, deletion and quality rules as `run`), each
//! committed change published as an event.
//!
//! One thread per source runs its cycles; a failing source backs off (doubling from its
//! interval up to `[watch] backoff_max`) without stopping the others. A destination or
//! sink failure stops `watch` (exit 1): nothing after it could be committed, and the
//! next start resumes from the last committed state. Ctrl-C / SIGTERM stop it: cycles in
//! flight are cancelled, what they sent is committed with the state that covers it (or,
//! if a batch never reached the writer, read again next time), and the process exits.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tributary_sdk::usage::Usage;
use tributary_sdk::{Catalog, ConfiguredCatalog, SyncMode};

use super::run::{open_destination, prepare, Prepared};
use super::{build_plan, lock_credentials, lock_destination, scan, services, usage, Loaded};
use crate::destination::StateMap;
use crate::events::{ChangeEvent, CommitSink, EventBus, Op};
use crate::plan::{parse_duration, parse_interval, Overrides, Plan};
use crate::quality::StreamTracker;
use crate::runner::{CommitHooks, PreparedSource, RunOptions, Services, StreamReport, Writer};
use crate::sandbox;
use crate::server::{QuickBooksWebhook, ServerConfig, ServerState, Trigger};
use crate::sinks::NatsSink;
use crate::watch::metrics::{ErrorLabels, Metrics, SourceLabels, StreamLabels};
use crate::watch::schedule::{next_wait, Wake, Woken};
use crate::watch::status::{Health, Registry};

/// The arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only these sources (repeatable; watches them even if disabled).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Serve HTTP on this address instead of `[watch] listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// If another process holds the destination or a source's credentials, wait for it.
    #[arg(long)]
    pub wait: bool,
}

/// Settings of `[watch]`, resolved.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Interval of sources without their own.
    pub interval: Duration,
    /// Longest wait before retrying a failing source.
    pub backoff_max: Duration,
    /// Events kept for replay.
    pub replay: usize,
    /// Events a subscriber may lag.
    pub subscriber_lag: usize,
}

impl WatchSettings {
    fn from_manifest(loaded: &Loaded) -> Result<WatchSettings> {
        let w = &loaded.manifest.watch;
        let bad = |key: &str, e: String| usage(format!("[watch] {key}: {e}"));
        Ok(WatchSettings {
            interval: match &w.interval {
                Some(s) => parse_interval(s).map_err(|e| bad("interval", e))?,
                None => Duration::from_secs(10),
            },
            backoff_max: match &w.backoff_max {
                Some(s) => parse_duration(s).map_err(|e| bad("backoff_max", e))?,
                None => Duration::from_secs(300),
            },
            replay: w.replay.unwrap_or(10_000),
            subscriber_lag: w.subscriber_lag.unwrap_or(4_096).max(1),
        })
    }
}

/// What every source loop shares.
pub struct Shared {
    /// The writer (the destination's one owner).
    pub writer: Writer,
    /// State as committed; each cycle starts from it.
    pub state: Arc<Mutex<StateMap>>,
    /// Per-source health, for `/health` and the status page.
    pub status: Arc<Registry>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The committed-change feed.
    pub bus: Arc<EventBus>,
    /// Wakes of each source's loop, by source name.
    pub wakes: HashMap<String, Arc<Wake>>,
    /// Set when `watch` stops (signal, or a writer failure).
    pub stopping: Arc<AtomicBool>,
}

/// `watch`: runs until interrupted; exit 0 after a clean stop, 1 if the destination or a
/// sink failed.
pub fn watch(loaded: &Loaded, args: &WatchArgs, cancel: Arc<AtomicBool>) -> Result<ExitCode> {
    let settings = WatchSettings::from_manifest(loaded)?;
    let registry = scan(loaded, true)?;
    let overrides = Overrides {
        sources: args.sources.clone(),
        ..Overrides::default()
    };
    let mut plan = build_plan(loaded, &registry, &overrides)?;
    if plan.sources.is_empty() {
        return Err(usage(format!(
            "{}: no source selected (enable one, or pass --source)",
            loaded.path.display()
        )));
    }
    let _destination_lock = lock_destination(&plan.destination, args.wait)?;
    let _credential_locks = lock_credentials(&plan, args.wait)?;
    let sandboxes = sandbox::start(&mut plan)?;
    let services = services(&plan, cancel.clone());
    let Prepared {
        sources, catalogs, ..
    } = prepare(&plan, &services, false, &[])?;

    let dest = open_destination(&plan, &sources, &catalogs)?;
    let state = Arc::new(Mutex::new(
        dest.load_state().context("cannot read saved state")?,
    ));
    let status = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new());
    let bus = EventBus::new(settings.replay, settings.subscriber_lag);
    let hooks = commit_hooks(
        &sources,
        &catalogs,
        sinks(loaded, &metrics)?,
        state.clone(),
        status.clone(),
        metrics.clone(),
        bus.clone(),
    );
    let writer = Writer::start(dest, Some(hooks)).context("cannot start the writer thread")?;
    let mut wakes = HashMap::new();
    for p in &sources {
        status.add(
            &p.plan.name,
            &p.plan.plugin.info().name,
            interval_of(loaded, &p.plan.name, &settings)?.as_secs_f64(),
        );
        wakes.insert(p.plan.name.clone(), Arc::new(Wake::default()));
    }
    let shared = Arc::new(Shared {
        writer,
        state,
        status,
        metrics,
        bus,
        wakes,
        stopping: Arc::new(AtomicBool::new(false)),
    });
    let server = start_server(loaded, args, &plan, &sources, &sandboxes, &shared)?;
    eprintln!("watching {} source(s); Ctrl-C to stop", sources.len());

    std::thread::scope(|scope| {
        for source in &sources {
            let interval =
                interval_of(loaded, &source.plan.name, &settings).unwrap_or(settings.interval);
            let catalog = catalogs.get(&source.plan.name);
            let (shared, services, settings) = (&shared, &services, &settings);
            scope.spawn(move || source_loop(source, catalog, interval, settings, shared, services));
        }
        // The signal flag is the host's; wake every loop when it is set.
        scope.spawn(|| {
            while !cancel.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            shared.stopping.store(true, Ordering::SeqCst);
            cancel.store(true, Ordering::SeqCst);
            for wake in shared.wakes.values() {
                wake.stop();
            }
        });
    });
    drop(server);
    let shared = match Arc::try_unwrap(shared) {
        Ok(s) => s,
        Err(_) => anyhow::bail!("a source loop outlived watch"),
    };
    let failure = shared.writer.failure();
    shared.writer.finish();
    match failure {
        Some(e) => {
            eprintln!("watch stopped: nothing more can be committed: {e}");
            Ok(ExitCode::from(1))
        }
        None => {
            eprintln!("watch stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A source's polling interval: its own, else `[watch] interval`.
fn interval_of(loaded: &Loaded, source: &str, settings: &WatchSettings) -> Result<Duration> {
    match loaded
        .manifest
        .sources
        .get(source)
        .and_then(|s| s.interval.as_deref())
    {
        Some(s) => parse_interval(s).map_err(|e| usage(format!("[sources.{source}] {e}"))),
        None => Ok(settings.interval),
    }
}

/// Runs one source's cycles until `watch` stops.
fn source_loop(
    source: &PreparedSource,
    catalog: Option<&Catalog>,
    interval: Duration,
    settings: &WatchSettings,
    shared: &Shared,
    services: &Services,
) {
    let name = source.plan.name.as_str();
    let Some(wake) = shared.wakes.get(name) else {
        return;
    };
    let mut failures = 0u32;
    let mut only: BTreeSet<String> = BTreeSet::new();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        shared.status.update(name, |v| v.next_cycle = None);
        // The runner lays secrets rotated by earlier cycles over the planned config.
        let cycle = cycle_of(source, catalog, &only);
        let state = shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let options = RunOptions {
            full_refresh: false,
            parallelism: 1,
        };
        let used = services.usage.of(name);
        let reports = shared.writer.read_source(cycle, &state, &options, services);
        shared
            .metrics
            .add_usage(name, since(services.usage.of(name), used));
        if let Some(e) = shared.writer.failure() {
            tracing::error!(
                source = name,
                "a commit failed (destination or sink); watch stops: {e}"
            );
            shared.stopping.store(true, Ordering::SeqCst);
            return;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let ok = record_cycle(name, &reports, shared);
        failures = if ok { 0 } else { failures.saturating_add(1) };
        let wait = next_wait(interval, failures, settings.backoff_max).saturating_sub(if ok {
            started.elapsed()
        } else {
            Duration::ZERO
        });
        shared.status.update(name, |v| {
            v.next_cycle = chrono::Duration::from_std(wait)
                .ok()
                .map(|d| chrono::Utc::now() + d);
        });
        only = match wake.wait(wait) {
            Woken::Stop => return,
            Woken::Due => BTreeSet::new(),
            Woken::Fetch(streams) => {
                tracing::info!(source = name, streams = ?streams, "fetch requested");
                streams
            }
        };
    }
}

/// What was used after `before`.
fn since(now: Usage, before: Usage) -> Usage {
    Usage {
        requests: now.requests.saturating_sub(before.requests),
        throttles: now.throttles.saturating_sub(before.throttles),
    }
}

/// The source for one cycle: its incremental catalog (narrowed to `only` when a webhook
/// named streams), with fresh quality trackers.
fn cycle_of(
    source: &PreparedSource,
    catalog: Option<&Catalog>,
    only: &BTreeSet<String>,
) -> PreparedSource {
    let streams: Vec<_> = source
        .catalog
        .streams
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .cloned()
        .collect();
    // A webhook naming nothing this source reads gets a whole cycle, not an empty one.
    let streams = if streams.is_empty() {
        source.catalog.streams.clone()
    } else {
        streams
    };
    let trackers = streams
        .iter()
        .filter_map(|s| {
            let schema = catalog?
                .streams
                .iter()
                .find(|d| d.name == s.name)
                .map(|d| &d.json_schema);
            StreamTracker::new(schema, None)
                .ok()
                .map(|t| (s.name.clone(), t))
        })
        .collect();
    PreparedSource {
        plan: source.plan.clone(),
        catalog: ConfiguredCatalog { streams },
        trackers,
    }
}

/// Folds one cycle's reports into the status and metrics; whether every stream completed.
fn record_cycle(source: &str, reports: &[StreamReport], shared: &Shared) -> bool {
    let now = chrono::Utc::now();
    let ok = reports.iter().all(|r| r.error.is_none());
    shared
        .metrics
        .cycles
        .get_or_create(&SourceLabels {
            source: source.to_string(),
        })
        .inc();
    for r in reports {
        let labels = StreamLabels {
            source: source.to_string(),
            stream: r.stream.clone(),
        };
        match &r.error {
            None => {
                shared
                    .metrics
                    .last_success
                    .get_or_create(&labels)
                    .set(now.timestamp_micros() as f64 / 1e6);
            }
            Some(e) => {
                shared
                    .metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        source: source.to_string(),
                        kind: e.kind.to_string(),
                    })
                    .inc();
            }
        }
    }
    let first_error = reports
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.stream)));
    shared.status.update(source, |v| {
        v.cycles += 1;
        for r in reports {
            let s = v.streams.entry(r.stream.clone()).or_default();
            match &r.error {
                None => {
                    s.last_success = Some(now);
                    s.last_error = None;
                }
                Some(e) => s.last_error = Some(e.to_string()),
            }
        }
        if ok {
            v.health = Health::Ok;
            v.consecutive_failures = 0;
            v.last_success = Some(now);
            v.last_error = None;
        } else {
            v.health = Health::Failing;
            v.consecutive_failures += 1;
            v.last_error = first_error;
        }
    });
    if !ok {
        tracing::warn!(source, "cycle incomplete; backing off");
    }
    ok
}

/// The writer's hooks: sinks before each commit; after it, metrics, status and the bus.
fn commit_hooks(
    sources: &[PreparedSource],
    catalogs: &HashMap<String, Catalog>,
    sinks: Vec<Box<dyn CommitSink>>,
    state: Arc<Mutex<StateMap>>,
    status: Arc<Registry>,
    metrics: Arc<Metrics>,
    bus: Arc<EventBus>,
) -> CommitHooks {
    let mut client_fields = HashMap::new();
    let mut full_refresh = BTreeSet::new();
    for p in sources {
        let Some(catalog) = catalogs.get(&p.plan.name) else {
            continue;
        };
        for d in &catalog.streams {
            if let Some(field) = &d.client_field {
                client_fields.insert((p.plan.name.clone(), d.name.clone()), field.clone());
            }
        }
        for s in &p.catalog.streams {
            if s.sync_mode == SyncMode::FullRefresh {
                full_refresh.insert((p.plan.name.clone(), s.name.clone()));
            }
        }
    }
    let mut unchanged = Unchanged::new(full_refresh);
    let committed = move |events: Vec<ChangeEvent>| {
        let events = unchanged.filter(events);
        if events.is_empty() {
            return;
        }
        let mut per_stream: HashMap<(&str, &str), (u64, u64, Option<&str>)> = HashMap::new();
        for e in &events {
            let entry = per_stream.entry((&e.source, &e.stream)).or_default();
            match e.op {
                Op::Upsert => entry.0 += 1,
                Op::Delete => entry.1 += 1,
            }
            if let Some(c) = e.cursor.as_deref() {
                if entry.2.is_none_or(|newest| c > newest) {
                    entry.2 = Some(c);
                }
            }
        }
        for ((source, stream), (upserts, deletes, newest)) in &per_stream {
            let labels = StreamLabels {
                source: source.to_string(),
                stream: stream.to_string(),
            };
            metrics.records.get_or_create(&labels).inc_by(*upserts);
            metrics.deletes.get_or_create(&labels).inc_by(*deletes);
            if let Some(at) = newest.and_then(tributary_sdk::cursor_instant) {
                metrics.observe_cursor(&labels, at);
            }
            status.update(source, |v| {
                let s = v.streams.entry(stream.to_string()).or_default();
                s.records += upserts;
                s.deletes += deletes;
                if let Some(c) = newest {
                    if s.newest_cursor.as_deref().is_none_or(|old| *c > old) {
                        s.newest_cursor = Some(c.to_string());
                    }
                }
            });
        }
        bus.publish(events);
    };
    CommitHooks {
        sinks,
        committed: Box::new(committed),
        client_fields,
        state,
    }
}

/// Drops re-reads of unchanged rows from the feed: a full-refresh stream re-sends every
/// row each cycle, and subscribers want changes. Keeps one hash per row of those streams
/// only (incremental streams send changed rows already).
struct Unchanged {
    full_refresh: BTreeSet<(String, String)>,
    seen: HashMap<(Arc<str>, Arc<str>, String), u64>,
}

impl Unchanged {
    fn new(full_refresh: BTreeSet<(String, String)>) -> Unchanged {
        Unchanged {
            full_refresh,
            seen: HashMap::new(),
        }
    }

    fn filter(&mut self, events: Vec<ChangeEvent>) -> Vec<ChangeEvent> {
        use std::hash::{Hash, Hasher};
        events
            .into_iter()
            .filter(|e| {
                if !self
                    .full_refresh
                    .contains(&(e.source.to_string(), e.stream.to_string()))
                {
                    return true;
                }
                let mut h = std::hash::DefaultHasher::new();
                (e.op == Op::Delete).hash(&mut h);
                e.record.get().hash(&mut h);
                let hash = h.finish();
                let key = (e.source.clone(), e.stream.clone(), e.pk.clone());
                self.seen.insert(key, hash) != Some(hash)
            })
            .collect()
    }
}

/// The sinks the manifest configures (`[sinks.nats]`), connected.
fn sinks(loaded: &Loaded, metrics: &Arc<Metrics>) -> Result<Vec<Box<dyn CommitSink>>> {
    let mut out: Vec<Box<dyn CommitSink>> = Vec::new();
    if let Some(config) = &loaded.manifest.sinks.nats {
        let mut config = config.clone();
        if let Some(path) = config.credentials_path(&loaded.dir) {
            config.credentials = Some(path.display().to_string());
        }
        let sink = NatsSink::connect(&config)?.with_metrics(metrics.clone());
        out.push(Box::new(sink));
    }
    Ok(out)
}

/// The running HTTP server; dropping it stops the server and waits for it.
struct ServerHandle {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wakes the source a webhook names, for the streams of the entities it names.
struct WakeSources {
    wakes: HashMap<String, Arc<Wake>>,
    streams: HashMap<String, Vec<String>>,
}

impl Trigger for WakeSources {
    fn fetch_now(&self, source: &str, entities: Vec<String>) {
        let Some(wake) = self.wakes.get(source) else {
            return;
        };
        let known = self.streams.get(source).map(Vec::as_slice).unwrap_or(&[]);
        wake.fetch(streams_of_entities(&entities, known));
    }
}

/// The streams of a source that hold QuickBooks `entities` (`Invoice` → `invoices`,
/// `CreditMemo` → `credit_memos`, `JournalEntry` → `journal_entries`), plus its
/// deletions stream: a notification may be a delete. Empty (every stream) when none
/// matches.
fn streams_of_entities(entities: &[String], known: &[String]) -> Vec<String> {
    let mut out: Vec<String> = entities
        .iter()
        .map(|e| {
            let mut snake = String::new();
            for (i, c) in e.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            match snake.strip_suffix('y') {
                Some(stem) => format!("{stem}ies"),
                None => format!("{snake}s"),
            }
        })
        .filter(|s| known.contains(s))
        .collect();
    if out.is_empty() {
        return Vec::new();
    }
    if known.iter().any(|s| s == "deleted_objects") {
        out.push("deleted_objects".to_string());
    }
    out
}

/// Starts the HTTP server when `--listen` or `[watch] listen` says where, and points
/// sandboxed QuickBooks emulators' webhooks at it.
fn start_server(
    loaded: &Loaded,
    args: &WatchArgs,
    plan: &Plan,
    sources: &[PreparedSource],
    sandboxes: &sandbox::Sandboxes,
    shared: &Arc<Shared>,
) -> Result<Option<ServerHandle>> {
    let section = &loaded.manifest.watch;
    let Some(listen) = args.listen.clone().or_else(|| section.listen.clone()) else {
        return Ok(None);
    };
    let Some(token) = section.events_token.clone().filter(|t| !t.is_empty()) else {
        return Err(usage(
            "[watch] events_token is required with listen: subscribers must authenticate",
        ));
    };
    let listener = std::net::TcpListener::bind(&listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut config = ServerConfig::new(addr, token);
    config.health_failures = section.health_failures.unwrap_or(3);
    for (source, hook) in &section.webhooks {
        let Some(s) = plan.sources.iter().find(|s| &s.name == source) else {
            continue;
        };
        let realm_id = s.config["realm_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        config.webhooks.push(QuickBooksWebhook {
            source: source.clone(),
            realm_id,
            verifier_token: hook.verifier_token.clone(),
        });
    }
    // A sandboxed QuickBooks sends its webhooks here, signed with a token made up now.
    let mut point = Vec::new();
    for s in plan.sources.iter().filter(|s| s.sandboxed) {
        let Some(control) = sandboxes.control_url(&s.name) else {
            continue;
        };
        if config.webhooks.iter().any(|w| w.source == s.name) {
            continue;
        }
        let verifier_token = random_token()?;
        config.webhooks.push(QuickBooksWebhook {
            source: s.name.clone(),
            realm_id: s.config["realm_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            verifier_token: verifier_token.clone(),
        });
        point.push((control.to_string(), verifier_token));
    }
    let trigger = WakeSources {
        wakes: shared.wakes.clone(),
        streams: sources
            .iter()
            .map(|p| {
                let names = p.catalog.streams.iter().map(|s| s.name.clone()).collect();
                (p.plan.name.clone(), names)
            })
            .collect(),
    };
    let state = ServerState::new(
        config,
        shared.bus.clone(),
        shared.status.clone(),
        shared.metrics.clone(),
        Arc::new(trigger),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tributary-http")
        .enable_all()
        .build()
        .context("cannot start the HTTP server's runtime")?;
    let thread = std::thread::Builder::new()
        .name("tributary-http".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot serve: {e}");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = rx.await;
                };
                if let Err(e) = crate::server::serve(listener, state, shutdown).await {
                    tracing::error!("the HTTP server failed: {e}");
                }
            });
        })
        .context("cannot start the HTTP server's thread")?;
    let webhook_url = format!("http://{addr}/webhooks/quickbooks");
    for (control, verifier_token) in point {
        if let Err(e) = sandbox::set_webhook(&control, &webhook_url, &verifier_token) {
            tracing::warn!("the sandbox will not send webhooks: {e}");
        }
    }
    eprintln!("listening on http://{addr}");
    Ok(Some(ServerHandle {
        shutdown: Some(tx),
        thread: Some(thread),
    }))
}

/// 32 random hex characters from the kernel.
fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_entities_name_their_streams_and_the_deletions() {
        let known: Vec<String> = [
            "invoices",
            "credit_memos",
            "journal_entries",
            "deleted_objects",
        ]
        .map(String::from)
        .into();
        let got = streams_of_entities(
            &["Invoice".into(), "CreditMemo".into(), "JournalEntry".into()],
            &known,
        );
        assert_eq!(
            got,
            [
                "invoices",
                "credit_memos",
                "journal_entries",
                "deleted_objects"
            ]
        );
        assert!(
            streams_of_entities(&["Vendor".into()], &known).is_empty(),
            "unknown: all"
        );
    }
}
