//! Tickets: incremental on `updatedTime`, exact under concurrent edits.
//!
//! - **First run** (no state): note the newest `updatedTime` (the *signpost*), scan every
//!   page sorted by `createdTime` (stable under edits, unlike `updatedTime`, so offsets do
//!   not shift and concurrent page fetches are safe), then walk forward from
//!   `signpost − overlap` by `updatedTime` to pick up everything edited during the scan.
//!   One checkpoint at the end: mid-scan positions are not resumable.
//! - **Later runs**: a keyset walk: ask for `updatedTime after <lower>` sorted ascending,
//!   always page 1, and move `lower` to just below the last row's time. Edited rows move
//!   to the end, where the walk still finds them; no offset ever skips one. A checkpoint
//!   follows every page because everything up to the cursor has been delivered.
//! - **De-duplication**: the state keeps, besides the cursor, the id and `updatedTime` of
//!   rows inside the overlap window; a re-read row is emitted again only if its
//!   `updatedTime` changed. Within a run, a row is emitted once per version.
//! - **Deletions**: the API has no deletion feed. A first run (and every full refresh)
//!   reads every ticket, so without a narrowing window it is a snapshot of the stream.
//!   Later runs list every ticket id when `reconcile_every` says a listing is due (see
//!   `reconcile`), after the walk. Either way the state records when the last complete
//!   listing started (`reconciled_at`), and the checkpoint follows the snapshot's
//!   completion. Narrowed runs (a client filter or dates) never list: they keep their own
//!   state scope, and a one-client extraction must stay cheap.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_sdk::toolkit::Limit;
use tributary_sdk::Record;

use super::{client_condition, defs, full_scan, parse_row, reconcile, Ctx, Scan};
use crate::error::{Error, Result};
use crate::time;

const STREAM: &str = "tickets";
/// Most ids kept in the state's overlap set; past this the oldest are dropped (at worst
/// a row is delivered twice, which the destination's upsert absorbs).
const MAX_SEEN: usize = 10_000;

/// Saved state of the tickets stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketState {
    /// Greatest `updatedTime` delivered, RFC 3339 UTC.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Tickets delivered with `updatedTime` within the overlap before the cursor: id →
    /// `updatedTime` (RFC 3339).
    #[serde(default)]
    pub seen: BTreeMap<String, String>,
    /// When the last complete listing of every ticket (a first run, a full refresh or a
    /// reconciliation) started, RFC 3339 UTC. Absent in states written before deletions
    /// were tracked: a listing is then due at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
}

struct Run {
    /// Rows older than this are not wanted (cursor − overlap, or the window start).
    floor: Option<DateTime<Utc>>,
    prior: HashMap<String, DateTime<Utc>>,
    /// Versions emitted in this run, to drop a ticket met again at the same version.
    /// Only those from `keep_from` on are kept: older ones cannot come back (the walk
    /// after a first scan starts at the signpost less the overlap), and a first sync of a
    /// million tickets must not remember every one.
    emitted: HashMap<String, DateTime<Utc>>,
    keep_from: Option<DateTime<Utc>>,
    /// During a first scan, every id met (as a hash), to notice one met twice.
    scan_ids: Option<super::SeenKeys>,
    repeated: bool,
    max: Option<DateTime<Utc>>,
    limit: Limit,
    pages: u32,
    reconciled_at: Option<String>,
}

impl Run {
    fn limited(&self) -> bool {
        self.limit.reached()
    }

    /// Turns a page into records; returns them and the last row's `updatedTime`.
    fn process(
        &mut self,
        ctx: &Ctx,
        items: &[Box<serde_json::value::RawValue>],
    ) -> Result<(Vec<Record>, Option<DateTime<Utc>>)> {
        self.pages += 1;
        let clients = ctx.clients();
        let mut batch = Vec::with_capacity(items.len());
        let mut last = None;
        for (i, raw) in items.iter().enumerate() {
            let (text, view) = parse_row(raw, STREAM, self.pages, i)?;
            let id = view.ticket_id.clone().ok_or_else(|| Error::Malformed {
                context: format!("stream tickets page {} row {i}", self.pages),
                detail: "ticketId is missing".to_string(),
            })?;
            let t = view
                .updated_time
                .as_deref()
                .and_then(time::parse)
                .ok_or_else(|| Error::Malformed {
                    context: format!("stream tickets page {} row {i} (ticket {id})", self.pages),
                    detail: format!("updatedTime {:?} is not a timestamp", view.updated_time),
                })?;
            last = Some(t);
            if let Some(ids) = &mut self.scan_ids {
                self.repeated |= !ids.insert(&id);
            }
            if self.limited() {
                continue;
            }
            if self.floor.is_some_and(|f| t < f) || !ctx.in_window(t) {
                continue;
            }
            if let Some(clients) = &clients {
                let client = text_client(&view);
                if !client.is_some_and(|c| clients.contains(c.as_str())) {
                    continue;
                }
            }
            if self.emitted.get(&id).is_some_and(|e| *e >= t)
                || self.prior.get(&id).is_some_and(|p| *p >= t)
            {
                continue;
            }
            if self.keep_from.is_none_or(|k| t >= k) {
                self.emitted.insert(id.clone(), t);
            }
            self.max = self.max.max(Some(t));
            self.limit.admit();
            batch.push(Record::from_json(id, text).with_cursor(time::to_cursor(t)));
        }
        Ok((batch, last))
    }

    fn state(&self, previous: Option<DateTime<Utc>>, overlap: Duration) -> TicketState {
        let cursor = self.max.max(previous);
        let mut seen: Vec<(&String, &DateTime<Utc>)> = match cursor {
            Some(c) => self
                .prior
                .iter()
                .chain(self.emitted.iter())
                .filter(|(_, t)| **t >= c - overlap)
                .collect(),
            None => Vec::new(),
        };
        seen.sort_by(|a, b| b.1.cmp(a.1));
        let mut out = BTreeMap::new();
        for (id, t) in seen {
            if out.len() >= MAX_SEEN {
                break;
            }
            let entry = out.entry(id.clone()).or_insert_with(|| time::to_cursor(*t));
            // Keep the newest version of an id seen both before and in this run.
            if time::to_cursor(*t) > *entry {
                *entry = time::to_cursor(*t);
            }
        }
        TicketState {
            cursor: cursor.map(time::to_cursor),
            seen: out,
            reconciled_at: self.reconciled_at.clone(),
        }
    }
}

fn text_client(view: &crate::json::RowView) -> Option<String> {
    crate::json::text_of(view.client.as_ref().and_then(|c| c.get("accountId")))
}

fn after(t: DateTime<Utc>) -> serde_json::Value {
    json!({"attribute": "updatedTime", "operator": "after", "value": time::to_api(t)})
}

/// Conditions every ticket query carries: the window end and the client filter.
/// (`client.accountId is` is a third-party finding; the local filter backs it up.)
fn base_conditions(ctx: &Ctx) -> Vec<serde_json::Value> {
    let mut c = Vec::new();
    if let Some(end) = ctx.window.end {
        c.push(json!({"attribute": "updatedTime", "operator": "before", "value": time::to_api(end + Duration::seconds(1))}));
    }
    c.extend(client_condition(&ctx.window.clients));
    c
}

/// Reads tickets, continuing from `state` when given.
pub async fn read(ctx: &Ctx, state: Option<TicketState>, limit: &Limit) -> Result<()> {
    // A listing's time is when it started: anything deleted after that is for the next.
    let started = Utc::now();
    let overlap = ctx.config.overlap();
    let def = defs::find(STREAM).ok_or_else(|| Error::Other("tickets stream undefined".into()))?;
    let previous = state
        .as_ref()
        .and_then(|s| s.cursor.as_deref())
        .and_then(time::parse);
    let prior: HashMap<String, DateTime<Utc>> = state
        .as_ref()
        .map(|s| {
            s.seen
                .iter()
                .filter_map(|(id, t)| Some((id.clone(), time::parse(t)?)))
                .collect()
        })
        .unwrap_or_default();
    let start = ctx.window.start;
    let floor = match (previous, start) {
        (Some(p), Some(s)) => Some((p - overlap).max(s)),
        (Some(p), None) => Some(p - overlap),
        (None, s) => s,
    };
    let mut run = Run {
        floor,
        prior,
        emitted: HashMap::new(),
        keep_from: None,
        scan_ids: None,
        repeated: false,
        max: None,
        limit: limit.clone(),
        pages: 0,
        reconciled_at: state.as_ref().and_then(|s| s.reconciled_at.clone()),
    };
    if previous.is_some() {
        keyset(ctx, def, &mut run, floor, previous, true).await?;
        let last = run.reconciled_at.as_deref().and_then(time::parse);
        // Under a limit the walk stopped early; the listing waits for a run that ends.
        if !run.limited()
            && !ctx.window.narrows()
            && ctx.config.reconcile_every.due(last, started)
            && reconcile::ticket_ids(ctx, def).await?
        {
            run.reconciled_at = Some(time::to_cursor(started));
            ctx.out.checkpoint(STREAM, &run.state(previous, overlap))?;
        }
    } else {
        // Every ticket is read: a snapshot, opened before the first record.
        let snapshot = super::open_snapshot(ctx, STREAM)?;
        // The signpost: the newest updatedTime right now. Anything edited from here on
        // gets a later time and is found by the walk after the scan.
        let mut probe = Scan::new(def, "ticketId updatedTime", 1).with_sort("updatedTime", true);
        probe = probe.with_condition(base_conditions(ctx));
        let newest = probe.fetch(&ctx.client, 1, 1).await?;
        let signpost = newest
            .items
            .first()
            .map(|raw| parse_row(raw, STREAM, 0, 0))
            .transpose()?
            .and_then(|(_, v)| v.updated_time.as_deref().and_then(time::parse));
        let mut conditions = base_conditions(ctx);
        if let Some(s) = start {
            conditions.push(after(s - Duration::seconds(1)));
        }
        let scan = Scan::all(def, ctx.config.page_size)
            .with_sort("createdTime", false)
            .with_condition(conditions);
        run.keep_from = signpost.map(|s| s - overlap);
        run.scan_ids = Some(super::SeenKeys::default());
        let outcome = full_scan(ctx, &scan, |page| {
            let (batch, _) = run.process(ctx, &page.items)?;
            ctx.out.records(STREAM, batch)?;
            Ok(!run.limited())
        })
        .await?;
        run.scan_ids = None;
        run.keep_from = None;
        // An id that came twice means the order moved under the offsets, so another may
        // have been skipped.
        let distinct = !run.repeated;
        if run.limited() {
            // Rows came in createdTime order, so no cursor covers exactly what was sent.
            tracing::info!(
                "stream tickets: record limit reached during the first scan; no checkpoint"
            );
            return Ok(());
        }
        if let Some(signpost) = signpost {
            let lower = (signpost - overlap).max(start.unwrap_or(signpost - overlap));
            keyset(ctx, def, &mut run, Some(lower), None, false).await?;
        }
        if super::conclude(
            snapshot,
            outcome.is_whole() && distinct && !run.limited(),
            "the ticket list changed while it was paged",
        )? {
            run.reconciled_at = Some(time::to_cursor(started));
        }
    }
    if !run.limited() || previous.is_some() {
        ctx.out.checkpoint(STREAM, &run.state(previous, overlap))?;
    }
    tracing::debug!("stream tickets: {} pages", run.pages);
    Ok(())
}

/// Walks forward by `updatedTime` from `lower`, page 1 each time; checkpoints after every
/// page when `checkpoint` (only sound when nothing newer was delivered out of order).
async fn keyset(
    ctx: &Ctx,
    def: &'static defs::StreamDef,
    run: &mut Run,
    mut lower: Option<DateTime<Utc>>,
    previous: Option<DateTime<Utc>>,
    checkpoint: bool,
) -> Result<()> {
    let overlap = ctx.config.overlap();
    let mut page: u32 = 1;
    loop {
        ctx.out.check_cancelled()?;
        let mut conditions = base_conditions(ctx);
        if let Some(l) = lower {
            conditions.push(after(l - Duration::seconds(1)));
        }
        let scan = Scan::all(def, ctx.config.page_size)
            .with_sort("updatedTime", false)
            .with_condition(conditions);
        let p = scan.fetch(&ctx.client, page, ctx.config.page_size).await?;
        let (batch, last) = run.process(ctx, &p.items)?;
        ctx.out.records(STREAM, batch)?;
        if checkpoint {
            ctx.out.checkpoint(STREAM, &run.state(previous, overlap))?;
        }
        if run.limited() || !p.has_more || p.items.is_empty() {
            return Ok(());
        }
        // Move the lower bound up to the last row (the query subtracts a second, so rows
        // sharing that time are fetched again and recognised). If a whole page shares
        // one time, the bound cannot move: take the next page of the same query.
        match last {
            Some(t) if lower.is_none_or(|l| t > l) => {
                lower = Some(t);
                page = 1;
            }
            _ => page += 1,
        }
    }
}
