//! Runs a plan: one thread per source calls its plugin, one writer thread owns the
//! destination. Records flow through a bounded channel (backpressure on the plugin);
//! state checkpoints ride the same channel, so they are staged after the records they
//! cover and committed in the same transaction.
//!
//! - this module schedules the sources (at most `parallelism` at once) and reports each
//!   stream ([`StreamReport`]);
//! - [`select_streams`] and [`scope_of`] decide what a read covers;
//! - `handler` receives one source's output on the plugin's thread (stats, quality,
//!   snapshot rules) and queues it for the writer;
//! - `writer` owns the destination: stages, commits, marks snapshot deletions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tributary_sdk::host::HostHandler;
use tributary_sdk::{
    ConfiguredCatalog, ConnectorError, ErrorKind, LogLevel, ReadRequest, StreamStatus, SyncMode,
};

use crate::credentials::Credentials;
use crate::destination::{state_key, Destination, StateMap};
use crate::plan::SourcePlan;
use crate::progress::Progress;
use crate::quality::{StreamQuality, StreamTracker};

mod handler;
mod select;
#[cfg(test)]
mod tests;
mod usage;
mod writer;

use handler::{streams_prefix, SourceHandler};
pub use select::{scope_of, select_streams};
pub use usage::UsageBook;
pub use writer::CommitHooks;
use writer::{writer_loop, Marked, WriterError, WriterMsg, QUEUE_DEPTH};

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
    /// API usage the plugins report, per source.
    pub usage: Arc<UsageBook>,
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
        usage: services.usage.clone(),
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
    let writer = match Writer::start(dest, None) {
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
    std::thread::scope(|scope| {
        for _ in 0..options.parallelism {
            let queue = queue.clone();
            let reports = reports.clone();
            let (writer, state) = (&writer, &state);
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(source) = next else { break };
                let r = writer.read_source(source, state, options, services);
                reports.lock().unwrap_or_else(|p| p.into_inner()).extend(r);
            });
        }
    });
    let marked = writer.finish();
    let mut out = std::mem::take(&mut *reports.lock().unwrap_or_else(|p| p.into_inner()));
    for r in &mut out {
        r.deleted += marked
            .get(&(r.source.clone(), r.stream.clone()))
            .copied()
            .unwrap_or(0);
    }
    out.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
    out
}

/// The writer thread, the one owner of the destination, and the queue to it. Sources
/// are read into it one [`Writer::read_source`] at a time (several at once from several
/// threads); [`Writer::finish`] commits what is left and stops it.
pub struct Writer {
    tx: SyncSender<WriterMsg>,
    failed: WriterError,
    marked: Marked,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread over `dest`; `hooks` (for `watch`) receive every
    /// committed change.
    pub fn start(
        dest: Box<dyn Destination>,
        hooks: Option<CommitHooks>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::sync_channel::<WriterMsg>(QUEUE_DEPTH);
        let failed: WriterError = Arc::default();
        let marked: Marked = Arc::default();
        let thread = {
            let (failed, marked) = (failed.clone(), marked.clone());
            std::thread::Builder::new()
                .name("tributary-writer".to_string())
                .spawn(move || writer_loop(dest, rx, failed, marked, hooks))?
        };
        Ok(Writer {
            tx,
            failed,
            marked,
            thread,
        })
    }

    /// Reads one source into the destination and reports each of its streams; returns
    /// once everything it sent is committed (or failed).
    pub fn read_source(
        &self,
        source: PreparedSource,
        state: &StateMap,
        options: &RunOptions,
        services: &Services,
    ) -> Vec<StreamReport> {
        run_source(
            source,
            self.tx.clone(),
            self.failed.clone(),
            state,
            options,
            services,
        )
    }

    /// Why the destination (or a sink) failed, if it did: nothing more is written.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Commits what is staged, stops the thread, and returns the rows completed
    /// snapshots marked deleted, per (source, stream).
    pub fn finish(self) -> HashMap<(String, String), u64> {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
        std::mem::take(&mut *self.marked.lock().unwrap_or_else(|p| p.into_inner()))
    }
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
        usage: services.usage.clone(),
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
    // Secrets rotated by an earlier read in this process (watch's previous cycle) replace
    // the plan's: a refresh token is single-use, the plan's would be refused.
    let mut config = plan.config.clone();
    if let serde_json::Value::Object(map) = &mut config {
        for (k, v) in services.credentials.updated_here(&plan.name) {
            map.insert(k, serde_json::Value::String(v));
        }
    }
    let request = ReadRequest {
        config,
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
        let used = services.usage.of(&plan.name);
        tracing::info!(
            source = %plan.name,
            records = handler.total.load(Ordering::Relaxed),
            requests = used.requests,
            throttles = used.throttles,
            "sync finished"
        );
    }
    reports
}
