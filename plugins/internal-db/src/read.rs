//! The read loop.
//!
//! Streams are read one after another. Within a stream a producer task runs one page
//! ahead: while the host consumes page N, the database is already building page N+1, so
//! on two cores the database and the destination work at the same time.
//!
//! Each page is emitted as one batch followed by a checkpoint `{updated_at, id}` of its
//! last row; the next run resumes strictly after that key, so rows sharing a timestamp
//! are neither lost nor repeated.
//!
//! Deletions (see [`crate::reconcile`]): a soft-deleted row comes back as a deletion
//! record like any other change. Hard deletes are proven by a listing of every live key:
//! a full refresh without a narrowing window is that listing itself (a
//! [`Coverage::Window`] snapshot around the read); otherwise, when `reconcile_every` says
//! a pass is due, a keys-only pass follows the read. Either way the stream's checkpoint
//! after the snapshot's completion records when the listing started.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use tributary_sdk::toolkit::{Driver, Limit, ReconcileEvery, StreamError, StreamRun};
use tributary_sdk::{ConnectorError, Coverage, Emitter, ReadRequest, Record, SyncMode, Window};

use crate::client::{Db, PoolSettings};
use crate::config::Config;
use crate::dialect::PageFilter;
use crate::error::{Error, Result};
use crate::reconcile;
use crate::sample::ensure_sample_database;
use crate::streams::{self, StreamDef};
use crate::timestamp::{canonical, parse_canonical};

/// The state of a stream: the `(updated_at, id)` key of the last row emitted, and when
/// the last completed reconciliation started.
///
/// States written before reconciliation existed (`{updated_at, id}`) still load; they
/// simply have no `reconciled_at`, so the next run reconciles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Canonical `updated_at` of the last row emitted (absent when none ever was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// `id` of the last row emitted (present exactly when `updated_at` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// When the last completed listing of every live key began: every row deleted
    /// before this instant has been marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<DateTime<Utc>>,
}

impl Checkpoint {
    fn new(position: Option<&(String, i64)>, reconciled_at: Option<DateTime<Utc>>) -> Self {
        Checkpoint {
            updated_at: position.map(|p| p.0.clone()),
            id: position.map(|p| p.1),
            reconciled_at,
        }
    }
}

/// A stream's saved state, normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Saved {
    /// Resume strictly after this `(canonical updated_at, id)`.
    position: Option<(String, i64)>,
    /// When the last completed reconciliation began.
    reconciled_at: Option<DateTime<Utc>>,
}

/// How a stream's read proves hard deletions this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletions {
    /// The read lists every live row itself (a full refresh, no narrowing window): a
    /// [`Coverage::Window`] snapshot around it.
    Listing,
    /// A keys-only pass after the read, when the read reached the end of the table.
    Pass,
    /// Not this run: under a client filter (a one-client extraction stays cheap and
    /// marks nothing), or the interval has not elapsed.
    Skip,
}

impl Deletions {
    fn decide(
        mode: SyncMode,
        window: &Window,
        every: ReconcileEvery,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Deletions {
        if window.has_client_filter() {
            return Deletions::Skip;
        }
        match mode {
            SyncMode::FullRefresh if !window.narrows() => Deletions::Listing,
            // A full refresh always reconciles ("never" means "only on a full refresh").
            SyncMode::FullRefresh => Deletions::Pass,
            SyncMode::Incremental if every.due(last, now) => Deletions::Pass,
            SyncMode::Incremental => Deletions::Skip,
        }
    }
}

/// The window, resolved into bound-parameter values.
#[derive(Debug, Clone, Default)]
struct Bounds {
    start: Option<String>,
    end: Option<String>,
    clients: Vec<i64>,
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

/// `read` of the connector: the streams one after another, through the SDK's driver.
pub(crate) async fn read(request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
    let config = Config::parse(request.config.clone())?;
    let bounds = Bounds::from_window(&request.window)?;
    let db = open(&config).await?;
    tracing::info!(url = %db.redacted_url(), dialect = db.dialect().name(), "reading");
    let shared = Arc::new(Shared {
        db: db.clone(),
        config,
        bounds,
        window: request.window.clone(),
    });
    let result = Driver::sequential()
        .run(&streams::declared(), &request, &out, |run| {
            let (shared, out) = (shared.clone(), out.clone());
            async move {
                let Shared {
                    db,
                    config,
                    bounds,
                    window,
                } = &*shared;
                let saved = saved_state(&run).map_err(|e| Stop::Source(e.into()))?;
                let stream = StreamRead {
                    def: run.definition,
                    soft_delete: config.soft_delete_column(&run.name).map(str::to_string),
                    deletions: Deletions::decide(
                        run.mode,
                        window,
                        config.reconcile_every,
                        saved.reconciled_at,
                        chrono::Utc::now(),
                    ),
                    saved,
                };
                let parallel = config.parallel_pages.min(config.pool_size);
                stream
                    .run(db, bounds, &run.limit, config.page_size, parallel, &out)
                    .await
            }
        })
        .await;
    db.close().await;
    result
}

/// What every stream of one read uses.
struct Shared {
    db: Db,
    config: Config,
    bounds: Bounds,
    window: Window,
}

/// Why a stream stopped.
pub(crate) enum Stop {
    /// The source failed: report this stream incomplete and go on with the next.
    Source(ConnectorError),
    /// The host refused output or asked us to stop: nothing more can be delivered.
    Host(ConnectorError),
}

impl From<Stop> for ConnectorError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Source(e) | Stop::Host(e) => e,
        }
    }
}

impl StreamError for Stop {
    fn is_fatal(&self) -> bool {
        matches!(self, Stop::Host(_))
    }
}

/// The saved state of a stream, normalized (timestamps to canonical text).
fn saved_state(run: &StreamRun<&'static StreamDef>) -> Result<Saved> {
    let state_error = |reason: String| Error::State {
        stream: run.name.clone(),
        reason,
    };
    let Some(value) = &run.state else {
        return Ok(Saved::default());
    };
    let cp: Checkpoint =
        serde_json::from_value(value.clone()).map_err(|e| state_error(e.to_string()))?;
    let position = match (cp.updated_at, cp.id) {
        (Some(updated_at), Some(id)) => {
            let ts = parse_canonical(&updated_at)
                .ok_or_else(|| state_error(format!("updated_at {updated_at:?} is not RFC 3339")))?;
            Some((ts, id))
        }
        (None, None) => None,
        _ => return Err(state_error("updated_at and id go together".into())),
    };
    Ok(Saved {
        position,
        reconciled_at: cp.reconciled_at,
    })
}

/// One stream's read: the records after the saved position, then what proves deletions.
struct StreamRead {
    def: &'static StreamDef,
    soft_delete: Option<String>,
    deletions: Deletions,
    saved: Saved,
}

impl StreamRead {
    async fn run(
        self,
        db: &Db,
        bounds: &Bounds,
        limit: &Limit,
        page_size: u32,
        parallel: u32,
        out: &Emitter,
    ) -> Result<(), Stop> {
        let name = self.def.name;
        let listing_started = Utc::now();
        // Opened before the first page, so every record of the read counts as seen.
        let listing = match self.deletions {
            Deletions::Listing => Some(out.snapshot(name, Coverage::Window).map_err(Stop::Host)?),
            Deletions::Pass | Deletions::Skip => None,
        };
        let last = read_stream(
            db,
            self.def,
            &self.saved,
            self.soft_delete.clone(),
            bounds,
            limit,
            page_size,
            parallel,
            out,
        )
        .await?;
        // A read cut short by the limit listed only part of the table: it proves nothing,
        // and a pass after it would make a limited run expensive. The run that catches
        // up reconciles.
        let limited = limit.reached();
        let position = last.or(self.saved.position);
        let reconciled_at = match (listing, self.deletions) {
            (Some(snapshot), _) if limited => {
                snapshot.abandon();
                None
            }
            (Some(snapshot), _) => {
                snapshot.complete().map_err(Stop::Host)?;
                Some(listing_started)
            }
            (None, Deletions::Pass) if !limited => {
                let pass_started = Utc::now();
                reconcile::run(db, self.def, self.soft_delete, page_size, out).await?;
                Some(pass_started)
            }
            (None, _) => None,
        };
        if let Some(at) = reconciled_at {
            // After `complete`: state never claims a listing whose marks are not committed.
            out.checkpoint(name, &Checkpoint::new(position.as_ref(), Some(at)))
                .map_err(Stop::Host)?;
        }
        Ok(())
    }
}

/// A page as the producer hands it over.
struct Page {
    records: Vec<Record>,
    /// `(updated_at, id)` of its last row.
    last: (String, i64),
}

/// Emits the rows after the saved position, a checkpoint after each page (carrying the
/// saved `reconciled_at` forward), counting them against `limit`. Returns the last position.
#[allow(clippy::too_many_arguments)]
async fn read_stream(
    db: &Db,
    def: &'static StreamDef,
    saved: &Saved,
    soft_delete: Option<String>,
    bounds: &Bounds,
    limit: &Limit,
    page_size: u32,
    parallel: u32,
    out: &Emitter,
) -> Result<Option<(String, i64)>, Stop> {
    let (tx, mut rx) = mpsc::channel::<Result<Page>>(1);
    let producer = tokio::spawn(produce(
        db.clone(),
        def,
        saved.position.clone(),
        soft_delete,
        bounds.clone(),
        limit.cap(),
        u64::from(page_size),
        parallel,
        tx,
    ));
    let mut last = None;
    let mut stop = None;
    while let Some(page) = rx.recv().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                stop = Some(Stop::Source(e.into()));
                break;
            }
        };
        // Pages are asked for no more than the limit (in SQL); counted here, as they leave.
        let fits = limit.take(page.records.len());
        debug_assert_eq!(fits, page.records.len(), "a page beyond the record limit");
        let checkpoint = Checkpoint::new(Some(&page.last), saved.reconciled_at);
        let delivered = out
            .records(def.name, page.records)
            .and_then(|()| out.checkpoint(def.name, &checkpoint))
            .and_then(|()| out.check_cancelled());
        if let Err(e) = delivered {
            stop = Some(Stop::Host(e));
            break;
        }
        last = Some(page.last);
    }
    // Dropping the receiver makes a producer that is still fetching stop at its next send.
    drop(rx);
    let joined = producer.await;
    if let Some(stop) = stop {
        return Err(stop);
    }
    joined.map_err(|e| Stop::Source(ConnectorError::system(format!("page reader failed: {e}"))))?;
    Ok(last)
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
#[allow(clippy::too_many_arguments)]
async fn produce(
    db: Db,
    def: &'static StreamDef,
    after: Option<(String, i64)>,
    soft_delete: Option<String>,
    bounds: Bounds,
    limit: Option<u64>,
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
    let mut remaining = limit.unwrap_or(u64::MAX);
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
            soft_delete: soft_delete.clone(),
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
            (Some(updated_at), Ok(id)) => (updated_at, id),
            _ => {
                let e = Error::Internal(format!(
                    "{context}: row without a usable (updated_at, id) key"
                ));
                return fail(tx, e).await;
            }
        };
        if parallel == 1 && n == want && remaining > 0 {
            lo = Some(key.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_without_reconciliation_still_load() {
        let old: Checkpoint =
            serde_json::from_value(json!({"updated_at": "2024-01-01T00:00:00.000000Z", "id": 7}))
                .expect("the pre-reconciliation form");
        assert_eq!(old.reconciled_at, None);
        assert_eq!(old.id, Some(7));
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .expect("valid")
            .with_timezone(&Utc);
        let new = Checkpoint::new(Some(&("2024-01-01T00:00:00.000000Z".into(), 7)), Some(at));
        let text = serde_json::to_value(&new).expect("serializes");
        assert_eq!(text["reconciled_at"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(
            serde_json::from_value::<Checkpoint>(text).expect("round trip"),
            new
        );
        // Only a reconciliation, no row ever emitted: no position.
        let empty = serde_json::to_value(Checkpoint::new(None, Some(at))).expect("serializes");
        assert_eq!(
            empty,
            json!({"reconciled_at": "2026-01-02T03:04:05.123456Z"})
        );
        assert!(serde_json::from_value::<Checkpoint>(json!({"id": 1, "page": 2})).is_err());
    }

    #[test]
    fn saved_state_needs_both_halves_of_the_position() {
        let run = |state: serde_json::Value| StreamRun {
            name: "contracts".to_string(),
            definition: crate::streams::find("contracts").expect("declared"),
            mode: SyncMode::Incremental,
            state: Some(state),
            limit: Limit::unlimited(),
        };
        let saved = saved_state(&run(
            json!({"updated_at": "2024-01-01T02:00:00+02:00", "id": 3}),
        ))
        .expect("valid");
        assert_eq!(
            saved.position,
            Some(("2024-01-01T00:00:00.000000Z".to_string(), 3))
        );
        let e = saved_state(&run(json!({"id": 3}))).expect_err("half");
        assert!(e.to_string().contains("go together"), "{e}");
    }

    #[test]
    fn when_deletions_are_proven() {
        let now = Utc::now();
        let hour = ReconcileEvery::parse("1h").expect("valid");
        let recent = Some(now - chrono::Duration::minutes(10));
        let old = Some(now - chrono::Duration::hours(2));
        let plain = Window::default();
        let dates = Window {
            start: Some(now),
            ..Window::default()
        };
        let client = Window {
            clients: vec!["3".into()],
            ..Window::default()
        };
        let limit = Window {
            limit: Some(5),
            ..Window::default()
        };
        use Deletions::*;
        use SyncMode::*;
        let d = |mode, w: &Window, every, last| Deletions::decide(mode, w, every, last, now);
        assert_eq!(d(FullRefresh, &plain, hour, recent), Listing);
        assert_eq!(d(FullRefresh, &limit, hour, recent), Listing);
        assert_eq!(d(FullRefresh, &dates, hour, recent), Pass);
        assert_eq!(d(FullRefresh, &plain, ReconcileEvery::Never, None), Listing);
        assert_eq!(d(FullRefresh, &client, hour, None), Skip);
        assert_eq!(d(Incremental, &plain, hour, recent), Skip);
        assert_eq!(d(Incremental, &plain, hour, old), Pass);
        assert_eq!(d(Incremental, &plain, hour, None), Pass);
        assert_eq!(d(Incremental, &dates, hour, None), Pass);
        assert_eq!(d(Incremental, &client, ReconcileEvery::Always, None), Skip);
        assert_eq!(d(Incremental, &plain, ReconcileEvery::Never, None), Skip);
    }
}
