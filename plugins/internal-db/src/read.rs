//! The read loop.
//!
//! Streams are read one after another. Within a stream a producer task runs one page
//! ahead: while the host consumes page N, the database is already building page N+1, so
//! on two cores the database and the destination work at the same time.
//!
//! Each page is emitted as one batch followed by a checkpoint `{updated_at, id}` of its
//! last row; the next run resumes strictly after that key, so rows sharing a timestamp
//! are neither lost nor repeated.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tributary_sdk::{ConnectorError, Emitter, ReadRequest, Record, SyncMode, Window};

use crate::client::{Db, PoolSettings};
use crate::config::Config;
use crate::dialect::PageFilter;
use crate::error::{Error, Result};
use crate::sample::ensure_sample_database;
use crate::streams::{self, StreamDef};
use crate::timestamp::{canonical, parse_canonical};

/// The state of a stream: the `(updated_at, id)` key of the last row emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Canonical `updated_at` of the last row emitted.
    pub updated_at: String,
    /// `id` of the last row emitted.
    pub id: i64,
}

/// The window, resolved into bound-parameter values.
#[derive(Debug, Clone, Default)]
struct Bounds {
    start: Option<String>,
    end: Option<String>,
    clients: Vec<i64>,
    limit: Option<u64>,
}

impl Bounds {
    fn from_window(w: &Window) -> Result<Bounds> {
        let clients = w
            .clients
            .iter()
            .map(|c| {
                c.trim().parse::<i64>().map_err(|_| {
                    Error::Config(format!(
                        "client filter value {c:?} is not an internal client id (an integer, client_profiles.id)"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bounds {
            start: w.start.map(canonical),
            end: w.end.map(canonical),
            clients,
            limit: w.limit,
        })
    }
}

pub(crate) fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        pool_size: config.pool_size,
        connect_timeout: std::time::Duration::from_secs(config.connect_timeout_secs),
        create_if_missing: false,
        bulk_load: false,
    }
}

/// Opens the database named by `config`, creating the sample database first if asked.
pub(crate) async fn open(config: &Config) -> Result<Db> {
    ensure_sample_database(config).await?;
    Db::open(&config.url, &pool_settings(config)).await
}

/// `read` of the connector.
pub(crate) async fn read(request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
    let config = Config::parse(request.config.clone())?;
    let bounds = Bounds::from_window(&request.window)?;
    let db = open(&config).await?;
    tracing::info!(url = %db.redacted_url(), dialect = db.dialect().name(), "reading");
    let result = read_streams(&db, &config, &request, &bounds, &out).await;
    db.close().await;
    result
}

/// Why a stream stopped.
enum Stop {
    /// The source failed: report this stream incomplete and go on with the next.
    Source(ConnectorError),
    /// The host refused output or asked us to stop: nothing more can be delivered.
    Host(ConnectorError),
}

async fn read_streams(
    db: &Db,
    config: &Config,
    request: &ReadRequest,
    bounds: &Bounds,
    out: &Emitter,
) -> Result<(), ConnectorError> {
    for configured in &request.catalog.streams {
        let name = configured.name.as_str();
        let Some(def) = streams::find(name) else {
            out.stream_incomplete(
                name,
                &ConnectorError::config(format!(
                    "unknown stream {name}; internal-db has {}",
                    streams::ALL.map(|s| s.name).join(", ")
                )),
            );
            continue;
        };
        out.check_cancelled()?;
        let after = match configured.sync_mode {
            SyncMode::FullRefresh => None,
            SyncMode::Incremental => match resume_key(request, name) {
                Ok(key) => key,
                Err(e) => {
                    out.stream_incomplete(name, &e.into());
                    continue;
                }
            },
        };
        out.stream_started(name);
        let started = Instant::now();
        match read_stream(
            db,
            def,
            after,
            bounds,
            config.page_size,
            config.parallel_pages.min(config.pool_size),
            out,
        )
        .await
        {
            Ok(records) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(stream = name, records, secs, "stream complete");
                out.stream_complete(name);
            }
            Err(Stop::Source(e)) => {
                tracing::warn!(stream = name, error = %e, "stream incomplete");
                out.stream_incomplete(name, &e);
            }
            Err(Stop::Host(e)) => {
                out.stream_incomplete(name, &e);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The key to resume after, from the saved state (normalized to canonical text).
fn resume_key(request: &ReadRequest, stream: &str) -> Result<Option<(String, i64)>> {
    let state_error = |reason: String| Error::State {
        stream: stream.to_string(),
        reason,
    };
    let Some(value) = request.state.get(stream).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let cp: Checkpoint =
        serde_json::from_value(value.clone()).map_err(|e| state_error(e.to_string()))?;
    let ts = parse_canonical(&cp.updated_at)
        .ok_or_else(|| state_error(format!("updated_at {:?} is not RFC 3339", cp.updated_at)))?;
    Ok(Some((ts, cp.id)))
}

/// A page as the producer hands it over.
struct Page {
    records: Vec<Record>,
    last: Checkpoint,
}

async fn read_stream(
    db: &Db,
    def: &'static StreamDef,
    after: Option<(String, i64)>,
    bounds: &Bounds,
    page_size: u32,
    parallel: u32,
    out: &Emitter,
) -> Result<u64, Stop> {
    let (tx, mut rx) = mpsc::channel::<Result<Page>>(1);
    let producer = tokio::spawn(produce(
        db.clone(),
        def,
        after,
        bounds.clone(),
        u64::from(page_size),
        parallel,
        tx,
    ));
    let mut emitted = 0u64;
    let mut stop = None;
    while let Some(page) = rx.recv().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                stop = Some(Stop::Source(e.into()));
                break;
            }
        };
        emitted += page.records.len() as u64;
        let delivered = out
            .records(def.name, page.records)
            .and_then(|()| out.checkpoint(def.name, &page.last))
            .and_then(|()| out.check_cancelled());
        if let Err(e) = delivered {
            stop = Some(Stop::Host(e));
            break;
        }
    }
    // Dropping the receiver makes a producer that is still fetching stop at its next send.
    drop(rx);
    let joined = producer.await;
    if let Some(stop) = stop {
        return Err(stop);
    }
    joined.map_err(|e| Stop::Source(ConnectorError::system(format!("page reader failed: {e}"))))?;
    Ok(emitted)
}

/// Largest page SQLite builds as one aggregated value (keeps it far below SQLite's
/// 1 GB string limit whatever `page_size` says).
const MAX_SQLITE_PAGE: u64 = 50_000;

/// Fetches pages in key order until the table (or the limit) is exhausted.
///
/// With `parallel` > 1 the producer first walks the `(updated_at, id)` index to the key
/// that ends each page (index only) and fetches up to `parallel` key ranges at once;
/// pages are still handed over in order. With 1 it pages sequentially, each page starting after the last row of
/// the one before.
async fn produce(
    db: Db,
    def: &'static StreamDef,
    after: Option<(String, i64)>,
    bounds: Bounds,
    page_size: u64,
    parallel: u32,
    tx: mpsc::Sender<Result<Page>>,
) {
    let context = format!("reading {} from {}", def.name, db.redacted_url());
    let page_size = if db.dialect().aggregates_pages() {
        page_size.min(MAX_SQLITE_PAGE)
    } else {
        page_size
    };
    let parallel = parallel.max(1) as usize;
    let mut remaining = bounds.limit.unwrap_or(u64::MAX);
    let mut lo = after;
    let mut scheduling_done = remaining == 0;
    let mut inflight: VecDeque<(u64, JoinHandle<Result<Vec<Record>>>)> = VecDeque::new();
    let filter =
        |after: Option<(String, i64)>, upto: Option<(String, i64)>, want: u64| PageFilter {
            after,
            upto,
            start: bounds.start.clone(),
            end: bounds.end.clone(),
            clients: bounds.clients.clone(),
            limit: i64::try_from(want).unwrap_or(i64::MAX),
        };
    let fail = |tx: mpsc::Sender<Result<Page>>, e: Error| async move {
        let _ = tx.send(Err(e)).await;
    };
    loop {
        while !scheduling_done && inflight.len() < parallel {
            let want = page_size.min(remaining);
            let upto = if parallel > 1 {
                let st = db.dialect().boundary_query(
                    def,
                    &filter(lo.clone(), None, want),
                    i64::try_from(want - 1).unwrap_or(i64::MAX),
                );
                match db.fetch_key(&st, &context).await {
                    Ok(key) => key,
                    Err(e) => return fail(tx, e).await,
                }
            } else {
                None
            };
            let st = db
                .dialect()
                .page_query(def, &filter(lo.clone(), upto.clone(), want));
            let (page_db, page_context) = (db.clone(), context.clone());
            inflight.push_back((
                want,
                tokio::spawn(async move { page_db.fetch_records(&st, &page_context).await }),
            ));
            remaining = remaining.saturating_sub(want);
            match upto {
                Some(key) if remaining > 0 => lo = Some(key),
                // Either the last page, or sequential mode, which learns the next start
                // from the page itself (below).
                _ => scheduling_done = true,
            }
        }
        let Some((want, handle)) = inflight.pop_front() else {
            return;
        };
        let records = match handle.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return fail(tx, e).await,
            Err(e) => {
                let e = Error::Internal(format!("{context}: page reader stopped: {e}"));
                return fail(tx, e).await;
            }
        };
        let n = records.len() as u64;
        let Some(last) = records.last() else {
            continue;
        };
        let key = match (last.cursor.clone(), last.pk.parse::<i64>()) {
            (Some(updated_at), Ok(id)) => Checkpoint { updated_at, id },
            _ => {
                let e = Error::Internal(format!(
                    "{context}: row without a usable (updated_at, id) key"
                ));
                return fail(tx, e).await;
            }
        };
        if parallel == 1 && n == want && remaining > 0 {
            lo = Some((key.updated_at.clone(), key.id));
            scheduling_done = false;
        }
        if tx.send(Ok(Page { records, last: key })).await.is_err() {
            for (_, h) in inflight {
                h.abort();
            }
            return;
        }
    }
}
