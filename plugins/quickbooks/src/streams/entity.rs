//! Entity streams. Two paths, one position ([`Position`]):
//!
//! - **Query API, seek paging.** Each page asks for `LastUpdatedTime >= <position>`
//!   sorted ascending from STARTPOSITION 1 and skips what the position already holds.
//!   Unlike offset paging over one big window, an object updated mid-scan cannot make
//!   another one shift past the reader unseen. When more than a page of objects share one
//!   second, that second is read with offset paging (`= t`) and the scan resumes with
//!   `> t`.
//! - **CDC**, when the position is inside the 30-day window: one request returns every
//!   change since the position, deletes included (`status: "Deleted"` stubs, emitted as
//!   deletion records). A response at the 1,000-object cap is not trusted to be complete:
//!   the next request starts from the newest change it held (the emulator, like the
//!   server as far as anyone has observed, returns the oldest changes first), so the
//!   window is split until a response comes back under the cap.
//!
//! Every page is checkpointed with the exact position, so a stopped run resumes without
//! duplicates or misses.

use std::sync::Arc;

use chrono::{Duration, Utc};
use tokio::task::JoinHandle;
use tracing::Instrument;
use tributary_sdk::Record;

use super::position::Position;
use super::{ClientField, Ctx, EntityStream};
use crate::config::WindowField;
use crate::error::{Error, Result};
use crate::parse::{self, format_time, Row};

/// Objects one CDC response may carry.
pub const CDC_CAP: usize = 1000;
/// Positions younger than this use CDC (30 days less an hour of safety).
pub fn cdc_horizon() -> chrono::DateTime<Utc> {
    Utc::now() - Duration::days(30) + Duration::hours(1)
}

/// What to do with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Emit,
    Skip,
    Stop,
}

/// The window and client filter, resolved once per stream.
#[derive(Debug)]
pub(crate) struct Filter {
    updated_from: Option<chrono::DateTime<Utc>>,
    updated_before: Option<chrono::DateTime<Utc>>,
    txn_from: Option<String>,
    txn_to: Option<String>,
    clients: Vec<String>,
    client_field: ClientField,
}

impl Filter {
    pub(crate) fn new(ctx: &Ctx, def: &EntityStream) -> Filter {
        let by_txn_date = !def.list && ctx.config.window_field == WindowField::TxnDate;
        let w = &ctx.window;
        let (updated_from, updated_before) = if by_txn_date {
            (None, None)
        } else {
            (w.start, w.end)
        };
        let (txn_from, txn_to) = if by_txn_date {
            (
                w.start
                    .map(|s| s.date_naive().format("%Y-%m-%d").to_string()),
                // `end` is exclusive: the last included date is the one just before it.
                w.end.map(|e| {
                    (e - Duration::nanoseconds(1))
                        .date_naive()
                        .format("%Y-%m-%d")
                        .to_string()
                }),
            )
        } else {
            (None, None)
        };
        Filter {
            updated_from,
            updated_before,
            txn_from,
            txn_to,
            clients: w.clients.clone(),
            client_field: def.client,
        }
    }

    fn verdict(&self, row: &Row<'_>) -> Verdict {
        if let (Some(end), Some(t)) = (self.updated_before, row.updated) {
            if t >= end {
                return Verdict::Stop;
            }
        }
        if let (Some(start), Some(t)) = (self.updated_from, row.updated) {
            if t < start {
                return Verdict::Skip;
            }
        }
        if row.deleted {
            // A stub carries no dates or references; a deletion is never filtered out.
            return Verdict::Emit;
        }
        if let Some(d) = row.txn_date.as_deref() {
            if self.txn_from.as_deref().is_some_and(|f| d < f)
                || self.txn_to.as_deref().is_some_and(|t| d > t)
            {
                return Verdict::Skip;
            }
        }
        if !self.clients.is_empty() {
            let key = match self.client_field {
                ClientField::None => return Verdict::Emit,
                ClientField::CustomerRef => row.customer.as_deref(),
                ClientField::Id => Some(row.id.as_str()),
            };
            if !key.is_some_and(|k| self.clients.iter().any(|c| c == k)) {
                return Verdict::Skip;
            }
        }
        Verdict::Emit
    }

    /// WHERE conditions the server can apply (the same filter is re-applied to rows).
    fn conditions(&self, def: &EntityStream) -> Vec<String> {
        let mut c = Vec::new();
        if let Some(e) = self.updated_before {
            c.push(format!("Metadata.LastUpdatedTime < '{}'", format_time(&e)));
        }
        if let Some(f) = &self.txn_from {
            c.push(format!("TxnDate >= '{f}'"));
        }
        if let Some(t) = &self.txn_to {
            c.push(format!("TxnDate <= '{t}'"));
        }
        if !self.clients.is_empty() {
            let list = self
                .clients
                .iter()
                .map(|c| format!("'{}'", c.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(", ");
            match self.client_field {
                ClientField::CustomerRef => c.push(format!("CustomerRef IN ({list})")),
                ClientField::Id => c.push(format!("Id IN ({list})")),
                ClientField::None => {}
            }
        }
        if def.list {
            // Name lists hide inactive (deleted) rows unless asked.
            c.push("Active IN (true, false)".to_string());
        }
        c
    }
}

/// Emits and checkpoints `rows` (already in ascending order); returns true when the
/// stream must stop (limit reached or past the window's end).
pub(crate) fn emit_rows(
    ctx: &Ctx,
    stream: &str,
    pos: &mut Position,
    rows: &[Row<'_>],
    filter: &Filter,
    emitted: &mut u64,
    where_: &str,
) -> Result<bool> {
    let limit = ctx.window.limit;
    let mut batch = Vec::with_capacity(rows.len());
    let mut stop = false;
    for row in rows {
        if row.updated.is_none() {
            return Err(Error::Malformed {
                stream: stream.to_string(),
                position: where_.to_string(),
                detail: format!(
                    "object Id {} has no readable MetaData.LastUpdatedTime",
                    row.id
                ),
            });
        }
        if pos.seen(row) {
            continue;
        }
        if limit.is_some_and(|l| *emitted >= l) {
            stop = true;
            break;
        }
        match filter.verdict(row) {
            Verdict::Stop => {
                stop = true;
                break;
            }
            Verdict::Skip => {}
            Verdict::Emit => {
                let mut rec = Record::from_json(row.id.clone(), row.raw.get().to_string())
                    .with_deleted(row.deleted);
                rec.cursor = row.updated_raw.clone();
                batch.push(rec);
                *emitted += 1;
            }
        }
        pos.advance(row);
    }
    ctx.out.records(stream, batch)?;
    ctx.out.checkpoint(stream, pos)?;
    Ok(stop || limit.is_some_and(|l| *emitted >= l))
}

fn malformed(stream: &str, position: &str, detail: String) -> Error {
    Error::Malformed {
        stream: stream.to_string(),
        position: position.to_string(),
        detail,
    }
}

/// Reads one entity stream; returns the records emitted.
pub async fn read(
    ctx: &Arc<Ctx>,
    def: EntityStream,
    state: Option<serde_json::Value>,
) -> Result<u64> {
    let mut pos = Position::from_state(def.name, state)?;
    let filter = Filter::new(ctx, &def);
    // A window start after the saved position moves the position up to it.
    if let Some(start) = filter.updated_from {
        if pos.instant().is_none_or(|p| p < start) {
            pos = Position::at(format_time(&start));
        }
    }
    let mut emitted = 0u64;
    let use_cdc = pos.instant().is_some_and(|p| p > cdc_horizon());
    if use_cdc {
        tracing::info!(
            stream = def.name,
            since = pos.last_updated.as_deref().unwrap_or(""),
            "incremental read through CDC"
        );
        cdc(ctx, &def, &mut pos, &filter, &mut emitted).await?;
    } else {
        tracing::info!(
            stream = def.name,
            since = pos.last_updated.as_deref().unwrap_or("the beginning"),
            "read through the query API"
        );
        seek(ctx, &def, &mut pos, &filter, &mut emitted, false).await?;
    }
    tracing::info!(stream = def.name, records = emitted, "stream read");
    Ok(emitted)
}

fn build_query(
    def: &EntityStream,
    pos: &Position,
    op: &str,
    filter: &Filter,
    start: u64,
    page: u32,
) -> String {
    let mut conds = Vec::new();
    if let Some(t) = &pos.last_updated {
        conds.push(format!("Metadata.LastUpdatedTime {op} '{t}'"));
    }
    conds.extend(filter.conditions(def));
    let mut q = format!("SELECT * FROM {}", def.entity);
    if !conds.is_empty() {
        q.push_str(" WHERE ");
        q.push_str(&conds.join(" AND "));
    }
    q.push_str(&format!(
        " ORDERBY Metadata.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {page}"
    ));
    q
}

fn seek_query(
    def: &EntityStream,
    pos: &Position,
    strict: bool,
    filter: &Filter,
    page: u32,
) -> (String, String) {
    let op = if strict { ">" } else { ">=" };
    let q = build_query(def, pos, op, filter, 1, page);
    let what = format!(
        "query {} at STARTPOSITION 1 with LastUpdatedTime {op} {}",
        def.name,
        pos.last_updated.as_deref().unwrap_or("(start)")
    );
    (q, what)
}

/// A page requested ahead, for the position it was asked from.
type Prefetch = (Position, JoinHandle<Result<Vec<u8>>>);

/// Query API, seek paging from `pos`. `strict_first`: the first query uses `>` (the
/// position's second was read completely).
///
/// While one page is emitted the next is already requested (the position after a page
/// is known as soon as it is parsed), so the network and the emitting overlap.
async fn seek(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    pos: &mut Position,
    filter: &Filter,
    emitted: &mut u64,
    strict_first: bool,
) -> Result<()> {
    let page = ctx.config.page_size;
    let mut strict = strict_first;
    let mut pending: Option<Prefetch> = None;
    loop {
        ctx.out.check_cancelled()?;
        let (q, what) = seek_query(def, pos, strict, filter, page);
        let body = match pending.take() {
            Some((at, handle)) if at == *pos && !strict => handle.await.map_err(|e| {
                Error::Host(tributary_sdk::ConnectorError::system(format!(
                    "prefetch task failed: {e}"
                )))
            })??,
            other => {
                if let Some((_, handle)) = other {
                    handle.abort();
                }
                ctx.client.query(&q, &what).await?
            }
        };
        let raws =
            parse::query_page_raw(&body, def.entity).map_err(|d| malformed(def.name, &what, d))?;
        strict = false;
        let n = raws.len();
        // The next page starts after this page's newest second, which the last objects
        // give: request it now, then read and emit the rest of this page meanwhile. If
        // the page was not sorted the guess is wrong and simply discarded (checked above).
        if n == page as usize {
            if let Some(next) = next_position(pos, &raws) {
                let (nq, nwhat) = seek_query(def, &next, false, filter, page);
                let c = ctx.clone();
                let task = async move { c.client.query(&nq, &nwhat).await };
                pending = Some((
                    next,
                    tokio::spawn(task.instrument(tracing::Span::current())),
                ));
            }
        }
        let rows = raws
            .iter()
            .map(|r| parse::query_row(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|d| malformed(def.name, &what, d))?;
        let one_instant = n > 0 && rows.iter().all(|r| r.updated == rows[0].updated);
        let before = pos.clone();
        if emit_rows(ctx, def.name, pos, &rows, filter, emitted, &what)? || n < page as usize {
            if let Some((_, handle)) = pending.take() {
                handle.abort();
            }
            return Ok(());
        }
        if one_instant {
            if tie(ctx, def, pos, filter, emitted).await? {
                return Ok(());
            }
            strict = true;
        } else if *pos == before {
            return Err(Error::Fault {
                what,
                status: 200,
                code: "-".into(),
                fault_type: "connector".into(),
                message: "a full page made no progress (results not sorted by LastUpdatedTime?)"
                    .into(),
                tid: String::new(),
                kind: tributary_sdk::ErrorKind::System,
            });
        }
    }
}

/// Where `pos` will be after a full, sorted page: the newest second and the objects at
/// it (read from the end). `None` when the whole page is one second (tie handling) or
/// an object cannot be read (the full parse reports it).
fn next_position(pos: &Position, raws: &[&serde_json::value::RawValue]) -> Option<Position> {
    let first = parse::query_row(raws.first()?).ok()?;
    let mut tail = Vec::new();
    for raw in raws.iter().rev() {
        let row = parse::query_row(raw).ok()?;
        if tail
            .first()
            .is_some_and(|last: &Row<'_>| last.updated != row.updated)
        {
            break;
        }
        tail.push(row);
    }
    let newest = tail.first()?.updated;
    if first.updated == newest {
        return None;
    }
    let mut next = pos.clone();
    for row in tail.iter().rev() {
        next.advance(row);
    }
    Some(next)
}

/// Reads every object at exactly the position's second with offset paging. Returns
/// true when the stream must stop.
async fn tie(
    ctx: &Ctx,
    def: &EntityStream,
    pos: &mut Position,
    filter: &Filter,
    emitted: &mut u64,
) -> Result<bool> {
    let page = ctx.config.page_size;
    let mut start = 1u64;
    loop {
        ctx.out.check_cancelled()?;
        let q = build_query(def, pos, "=", filter, start, page);
        let what = format!(
            "query {} at STARTPOSITION {start} with LastUpdatedTime = {}",
            def.name,
            pos.last_updated.as_deref().unwrap_or("")
        );
        let body = ctx.client.query(&q, &what).await?;
        let rows =
            parse::query_page(&body, def.entity).map_err(|d| malformed(def.name, &what, d))?;
        let n = rows.len();
        if emit_rows(ctx, def.name, pos, &rows, filter, emitted, &what)? {
            return Ok(true);
        }
        if n < page as usize {
            return Ok(false);
        }
        start += u64::from(page);
    }
}

/// CDC from `pos`, splitting capped windows.
async fn cdc(
    ctx: &Ctx,
    def: &EntityStream,
    pos: &mut Position,
    filter: &Filter,
    emitted: &mut u64,
) -> Result<()> {
    let mut since_override: Option<String> = None;
    loop {
        ctx.out.check_cancelled()?;
        let since = since_override
            .take()
            .or_else(|| pos.last_updated.clone())
            .unwrap_or_default();
        let what = format!("cdc {} changedSince {since}", def.name);
        let body = ctx
            .client
            .get(
                "cdc",
                &[("entities", def.entity), ("changedSince", since.as_str())],
                &what,
            )
            .await?;
        let all = parse::cdc_rows(&body).map_err(|d| malformed(def.name, &what, d))?;
        let total = all.len();
        let mut rows: Vec<Row<'_>> = all
            .into_iter()
            .filter(|(e, _)| e == def.entity)
            .map(|(_, r)| r)
            .collect();
        rows.sort_by(|a, b| {
            a.updated
                .cmp(&b.updated)
                .then_with(|| id_order(&a.id, &b.id))
        });
        let one_instant = !rows.is_empty() && rows.iter().all(|r| r.updated == rows[0].updated);
        if emit_rows(ctx, def.name, pos, &rows, filter, emitted, &what)? || total < CDC_CAP {
            return Ok(());
        }
        tracing::info!(
            stream = def.name,
            "CDC response hit the {CDC_CAP}-object cap; splitting the window"
        );
        if one_instant {
            // A thousand changes in one second cannot be split by time: read that second's
            // live objects through the query API and go on after it.
            tracing::warn!(stream = def.name, at = pos.last_updated.as_deref().unwrap_or(""), "over {CDC_CAP} changes in one second; reading it through the query API (deletions beyond the cap in that second are not visible)");
            if tie(ctx, def, pos, filter, emitted).await? {
                return Ok(());
            }
            if let Some(t) = pos.instant() {
                since_override = Some(
                    (t + Duration::seconds(1))
                        .format("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string(),
                );
            }
        }
    }
}

/// Orders ids numerically when both are numbers.
pub(crate) fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}
