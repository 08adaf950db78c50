//! Ticket reconciliation: a listing of every live ticket id, from which the host marks
//! deleted tickets (the API has no deletion feed; a deleted ticket is simply no longer
//! listed).
//!
//! The listing is the cheapest query the API allows: `ticketId createdTime` only, pages of
//! 100 (the maximum), no date or client condition. It walks by `createdTime` as a keyset
//! (`createdTime after <last − 1 s>`, sorted ascending, page 1 each time) instead of by
//! offset. `createdTime` never changes, and a keyset does not shift when a ticket is
//! deleted or created while the listing runs, whereas offset paging would skip a live
//! ticket after each deletion in front of it, and that ticket would then be marked
//! deleted. The price is a sequential walk (no concurrent pages) and re-reading the rows
//! that share the boundary second, usually one per page; at the default budget of 100
//! requests a minute the walk is budget-bound anyway. Measured cost: about
//! `tickets / 99` requests.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tributary_sdk::Coverage;

use super::{defs, parse_row, Ctx, Scan};
use crate::error::{Error, Result};
use crate::time;

const STREAM: &str = "tickets";
/// The API's largest page.
const PAGE_SIZE: u32 = 100;

/// Lists every ticket id into a [`Coverage::Source`] snapshot and completes it. Returns
/// `Ok(false)`, having given the snapshot up, when no sound listing could be made.
/// Errors and cancels drop the snapshot, which concludes nothing.
///
/// The keyset walk comes first. A server that refuses it (`createdTime after` is
/// documented but not confirmed live, and peers report date operators failing) or whose
/// answers do not allow it (not sorted, not converging) gets the offset listing instead,
/// which is sound only while the list holds still and so concludes only then.
pub async fn ticket_ids(ctx: &Ctx, def: &'static defs::StreamDef) -> Result<bool> {
    match keyset_listing(ctx, def).await {
        Ok(true) => return Ok(true),
        Ok(false) => {}
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(e) => tracing::warn!(
            "stream tickets: the id listing by createdTime failed ({e}); listing by page instead"
        ),
    }
    offset_listing(ctx, def).await
}

/// The fallback: every page of `ticketId`, sorted by `createdTime`, by offset. Concludes
/// only when the pages add up to one listing ([`super::ScanOutcome::is_whole`]) and no id
/// came twice.
async fn offset_listing(ctx: &Ctx, def: &'static defs::StreamDef) -> Result<bool> {
    let snap = ctx.out.snapshot(STREAM, Coverage::Source)?;
    let scan = Scan::new(def, "ticketId", PAGE_SIZE).with_sort("createdTime", false);
    let mut seen = super::SeenKeys::default();
    let mut repeated = false;
    let mut page_no = 0u32;
    let outcome = super::full_scan(ctx, &scan, |page| {
        page_no += 1;
        let mut batch = Vec::with_capacity(page.items.len());
        for (i, raw) in page.items.iter().enumerate() {
            let (_, v) = parse_row(raw, STREAM, page_no, i)?;
            let id = v.ticket_id.ok_or_else(|| Error::Malformed {
                context: format!("stream tickets (id listing) page {page_no} row {i}"),
                detail: "ticketId is missing".to_string(),
            })?;
            if seen.insert(&id) {
                batch.push(id);
            } else {
                repeated = true;
            }
        }
        snap.keys(batch)?;
        Ok(true)
    })
    .await?;
    if outcome.is_whole() && !repeated {
        snap.complete()?;
        tracing::info!(
            "stream tickets: id listing of {} tickets by page",
            seen.len()
        );
        Ok(true)
    } else {
        snap.abandon();
        tracing::warn!(
            "stream tickets: the ticket list moved while it was listed by page; no deletions are concluded this run"
        );
        Ok(false)
    }
}

/// The keyset walk on `createdTime`; `Ok(false)` (snapshot given up, warned) when the
/// answers do not allow a sound listing.
async fn keyset_listing(ctx: &Ctx, def: &'static defs::StreamDef) -> Result<bool> {
    let snap = ctx.out.snapshot(STREAM, Coverage::Source)?;
    let mut lower: Option<DateTime<Utc>> = None;
    let mut page: u32 = 1;
    // Ids at or near the boundary second, which the next query returns again.
    let mut recent: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut requests: u64 = 0;
    let mut listed: u64 = 0;
    let mut bound: Option<u64> = None;
    loop {
        ctx.out.check_cancelled()?;
        let conditions = lower
            .map(|l| {
                json!({"attribute": "createdTime", "operator": "after", "value": time::to_api(l - Duration::seconds(1))})
            })
            .into_iter()
            .collect();
        let scan = Scan::new(def, "ticketId createdTime", PAGE_SIZE)
            .with_sort("createdTime", false)
            .with_condition(conditions);
        let p = scan.fetch(&ctx.client, page, PAGE_SIZE).await?;
        requests += 1;
        // Every page brings at least one new id or moves to the next page of one query,
        // so a walk longer than the count plus a margin is a server that repeats itself.
        let limit = *bound.get_or_insert(p.total_count.unwrap_or(u64::MAX / 2) + 10);
        let mut batch = Vec::with_capacity(p.items.len());
        let mut last: Option<DateTime<Utc>> = None;
        for (i, raw) in p.items.iter().enumerate() {
            let (_, v) = parse_row(raw, STREAM, requests as u32, i)?;
            let context = || format!("stream tickets (id listing) request {requests} row {i}");
            let id = v.ticket_id.clone().ok_or_else(|| Error::Malformed {
                context: context(),
                detail: "ticketId is missing".to_string(),
            })?;
            let t = v
                .created_time
                .as_deref()
                .and_then(time::parse)
                .ok_or_else(|| Error::Malformed {
                    context: context(),
                    detail: format!("createdTime {:?} is not a timestamp", v.created_time),
                })?;
            if last.is_some_and(|l| t < l) {
                tracing::warn!(
                    "stream tickets: the id listing came back not sorted by createdTime"
                );
                snap.abandon();
                return Ok(false);
            }
            last = Some(t);
            if recent.insert(id.clone(), t).is_none() {
                batch.push(id);
            }
        }
        listed += batch.len() as u64;
        snap.keys(batch)?;
        if !p.has_more || p.items.is_empty() {
            break;
        }
        if requests > limit {
            tracing::warn!(
                "stream tickets: the id listing did not converge after {requests} requests"
            );
            snap.abandon();
            return Ok(false);
        }
        match last {
            Some(t) if lower.is_none_or(|l| t > l) => {
                lower = Some(t);
                page = 1;
                // The next query starts after (t − 1 s) rounded down to the second, so
                // nothing older than t − 2 s comes back.
                recent.retain(|_, seen| *seen >= t - Duration::seconds(2));
            }
            // A whole page in one second: the bound cannot move; next page, same query.
            _ => page += 1,
        }
    }
    snap.complete()?;
    tracing::info!("stream tickets: id listing of {listed} tickets in {requests} requests");
    Ok(true)
}
