//! Runs a plan: one thread per source calls its plugin, one writer thread owns the
//! destination. Records flow through a bounded channel (backpressure on the plugin);
//! state checkpoints ride the same channel, so they are staged after the records they
//! cover and committed in the same transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tributary_sdk::host::{HostHandler, KeyBatch, RecordBatch};
use tributary_sdk::{
    Catalog, ConfiguredCatalog, ConfiguredStream, ConnectorError, ControlMessage, Coverage,
    ErrorKind, LogLevel, ReadRequest, SnapshotEvent, StreamStatus, SyncMode, Window,
};

use crate::credentials::Credentials;
use crate::destination::{self, state_key, Destination, StateMap};
use crate::plan::SourcePlan;
use crate::progress::Progress;
use crate::quality::{StreamQuality, StreamTracker};

/// Batches queued between the plugins and the writer before plugins block. Small on
/// purpose: a batch can hold 10,000 records (megabytes), and memory is bounded by
/// depth × batch size; the writer is faster than any source, so depth buys nothing.
const QUEUE_DEPTH: usize = 4;
/// Commit at least this often while data keeps arriving.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// ...or after this many staged records.
const COMMIT_ROWS: usize = 200_000;

enum WriterMsg {
    Records {
        source: Arc<str>,
        stream: String,
        batch: RecordBatch,
        /// Records that broke the stream's schema: (index, JSON array of messages).
        violations: Vec<(usize, String)>,
    },
    State {
        source: Arc<str>,
        stream: String,
        state: String,
    },
    /// Live keys of an open snapshot.
    Keys {
        source: Arc<str>,
        stream: String,
        keys: KeyBatch,
    },
    /// A snapshot opens, closes (marking the unseen rows deleted) or is given up.
    Snapshot {
        source: Arc<str>,
        stream: String,
        op: SnapshotOp,
    },
    /// `source` is done: commit everything staged, then answer.
    Flush(Arc<str>, SyncSender<Result<(), String>>),
}

#[derive(Debug, PartialEq, Eq)]
enum SnapshotOp {
    Begin,
    Finish,
    Abandon,
}

/// The writer's failure, shared with every handler so plugins stop early.
type WriterError = Arc<Mutex<Option<String>>>;

/// Rows marked deleted by completed snapshots, per (source, stream), counted once
/// committed.
type Marked = Arc<Mutex<HashMap<(String, String), u64>>>;

fn now_stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn writer_loop(
    mut dest: Box<dyn Destination>,
    rx: Receiver<WriterMsg>,
    failed: WriterError,
    marked: Marked,
) {
    let mut staged_rows = 0usize;
    let mut txn_started: Option<Instant> = None;
    let mut error: Option<String> = None;
    let mut extracted_at = String::new();
    // Marks staged in the open transaction; they count once it commits.
    let mut pending_marks: Vec<((String, String), u64)> = Vec::new();

    let fail = |e: String, dest: &mut Box<dyn Destination>, error: &mut Option<String>| {
        tracing::error!("destination failed: {e}");
        dest.rollback();
        *error = Some(e.clone());
        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    let committed = |pending: &mut Vec<((String, String), u64)>| {
        let mut m = marked.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in pending.drain(..) {
            *m.entry(k).or_default() += n;
        }
    };

    loop {
        // Block for the first message; then drain what is queued before committing, so
        // many small checkpoints share one fsync.
        let first = match txn_started {
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
            Some(t) => {
                let left = COMMIT_EVERY.saturating_sub(t.elapsed());
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if error.is_none() {
                            match dest.commit() {
                                Ok(()) => committed(&mut pending_marks),
                                Err(e) => fail(e.to_string(), &mut dest, &mut error),
                            }
                        }
                        staged_rows = 0;
                        txn_started = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Records {
                    source,
                    stream,
                    batch,
                    violations,
                } => {
                    if error.is_none() {
                        extracted_at.clear();
                        extracted_at.push_str(&now_stamp());
                        staged_rows += batch.len();
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) =
                            dest.write_flagged(&source, &stream, &batch, &violations, &extracted_at)
                        {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::State {
                    source,
                    stream,
                    state,
                } => {
                    if error.is_none() {
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) = dest.stage_state(&source, &stream, &state) {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Keys {
                    source,
                    stream,
                    keys,
                } => {
                    if error.is_none() {
                        staged_rows += keys.len();
                        txn_started.get_or_insert_with(Instant::now);
                        if let Err(e) = dest.snapshot_keys(&source, &stream, &keys) {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Snapshot { source, stream, op } => {
                    if error.is_none() {
                        txn_started.get_or_insert_with(Instant::now);
                        let result = match op {
                            SnapshotOp::Begin => dest.begin_snapshot(&source, &stream),
                            SnapshotOp::Abandon => {
                                dest.abandon_snapshot(&source, &stream);
                                Ok(())
                            }
                            SnapshotOp::Finish => dest
                                .finish_snapshot(&source, &stream, &now_stamp())
                                .map(|n| {
                                    tracing::info!(source = %source, stream, rows = n, "snapshot complete: rows not seen at the source marked deleted");
                                    pending_marks.push(((source.to_string(), stream.clone()), n));
                                }),
                        };
                        if let Err(e) = result {
                            fail(e.to_string(), &mut dest, &mut error);
                        }
                    }
                }
                WriterMsg::Flush(source, ack) => {
                    if error.is_none() {
                        dest.seal(&source);
                        match dest.commit() {
                            Ok(()) => committed(&mut pending_marks),
                            Err(e) => fail(e.to_string(), &mut dest, &mut error),
                        }
                    }
                    staged_rows = 0;
                    txn_started = None;
                    let _ = ack.send(match &error {
                        None => Ok(()),
                        Some(e) => Err(e.clone()),
                    });
                }
            }
            let due = txn_started.is_some_and(|t| t.elapsed() >= COMMIT_EVERY)
                || staged_rows >= COMMIT_ROWS;
            if !due {
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
                }
            }
        }
        if txn_started.is_some() && error.is_none() {
            match dest.commit() {
                Ok(()) => committed(&mut pending_marks),
                Err(e) => fail(e.to_string(), &mut dest, &mut error),
            }
        }
        staged_rows = 0;
        txn_started = None;
    }
    if error.is_none() {
        match dest.commit() {
            Ok(()) => committed(&mut pending_marks),
            Err(e) => tracing::error!("final commit failed: {e}"),
        }
    }
}

/// The outcome of one stream.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Source name.
    pub source: String,
    /// Stream name (`*` for a failure before any stream started).
    pub stream: String,
    /// Records received.
    pub records: u64,
    /// Rows deleted: deletion records from the connector plus rows a completed snapshot
    /// marked.
    pub deleted: u64,
    /// Seconds from start to end.
    pub seconds: f64,
    /// `None` = complete.
    pub error: Option<ConnectorError>,
    /// What the run measured of the stream's records (`None`: not measured).
    pub quality: Option<StreamQuality>,
}

#[derive(Default)]
struct StreamStats {
    records: u64,
    deleted_records: u64,
    started: Option<Instant>,
    finished: Option<Instant>,
    status: Option<StreamStatus>,
    snapshot: Option<SnapshotUse>,
}

/// What the host does with a stream's open snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotUse {
    /// Passed to the destination.
    Accepted(Coverage),
    /// Dropped: a window snapshot under a narrowed window proves nothing.
    Ignored,
}

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

/// The progress line's head: `source  done/total streams`.
fn streams_prefix(source: &str, done: usize, total: usize) -> String {
    format!("{source:<12} {done:>2}/{total:<2} streams")
}

/// Receives one source's output.
struct SourceHandler {
    source: Arc<str>,
    tx: SyncSender<WriterMsg>,
    failed: WriterError,
    cancel: Arc<AtomicBool>,
    credentials: Arc<Credentials>,
    stats: Mutex<HashMap<String, StreamStats>>,
    total: AtomicU64,
    progress: indicatif::ProgressBar,
    log_level: LogLevel,
    /// `check`/`discover` calls may send control messages but no data.
    accepts_data: bool,
    /// The read's state scope (see [`scope_of`]).
    scope: Option<String>,
    /// The read's record limit per stream.
    limit: Option<u64>,
    /// Streams requested, for the progress line.
    streams: usize,
    /// Quality trackers of the streams measured. Each has its own lock: the source's
    /// streams are measured in parallel when its plugin sends them so.
    trackers: HashMap<String, Mutex<StreamTracker>>,
}

impl SourceHandler {
    fn stop_reason(&self) -> Option<String> {
        if self.cancel.load(Ordering::Relaxed) {
            return Some("cancelled".to_string());
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| format!("destination failed: {e}"))
    }
}

impl HostHandler for SourceHandler {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        if !self.accepts_data {
            return Err("records are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let n = batch.len() as u64;
        let deleted = batch.iter().filter(|r| r.deleted).count() as u64;
        {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            let s = stats.entry(stream.to_string()).or_default();
            s.started.get_or_insert_with(Instant::now);
            s.records += n;
            s.deleted_records += deleted;
        }
        // Measured on the source's own thread, so sources validate in parallel and the
        // writer (the one serial stage) does no extra work.
        let violations = match self.trackers.get(stream) {
            Some(t) => t.lock().unwrap_or_else(|p| p.into_inner()).observe(&batch),
            None => Vec::new(),
        };
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        self.progress.set_position(total);
        self.progress.set_message(stream.to_string());
        self.tx
            .send(WriterMsg::Records {
                source: self.source.clone(),
                stream: stream.to_string(),
                batch,
                violations,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        if !self.accepts_data {
            return Err("state is not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        serde_json::from_str::<serde::de::IgnoredAny>(state)
            .map_err(|e| format!("state of {stream} is not valid JSON: {e}"))?;
        self.tx
            .send(WriterMsg::State {
                source: self.source.clone(),
                stream: state_key(stream, self.scope.as_deref()),
                state: state.to_string(),
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        if !self.accepts_data {
            return Err("keys are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let accepted = {
            let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            matches!(
                stats.get(stream).and_then(|s| s.snapshot),
                Some(SnapshotUse::Accepted(_))
            )
        };
        if !accepted {
            return Ok(());
        }
        self.tx
            .send(WriterMsg::Keys {
                source: self.source.clone(),
                stream: stream.to_string(),
                keys,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        if !self.accepts_data {
            return Err("snapshots are not accepted outside read".to_string());
        }
        if let Some(reason) = self.stop_reason() {
            return Err(reason);
        }
        let op = {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            let s = stats.entry(stream.to_string()).or_default();
            match event {
                SnapshotEvent::Begin { coverage } => {
                    if coverage == Coverage::Window && self.scope.is_some() {
                        tracing::debug!(source = %self.source, stream, "snapshot ignored: the window narrows this read, so absent rows prove nothing");
                        s.snapshot = Some(SnapshotUse::Ignored);
                        None
                    } else {
                        s.snapshot = Some(SnapshotUse::Accepted(coverage));
                        Some(SnapshotOp::Begin)
                    }
                }
                SnapshotEvent::Complete => match s.snapshot.take() {
                    Some(SnapshotUse::Accepted(Coverage::Window))
                        if self.limit.is_some_and(|l| s.records >= l) =>
                    {
                        tracing::info!(source = %self.source, stream, "snapshot not used: the record limit was reached, so the listing may be partial");
                        Some(SnapshotOp::Abandon)
                    }
                    Some(SnapshotUse::Accepted(_)) => Some(SnapshotOp::Finish),
                    _ => None,
                },
                SnapshotEvent::Abandon => match s.snapshot.take() {
                    Some(SnapshotUse::Accepted(_)) => Some(SnapshotOp::Abandon),
                    _ => None,
                },
            }
        };
        let Some(op) = op else { return Ok(()) };
        self.tx
            .send(WriterMsg::Snapshot {
                source: self.source.clone(),
                stream: stream.to_string(),
                op,
            })
            .map_err(|_| "the writer has stopped".to_string())
    }

    fn control(&self, message: ControlMessage) -> Result<(), String> {
        match message {
            ControlMessage::ConfigUpdate { values } => {
                self.credentials
                    .update(&self.source, &values)
                    .map_err(|e| e.to_string())?;
                // Key names only: values are secrets.
                let keys: Vec<&str> = values.keys().map(String::as_str).collect();
                tracing::info!(source = %self.source, keys = %keys.join(","), "persisted updated credentials");
                Ok(())
            }
        }
    }

    fn stream_status(&self, stream: &str, status: StreamStatus) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(stream.to_string()).or_default();
        match &status {
            StreamStatus::Started => {
                s.started.get_or_insert_with(Instant::now);
            }
            StreamStatus::Complete => {
                s.finished = Some(Instant::now());
                if !self.progress.is_hidden() {
                    self.progress.set_message(format!("{stream} done"));
                } else {
                    tracing::info!(source = %self.source, stream, records = s.records, "stream complete");
                }
            }
            StreamStatus::Incomplete { error } => {
                s.finished = Some(Instant::now());
                tracing::warn!(source = %self.source, stream, "stream incomplete: {error}");
            }
        }
        s.status = Some(status);
        if !self.progress.is_hidden() {
            let done = stats.values().filter(|s| s.finished.is_some()).count();
            self.progress
                .set_prefix(streams_prefix(&self.source, done, self.streams));
        }
    }

    fn log(&self, level: LogLevel, target: &str, message: &str) {
        let source = &*self.source;
        match level {
            LogLevel::Error => tracing::error!(source, plugin_target = target, "{message}"),
            LogLevel::Warn => tracing::warn!(source, plugin_target = target, "{message}"),
            LogLevel::Info => tracing::info!(source, plugin_target = target, "{message}"),
            LogLevel::Debug => tracing::debug!(source, plugin_target = target, "{message}"),
            LogLevel::Trace => tracing::trace!(source, plugin_target = target, "{message}"),
        }
    }

    fn log_level(&self) -> LogLevel {
        self.log_level
    }

    fn is_cancelled(&self) -> bool {
        self.stop_reason().is_some()
    }
}

/// The most verbose level the host's subscriber would print.
pub fn host_log_level() -> LogLevel {
    match tracing::level_filters::LevelFilter::current() {
        f if f >= tracing::Level::TRACE => LogLevel::Trace,
        f if f >= tracing::Level::DEBUG => LogLevel::Debug,
        f if f >= tracing::Level::INFO => LogLevel::Info,
        f if f >= tracing::Level::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// Settings of one `run`.
pub struct RunOptions {
    /// Ignore committed state.
    pub full_refresh: bool,
    /// Sources at once.
    pub parallelism: usize,
}

/// Shared services for every source of a run.
pub struct Services {
    /// Credentials store.
    pub credentials: Arc<Credentials>,
    /// Ctrl-C flag.
    pub cancel: Arc<AtomicBool>,
    /// Progress display.
    pub progress: Arc<Progress>,
}

/// A handler for `check`/`discover` (control messages and logs only).
pub fn control_handler(source: &str, services: &Services) -> Arc<dyn HostHandler> {
    // The channel is never read: `accepts_data = false` refuses records and state.
    let (tx, _rx) = mpsc::sync_channel(1);
    Arc::new(SourceHandler {
        source: Arc::from(source),
        tx,
        failed: Arc::default(),
        cancel: services.cancel.clone(),
        credentials: services.credentials.clone(),
        stats: Mutex::default(),
        total: AtomicU64::new(0),
        progress: indicatif::ProgressBar::hidden(),
        log_level: host_log_level(),
        accepts_data: false,
        scope: None,
        limit: None,
        streams: 0,
        trackers: HashMap::new(),
    })
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
                    catalog
                        .streams
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
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

/// A source with its configured catalog, ready to read.
pub struct PreparedSource {
    /// The plan.
    pub plan: SourcePlan,
    /// Streams to read.
    pub catalog: ConfiguredCatalog,
    /// Quality trackers of the streams to measure (none: quality off).
    pub trackers: HashMap<String, StreamTracker>,
}

/// Reads every prepared source into `dest` and reports each stream.
pub fn run(
    sources: Vec<PreparedSource>,
    dest: Box<dyn Destination>,
    state: StateMap,
    options: &RunOptions,
    services: &Services,
) -> Vec<StreamReport> {
    let (tx, rx) = mpsc::sync_channel::<WriterMsg>(QUEUE_DEPTH);
    let failed: WriterError = Arc::default();
    let marked: Marked = Arc::default();
    let writer = {
        let (failed, marked) = (failed.clone(), marked.clone());
        std::thread::Builder::new()
            .name("tributary-writer".to_string())
            .spawn(move || writer_loop(dest, rx, failed, marked))
    };
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            return sources
                .iter()
                .map(|s| StreamReport {
                    source: s.plan.name.clone(),
                    stream: "*".to_string(),
                    records: 0,
                    deleted: 0,
                    seconds: 0.0,
                    error: Some(ConnectorError::system(format!(
                        "cannot start the writer thread: {e}"
                    ))),
                    quality: None,
                })
                .collect();
        }
    };

    let queue = Arc::new(Mutex::new(
        sources
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(state);
    std::thread::scope(|scope| {
        for _ in 0..options.parallelism {
            let queue = queue.clone();
            let reports = reports.clone();
            let tx = tx.clone();
            let failed = failed.clone();
            let state = state.clone();
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(source) = next else { break };
                let r = run_source(
                    source,
                    tx.clone(),
                    failed.clone(),
                    &state,
                    options,
                    services,
                );
                reports.lock().unwrap_or_else(|p| p.into_inner()).extend(r);
            });
        }
    });
    drop(tx);
    if writer.join().is_err() {
        tracing::error!("the writer thread panicked");
    }
    let mut out = std::mem::take(&mut *reports.lock().unwrap_or_else(|p| p.into_inner()));
    let marked = std::mem::take(&mut *marked.lock().unwrap_or_else(|p| p.into_inner()));
    for r in &mut out {
        r.deleted += marked
            .get(&(r.source.clone(), r.stream.clone()))
            .copied()
            .unwrap_or(0);
    }
    out.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
    out
}

fn run_source(
    source: PreparedSource,
    tx: SyncSender<WriterMsg>,
    failed: WriterError,
    state: &StateMap,
    options: &RunOptions,
    services: &Services,
) -> Vec<StreamReport> {
    let PreparedSource {
        plan,
        catalog,
        trackers,
    } = source;
    let started = Instant::now();
    let scope = scope_of(&plan.window);
    if let Some(scope) = &scope {
        tracing::info!(source = %plan.name, scope = %scope, "narrowed read: it keeps its own position and leaves the main sync's untouched");
    }
    let bar = services.progress.source_bar(&plan.name);
    let handler = Arc::new(SourceHandler {
        source: Arc::from(plan.name.as_str()),
        tx: tx.clone(),
        failed,
        cancel: services.cancel.clone(),
        credentials: services.credentials.clone(),
        stats: Mutex::default(),
        total: AtomicU64::new(0),
        progress: bar.clone(),
        log_level: host_log_level(),
        accepts_data: true,
        scope: scope.clone(),
        limit: plan.window.limit,
        streams: catalog.streams.len(),
        trackers: trackers
            .into_iter()
            .map(|(k, t)| (k, Mutex::new(t)))
            .collect(),
    });
    bar.set_prefix(streams_prefix(&plan.name, 0, catalog.streams.len()));
    let stream_state: BTreeMap<String, serde_json::Value> = if options.full_refresh {
        BTreeMap::new()
    } else {
        catalog
            .streams
            .iter()
            .filter(|s| s.sync_mode == SyncMode::Incremental)
            .filter_map(|s| {
                // A narrowed scope without a position of its own starts from the main
                // one: rows before it are in the warehouse already.
                let saved = state.get(&plan.name)?;
                saved
                    .get(&state_key(&s.name, scope.as_deref()))
                    .or_else(|| saved.get(&s.name))
                    .map(|v| (s.name.clone(), v.clone()))
            })
            .collect()
    };
    let request = ReadRequest {
        config: plan.config.clone(),
        catalog: catalog.clone(),
        state: stream_state,
        window: plan.window.clone(),
    };
    tracing::info!(source = %plan.name, plugin = %plan.plugin.info().name, streams = catalog.streams.len(), "sync started");
    let result = plan.plugin.read(&request, handler.clone());

    // Everything this source sent must be durable before we call a stream complete.
    let (ack_tx, ack_rx) = mpsc::sync_channel(1);
    let flushed = match tx.send(WriterMsg::Flush(handler.source.clone(), ack_tx)) {
        Ok(()) => ack_rx
            .recv()
            .unwrap_or_else(|_| Err("the writer stopped".to_string())),
        Err(_) => Err("the writer stopped".to_string()),
    };
    bar.finish_and_clear();

    let stats = std::mem::take(&mut *handler.stats.lock().unwrap_or_else(|p| p.into_inner()));
    let mut reports = Vec::new();
    for stream in &catalog.streams {
        let s = stats.get(&stream.name);
        let records = s.map_or(0, |s| s.records);
        let deleted = s.map_or(0, |s| s.deleted_records);
        let seconds = s
            .and_then(|s| {
                Some(
                    s.finished
                        .unwrap_or_else(Instant::now)
                        .duration_since(s.started?),
                )
            })
            .unwrap_or_else(|| started.elapsed())
            .as_secs_f64();
        let error = match (s.and_then(|s| s.status.clone()), &result, &flushed) {
            (_, _, Err(e)) => Some(ConnectorError::system(format!("destination: {e}"))),
            (Some(StreamStatus::Complete), _, _) => None,
            (Some(StreamStatus::Incomplete { error }), _, _) => Some(error),
            (_, Err(e), _) => Some(e.clone()),
            (_, Ok(()), _) => Some(ConnectorError::new(
                ErrorKind::System,
                "the connector returned without completing this stream",
            )),
        };
        let quality = handler.trackers.get(&stream.name).map(|t| {
            t.lock().unwrap_or_else(|p| p.into_inner()).report(
                &plan.name,
                &stream.name,
                chrono::Utc::now(),
            )
        });
        reports.push(StreamReport {
            source: plan.name.clone(),
            stream: stream.name.clone(),
            records,
            deleted,
            seconds,
            error,
            quality,
        });
    }
    if let Err(e) = &result {
        tracing::error!(source = %plan.name, "sync failed: {e}");
    } else {
        tracing::info!(source = %plan.name, records = handler.total.load(Ordering::Relaxed), "sync finished");
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler of source `src` whose writer channel the test reads.
    fn handler(scope: Option<&str>, limit: Option<u64>) -> (SourceHandler, Receiver<WriterMsg>) {
        let (tx, rx) = mpsc::sync_channel(64);
        let h = SourceHandler {
            source: Arc::from("src"),
            tx,
            failed: WriterError::default(),
            cancel: Arc::new(AtomicBool::new(false)),
            credentials: Arc::new(Credentials::new(
                std::env::temp_dir().join("tributary-unused-credentials.json"),
            )),
            stats: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            progress: indicatif::ProgressBar::hidden(),
            log_level: LogLevel::Warn,
            accepts_data: true,
            scope: scope.map(str::to_string),
            limit,
            streams: 0,
            trackers: HashMap::new(),
        };
        (h, rx)
    }

    /// Opens a snapshot of `coverage` on stream `s`, sends `records` records, completes it,
    /// and returns what reached the writer.
    fn snapshot_ops(
        scope: Option<&str>,
        limit: Option<u64>,
        coverage: Coverage,
        records: usize,
    ) -> Vec<SnapshotOp> {
        let (h, rx) = handler(scope, limit);
        h.snapshot("s", SnapshotEvent::Begin { coverage })
            .expect("begin");
        let batch = (0..records)
            .map(|i| tributary_sdk::Record::from_json(i.to_string(), "{}".to_string()))
            .collect();
        h.records("s", RecordBatch::from_records(batch))
            .expect("records");
        h.snapshot("s", SnapshotEvent::Complete).expect("complete");
        drop(h);
        rx.iter()
            .filter_map(|m| match m {
                WriterMsg::Snapshot { op, .. } => Some(op),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn window_snapshots_prove_nothing_under_a_narrowed_scope_or_a_reached_limit() {
        use SnapshotOp::{Abandon, Begin, Finish};
        // A whole read: its records are the listing.
        assert_eq!(
            snapshot_ops(None, None, Coverage::Window, 3),
            [Begin, Finish]
        );
        // Narrowed by clients or dates, whatever the connector says: never passed on.
        let clients = Some("clients=1");
        assert!(snapshot_ops(clients, None, Coverage::Window, 3).is_empty());
        let dates = Some("since=2026-01-01T00:00:00Z");
        assert!(snapshot_ops(dates, None, Coverage::Window, 3).is_empty());
        // Cut by the record limit: the listing may be partial.
        assert_eq!(
            snapshot_ops(None, Some(3), Coverage::Window, 3),
            [Begin, Abandon]
        );
        assert_eq!(
            snapshot_ops(None, Some(4), Coverage::Window, 3),
            [Begin, Finish]
        );
        // A listing the connector made without the window's filters stands.
        assert_eq!(
            snapshot_ops(dates, None, Coverage::Source, 0),
            [Begin, Finish]
        );
    }

    #[test]
    fn scope_names_the_narrowing_and_ignores_order_and_limit() {
        let mut w = Window {
            limit: Some(10),
            ..Window::default()
        };
        assert_eq!(scope_of(&w), None, "a limit alone keeps the main position");
        w.clients = vec!["2".into(), "1".into(), "2".into()];
        assert_eq!(scope_of(&w).as_deref(), Some("clients=1,2"));
        w.clients.reverse();
        assert_eq!(
            scope_of(&w).as_deref(),
            Some("clients=1,2"),
            "order does not matter"
        );
        w.start = Some(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("date")
                .with_timezone(&chrono::Utc),
        );
        assert_eq!(
            scope_of(&w).as_deref(),
            Some("clients=1,2;since=2026-01-01T00:00:00Z")
        );
        assert_eq!(
            state_key("tickets", scope_of(&w).as_deref()),
            "tickets [clients=1,2;since=2026-01-01T00:00:00Z]"
        );
    }
}
