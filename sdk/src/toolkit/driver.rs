//! The per-read stream driver: what every connector's `read` does around its streams.
//!
//! [`Driver::run`] resolves each requested stream against the declared [`Streams`], hands
//! the connector one [`StreamRun`] at a time (or several, up to the concurrency), and owns
//! the rest: `started` / `complete` / `incomplete` statuses, unknown names, cancellation
//! between streams, panics in a stream, fatal-versus-continue, and the one error that
//! sums the read up. A connector only writes how to read one stream.
//!
//! ```no_run
//! # use tributary_sdk::{ConnectorError, Emitter, ReadRequest, StreamDescriptor};
//! # use tributary_sdk::toolkit::{Driver, Streams};
//! # async fn read(request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
//! let streams = Streams::new("demo")
//!     .with(StreamDescriptor::full_refresh("items", serde_json::json!({}), &["id"]), "/items");
//! Driver::sequential()
//!     .run(&streams, &request, &out, |run| async move {
//!         // read `run.definition` ("/items") from `run.state`, emit through `out`
//!         Ok::<(), ConnectorError>(())
//!     })
//!     .await
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Instant;

use serde_json::Value;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{Limit, Streams};
use crate::{ConnectorError, Emitter, ErrorKind, ReadRequest, SyncMode};

/// How a connector's error tells the driver whether the read can go on.
pub trait StreamError: Into<ConnectorError> + Send + 'static {
    /// Whether this failure ends the whole read: bad credentials or settings, or the host
    /// no longer taking output. The other streams are stopped and reported with it.
    fn is_fatal(&self) -> bool;
}

impl StreamError for ConnectorError {
    /// Bad settings and bad credentials fail every stream alike; anything else is the
    /// stream's own.
    fn is_fatal(&self) -> bool {
        matches!(self.kind, ErrorKind::Config | ErrorKind::Auth)
    }
}

/// One requested stream, resolved: what the connector reads.
#[derive(Debug, Clone)]
pub struct StreamRun<D> {
    /// The stream's name.
    pub name: String,
    /// The connector's definition, from [`Streams`].
    pub definition: D,
    /// How the host asked to read it.
    pub mode: SyncMode,
    /// The saved state: `None` on a full refresh, on a first read, or when it was reset.
    pub state: Option<Value>,
    /// The stream's record limit in this read; admit each record through it. The driver
    /// logs the count when the stream ends.
    pub limit: Limit,
}

impl<D> StreamRun<D> {
    /// The saved state as `T` (see [`StreamRun::state`]); an error the user can act on
    /// when it does not parse.
    pub fn state_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, ConnectorError> {
        self.state
            .as_ref()
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    ConnectorError::config(format!(
                        "saved state of stream {} is not understood ({e}); reset it with `tributary state reset`",
                        self.name
                    ))
                })
            })
            .transpose()
    }
}

/// Runs the requested streams of one read.
#[derive(Debug, Clone, Copy)]
pub struct Driver {
    concurrency: usize,
}

impl Driver {
    /// One stream after another, in the order the manifest lists them.
    pub fn sequential() -> Driver {
        Driver::concurrent(1)
    }

    /// Up to `streams` streams at once (at least one); each stream still starts in
    /// manifest order.
    pub fn concurrent(streams: usize) -> Driver {
        Driver {
            concurrency: streams.max(1),
        }
    }

    /// Reads every stream of `request` with `read`, reporting each one's status on `out`.
    ///
    /// A stream that fails is reported incomplete and the others go on, unless its error
    /// [is fatal](StreamError::is_fatal): then the streams still running or waiting are
    /// stopped and reported incomplete too. Returns `Ok` when every stream completed,
    /// otherwise one error: the fatal one if any (it explains the rest), else the first,
    /// naming every failed stream.
    pub async fn run<D, E, F, Fut>(
        &self,
        streams: &Streams<D>,
        request: &ReadRequest,
        out: &Emitter,
        read: F,
    ) -> Result<(), ConnectorError>
    where
        D: Clone + Send + 'static,
        E: StreamError,
        F: Fn(StreamRun<D>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let mut failures = Failures::default();
        let mut waiting = VecDeque::new();
        for configured in &request.catalog.streams {
            let name = configured.name.clone();
            let Some((_, definition)) = streams.find(&name) else {
                let e = ConnectorError::config(streams.unknown(&name));
                out.stream_incomplete(&name, &e);
                failures.push(name, e, false);
                continue;
            };
            waiting.push_back(StreamRun {
                state: match configured.sync_mode {
                    SyncMode::Incremental => {
                        request.state.get(&name).filter(|v| !v.is_null()).cloned()
                    }
                    SyncMode::FullRefresh => None,
                },
                name,
                definition: definition.clone(),
                mode: configured.sync_mode,
                limit: Limit::new(request.window.limit),
            });
        }
        let mut running = JoinSet::new();
        let mut names = HashMap::new();
        // Why the read ended early, once it has.
        let mut ended: Option<String> = None;
        loop {
            // Streams start in manifest order as slots free up.
            while ended.is_none() && running.len() < self.concurrency {
                let Some(run) = waiting.pop_front() else {
                    break;
                };
                if let Err(e) = out.check_cancelled() {
                    out.stream_incomplete(&run.name, &e);
                    ended = Some(e.message.clone());
                    failures.push(run.name, e, true);
                    break;
                }
                out.stream_started(&run.name);
                let name = run.name.clone();
                let run_name = name.clone();
                let limit = run.limit.clone();
                let stream = read(run);
                let task = async move {
                    let started = Instant::now();
                    let result = stream.await;
                    log_end(&name, &limit, started, result.is_ok());
                    result
                };
                // Spawned tasks do not inherit the call's span, which routes their logs
                // to this call's host; attach it explicitly.
                let handle = running.spawn(task.instrument(tracing::Span::current()));
                names.insert(handle.id(), run_name);
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (id, result) = match joined {
                Ok((id, Ok(()))) => (id, Ok(())),
                Ok((id, Err(e))) => {
                    let fatal = e.is_fatal();
                    (id, Err((e.into(), fatal)))
                }
                // Aborted because another stream failed fatally.
                Err(e) if e.is_cancelled() => {
                    let cause = ended.as_deref().unwrap_or("the read ended");
                    (e.id(), Err((stopped("finished", cause), false)))
                }
                Err(e) => {
                    let panic =
                        ConnectorError::new(ErrorKind::Panic, format!("the stream panicked: {e}"));
                    (e.id(), Err((panic, false)))
                }
            };
            let name = names.remove(&id).unwrap_or_default();
            match result {
                Ok(()) => out.stream_complete(&name),
                Err((e, fatal)) => {
                    if out.is_cancelled() {
                        // The host asked to stop (Ctrl-C, a failed destination): it says why.
                        tracing::info!(stream = %name, "stream {name} stopped: {}", e.message);
                    } else {
                        tracing::error!(stream = %name, kind = %e.kind, "stream {name} failed: {}", e.message);
                    }
                    out.stream_incomplete(&name, &e);
                    if fatal && ended.is_none() {
                        ended = Some(format!("stream {name} failed: {}", e.message));
                        running.abort_all();
                    }
                    failures.push(name, e, fatal);
                }
            }
        }
        for run in waiting {
            let e = stopped("started", ended.as_deref().unwrap_or("the read ended"));
            out.stream_incomplete(&run.name, &e);
            failures.push(run.name, e, false);
        }
        failures.summary()
    }
}

/// The one line every stream ends with: what it emitted, and whether its limit stopped it.
fn log_end(name: &str, limit: &Limit, started: Instant, ok: bool) {
    let secs = started.elapsed().as_secs_f64();
    let records = limit.admitted();
    match limit.cap() {
        Some(cap) if ok && limit.reached() => tracing::info!(
            records,
            secs,
            "stream {name}: {records} records, stopped at its record limit of {cap}"
        ),
        _ if ok => tracing::info!(records, secs, "stream {name}: {records} records"),
        _ => tracing::debug!(
            records,
            secs,
            "stream {name} ended early after {records} records"
        ),
    }
}

/// A stream stopped because the read ended early (`cause`: a fatal error, a cancel).
fn stopped(what: &str, cause: &str) -> ConnectorError {
    ConnectorError::system(format!("stopped before it {what}: {cause}"))
}

/// The streams that failed, in the order they ended.
#[derive(Default)]
struct Failures(Vec<(String, ConnectorError, bool)>);

impl Failures {
    fn push(&mut self, stream: String, error: ConnectorError, fatal: bool) {
        self.0.push((stream, error, fatal));
    }

    /// One error for the whole read: a fatal one if any, else the first, with the list of
    /// failed streams.
    fn summary(mut self) -> Result<(), ConnectorError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.0.iter().map(|(n, _, _)| n.clone()).collect();
        let index = self.0.iter().position(|f| f.2).unwrap_or(0);
        let (stream, first, _) = self.0.swap_remove(index);
        let message = if names.len() == 1 {
            format!("stream {stream}: {}", first.message)
        } else {
            format!(
                "{} streams failed ({}); stream {stream}: {}",
                names.len(),
                names.join(", "),
                first.message
            )
        };
        Err(ConnectorError::new(first.kind, message))
    }
}
