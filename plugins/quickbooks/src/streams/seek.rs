//! The query API scan every entity read uses: seek paging in ascending
//! `LastUpdatedTime`, with the objects of one crowded second read by offset paging.
//!
//! Each page asks for `LastUpdatedTime >= <cursor>` sorted ascending from STARTPOSITION 1,
//! and the cursor's exact (Id, SyncToken) pairs drop what was handled already. Unlike
//! offset paging over one big window, an object updated mid-scan cannot make another one
//! shift past the reader unseen. When a whole page shares one second, that second is read
//! with offset paging (`= t`) and the scan resumes with `> t`.
//!
//! What happens to the rows of a page is the [`PageSink`]'s business: an ordinary read
//! emits them, a reconciliation pass sends most of them as keys only.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::position::Position;
use super::{Ctx, EntityStream};
use crate::error::{Error, Result};
use crate::parse::{self, Row};

/// Where the rows of a scan go.
pub(crate) trait PageSink {
    /// Handles one page of rows in ascending (LastUpdatedTime, Id) order, moving `cursor`
    /// over every row it dealt with. `time` is the page's envelope time (server clock);
    /// `what` names the request for errors. Returns true to end the scan.
    fn page(
        &mut self,
        cursor: &mut Position,
        rows: &[Row<'_>],
        time: Option<DateTime<FixedOffset>>,
        what: &str,
    ) -> Result<bool>;
}

pub(crate) fn malformed(stream: &str, position: &str, detail: String) -> Error {
    Error::Malformed {
        stream: stream.to_string(),
        position: position.to_string(),
        detail,
    }
}

fn build_query(
    def: &EntityStream,
    pos: &Position,
    op: &str,
    conditions: &[String],
    start: u64,
    page: u32,
) -> String {
    let mut conds = Vec::new();
    if let Some(t) = &pos.last_updated {
        conds.push(format!("Metadata.LastUpdatedTime {op} '{t}'"));
    }
    conds.extend(conditions.iter().cloned());
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
    conditions: &[String],
    page: u32,
) -> (String, String) {
    let op = if strict { ">" } else { ">=" };
    let q = build_query(def, pos, op, conditions, 1, page);
    let what = format!(
        "query {} at STARTPOSITION 1 with LastUpdatedTime {op} {}",
        def.name,
        pos.last_updated.as_deref().unwrap_or("(start)")
    );
    (q, what)
}

/// A page requested ahead, for the position it was asked from.
type Prefetch = (Position, JoinHandle<Result<Vec<u8>>>);

/// Scans `def` from `cursor` with `conditions` (WHERE clauses besides the cursor's),
/// handing every page to `sink` until the last page or until the sink says stop.
///
/// While one page is handled the next is already requested (the position after a full,
/// sorted page is known as soon as it is parsed), so the network and the emitting overlap.
pub(crate) async fn seek(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    cursor: &mut Position,
    conditions: &[String],
    sink: &mut (dyn PageSink + Send),
) -> Result<()> {
    let page = ctx.config.page_size;
    let mut strict = false;
    let mut pending: Option<Prefetch> = None;
    loop {
        ctx.out.check_cancelled()?;
        let (q, what) = seek_query(def, cursor, strict, conditions, page);
        let body = match pending.take() {
            Some((at, handle)) if at == *cursor && !strict => handle.await.map_err(|e| {
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
        let parsed =
            parse::query_page_raw(&body, def.entity).map_err(|d| malformed(def.name, &what, d))?;
        ctx.client.observe_server_time(parsed.time);
        let raws = parsed.objects;
        strict = false;
        let n = raws.len();
        // The next page starts after this page's newest second, which the last objects
        // give: request it now, then handle the rest of this page meanwhile. If the page
        // was not sorted the guess is wrong and simply discarded (checked above).
        if n == page as usize {
            if let Some(next) = next_position(cursor, &raws) {
                let (nq, nwhat) = seek_query(def, &next, false, conditions, page);
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
        let before = cursor.clone();
        if sink.page(cursor, &rows, parsed.time, &what)? || n < page as usize {
            if let Some((_, handle)) = pending.take() {
                handle.abort();
            }
            return Ok(());
        }
        if one_instant {
            if tie(ctx, def, cursor, conditions, sink).await? {
                return Ok(());
            }
            strict = true;
        } else if *cursor == before {
            return Err(unusable_answers(
                what,
                "a full page made no progress (results not sorted by LastUpdatedTime?)".into(),
                tributary_sdk::ErrorKind::System,
            ));
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

/// Passes over one second's objects before giving up on a second that keeps changing.
const TIE_PASSES: u32 = 8;

/// Reads every object at exactly the cursor's second with offset paging. Returns true
/// when the sink said stop.
///
/// Offset paging over live data skips an object whenever one in front of it is updated
/// (and so leaves this second) between two page requests, and the order of objects that
/// share a sort key is the server's business. So the second is read again until a whole
/// pass brings no object that was not read before (the cursor remembers every object at
/// its second); only then does the scan move past it.
pub(crate) async fn tie(
    ctx: &Ctx,
    def: &EntityStream,
    cursor: &mut Position,
    conditions: &[String],
    sink: &mut (dyn PageSink + Send),
) -> Result<bool> {
    let at = cursor.last_updated.clone();
    for pass in 1..=TIE_PASSES {
        let known = cursor.ids.len();
        if tie_pass(ctx, def, cursor, conditions, sink).await? {
            return Ok(true);
        }
        if pass > 1 && cursor.ids.len() == known {
            return Ok(false);
        }
        if pass > 1 {
            tracing::info!(
                stream = def.name,
                at = at.as_deref().unwrap_or(""),
                new = cursor.ids.len() - known,
                "objects moved while one second was paged; reading it again"
            );
        }
    }
    Err(unusable_answers(
        format!(
            "query {} with LastUpdatedTime = {}",
            def.name,
            at.as_deref().unwrap_or("")
        ),
        format!(
            "the objects of one second kept changing over {TIE_PASSES} passes; nothing after it was read, the next run continues from it"
        ),
        tributary_sdk::ErrorKind::Transient,
    ))
}

/// Answers that parse but cannot be read soundly (the connector's finding, not a fault
/// QuickBooks sent).
fn unusable_answers(what: String, message: String, kind: tributary_sdk::ErrorKind) -> Error {
    Error::Fault {
        what,
        status: 200,
        code: "-".into(),
        fault_type: "connector".into(),
        message,
        tid: String::new(),
        kind,
    }
}

/// One offset-paged pass over the cursor's second.
async fn tie_pass(
    ctx: &Ctx,
    def: &EntityStream,
    cursor: &mut Position,
    conditions: &[String],
    sink: &mut (dyn PageSink + Send),
) -> Result<bool> {
    let page = ctx.config.page_size;
    let mut start = 1u64;
    loop {
        ctx.out.check_cancelled()?;
        let q = build_query(def, cursor, "=", conditions, start, page);
        let what = format!(
            "query {} at STARTPOSITION {start} with LastUpdatedTime = {}",
            def.name,
            cursor.last_updated.as_deref().unwrap_or("")
        );
        let body = ctx.client.query(&q, &what).await?;
        let parsed =
            parse::query_page_raw(&body, def.entity).map_err(|d| malformed(def.name, &what, d))?;
        ctx.client.observe_server_time(parsed.time);
        let rows = parsed
            .objects
            .iter()
            .map(|r| parse::query_row(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|d| malformed(def.name, &what, d))?;
        let n = rows.len();
        if sink.page(cursor, &rows, parsed.time, &what)? {
            return Ok(true);
        }
        if n < page as usize {
            return Ok(false);
        }
        start += u64::from(page);
    }
}
