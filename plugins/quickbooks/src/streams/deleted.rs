//! `deleted_objects`: every transaction QuickBooks hard-deleted, from CDC, with the same
//! "last complete read" position as the entity streams, so the two agree: a deletion CDC
//! reports reaches both the entity table (a row marked `_deleted`) and this stream.
//!
//! One request covers all transaction entities from `complete_at`; when it reaches the
//! 1,000-object cap the entity list is split (one request per entity) and each entity's
//! window is split further by time, which assumes the server keeps the oldest changes of
//! a truncated answer (as observed; the documentation is silent). The entity streams do
//! not rely on that: they reconcile when CDC is capped. Emitted deletions are remembered
//! by (entity, Id) until `complete_at` passes them (Ids are never reused), so the overlap
//! each read asks for again is not emitted twice.
//!
//! CDC remembers 30 days. A first read starts at that horizon (the deletions QuickBooks
//! still remembers); a last complete read older than the horizon restarts at it with a
//! warning, since older deletions can no longer be read. The entity streams prove those
//! by reconciliation instead, so they are marked in the entity tables but can never
//! appear here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tributary_sdk::toolkit::Limit;
use tributary_sdk::Record;

use super::entity::{cdc_horizon, id_order, CDC_CAP};
use super::Ctx;
use crate::error::{Error, Result};
use crate::parse::{self, format_time, parse_time, Row};

/// Entities that are hard-deleted (list entities only turn inactive).
pub const DELETABLE: &[&str] = &[
    "Invoice",
    "Payment",
    "Purchase",
    "Bill",
    "Deposit",
    "CreditMemo",
    "SalesReceipt",
    "JournalEntry",
];

/// The saved state of `deleted_objects`. States of older versions (one position per
/// entity) load as "no complete read known".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedState {
    /// Server time at the start of the last complete read, less the margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_at: Option<String>,
    /// Per entity, deletions emitted at or after `complete_at`: Id to deletion time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub emitted: BTreeMap<String, BTreeMap<String, String>>,
}

impl DeletedState {
    fn completed(&mut self, started: DateTime<Utc>, margin: Duration) {
        let at = started - margin;
        self.complete_at = Some(format_time(&at));
        for ids in self.emitted.values_mut() {
            ids.retain(|_, t| parse_time(t).is_none_or(|t| t.with_timezone(&Utc) >= at));
        }
        self.emitted.retain(|_, ids| !ids.is_empty());
    }
}

fn stub_record(entity: &str, row: &Row<'_>) -> Result<Record> {
    let mut value: serde_json::Value =
        serde_json::from_str(row.raw.get()).map_err(|e| Error::Malformed {
            stream: super::DELETED_OBJECTS.into(),
            position: format!("{entity} {}", row.id),
            detail: e.to_string(),
        })?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "entity".into(),
            serde_json::Value::String(entity.to_string()),
        );
    }
    let mut rec = Record::from_json(
        Record::composite_key(&[entity, row.id.as_str()]),
        value.to_string(),
    );
    rec.cursor = row.updated_raw.clone();
    Ok(rec)
}

/// Emits the deletion stubs among `rows` (sorted) not emitted before; returns true when
/// the stream must stop (limit, window end).
fn emit(
    ctx: &Ctx,
    stream: &str,
    entity: &str,
    state: &mut DeletedState,
    rows: &[Row<'_>],
    limit: &Limit,
) -> Result<bool> {
    let mut batch = Vec::new();
    let mut stop = false;
    let seen = state.emitted.entry(entity.to_string()).or_default();
    for row in rows.iter().filter(|r| r.deleted) {
        if seen.contains_key(&row.id) {
            continue;
        }
        if limit.reached()
            || matches!((ctx.window.end, row.updated), (Some(end), Some(t)) if t >= end)
        {
            stop = true;
            break;
        }
        batch.push(stub_record(entity, row)?);
        limit.admit();
        // A stub without a readable time is remembered from now on.
        let at = match (&row.updated_raw, row.updated) {
            (Some(t), Some(_)) => t.clone(),
            _ => format_time(&ctx.client.server_now()),
        };
        seen.insert(row.id.clone(), at);
    }
    ctx.out.records(stream, batch)?;
    ctx.out.checkpoint(stream, state)?;
    Ok(stop)
}

fn sorted<'a>(mut rows: Vec<Row<'a>>) -> Vec<Row<'a>> {
    rows.sort_by(|a, b| {
        a.updated
            .cmp(&b.updated)
            .then_with(|| id_order(&a.id, &b.id))
    });
    rows
}

/// Where this read starts: the last complete read, or the horizon when there is none or
/// it is older, and never before the window's start.
fn start(ctx: &Ctx, stream: &str, state: &DeletedState, now: DateTime<Utc>) -> String {
    let horizon = cdc_horizon(now);
    let from = match state
        .complete_at
        .as_deref()
        .and_then(parse_time)
        .map(|t| t.with_timezone(&Utc))
    {
        Some(c) if c > horizon => c,
        Some(c) => {
            tracing::warn!(stream, complete_at = %c, "the last complete read is beyond CDC's 30-day horizon; deletions before {} can no longer be read (the entity streams reconcile instead)", format_time(&horizon));
            horizon
        }
        None => horizon,
    };
    match ctx.window.start {
        Some(s) if s > from => format_time(&s),
        _ => format_time(&from),
    }
}

/// Reads `deleted_objects`; returns the records emitted.
pub async fn read(
    ctx: &Ctx,
    stream: &str,
    state: Option<serde_json::Value>,
    limit: &Limit,
) -> Result<()> {
    let mut state: DeletedState = match state {
        None | Some(serde_json::Value::Null) => DeletedState::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| Error::Config(format!("saved state of stream {stream} is not understood ({e}); reset it or run with --full-refresh")))?,
    };
    let entities = DELETABLE.join(",");
    let mut since = start(ctx, stream, &state, ctx.client.server_now());
    let mut retried = false;
    // One request for every entity. A refusal means the server's clock is ahead of
    // ours: the horizon is recomputed from the time the refusal carried, once.
    let (body, what) = loop {
        let what = format!("cdc {stream} changedSince {since}");
        match ctx
            .client
            .get(
                "cdc",
                &[
                    ("entities", entities.as_str()),
                    ("changedSince", since.as_str()),
                ],
                &what,
            )
            .await
        {
            Ok(body) => break (body, what),
            Err(e) if e.is_bad_request() && !retried => {
                retried = true;
                let again = start(ctx, stream, &state, ctx.client.server_now());
                if again == since {
                    return Err(e);
                }
                tracing::warn!(stream, "CDC refused changedSince {since} ({e}); retrying from {again} by the server's clock");
                since = again;
            }
            Err(e) => return Err(e),
        }
    };
    let page = parse::cdc_page(&body).map_err(|d| Error::Malformed {
        stream: stream.into(),
        position: what.clone(),
        detail: d,
    })?;
    ctx.client.observe_server_time(page.time);
    let started = page
        .time
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| ctx.client.server_now());
    // A first read starts at the horizon by design: there is nothing it could miss.
    if state.complete_at.is_some()
        && parse_time(&since).is_some_and(|t| t.with_timezone(&Utc) < cdc_horizon(started))
    {
        tracing::warn!(stream, since = %since, "by the server's clock this is beyond CDC's 30-day horizon; older deletions may be missing here (the entity streams reconcile instead)");
    }
    let all = page.rows;
    if all.len() < CDC_CAP {
        for entity in DELETABLE {
            let rows = sorted(
                all.iter()
                    .filter(|(e, _)| e == entity)
                    .map(|(_, r)| r.clone())
                    .collect(),
            );
            if emit(ctx, stream, entity, &mut state, &rows, limit)? {
                return Ok(());
            }
        }
        state.completed(started, ctx.config.cdc_margin());
        ctx.out.checkpoint(stream, &state)?;
        return Ok(());
    }
    drop(all);
    tracing::warn!(
        stream,
        "CDC response hit the {CDC_CAP}-object cap; asking per entity and splitting by time, which assumes the server keeps the oldest changes of a truncated answer (the entity streams reconcile instead and do not depend on it)"
    );
    for entity in DELETABLE {
        let mut entity_since = since.clone();
        loop {
            ctx.out.check_cancelled()?;
            let what = format!("cdc {stream} ({entity}) changedSince {entity_since}");
            let body = ctx
                .client
                .get(
                    "cdc",
                    &[
                        ("entities", entity),
                        ("changedSince", entity_since.as_str()),
                    ],
                    &what,
                )
                .await?;
            let page = parse::cdc_page(&body).map_err(|d| Error::Malformed {
                stream: stream.into(),
                position: what.clone(),
                detail: d,
            })?;
            let total = page.rows.len();
            let rows = sorted(
                page.rows
                    .into_iter()
                    .filter(|(e, _)| e == entity)
                    .map(|(_, r)| r)
                    .collect(),
            );
            let newest = rows.last().and_then(|r| r.updated_raw.clone());
            let one_instant = !rows.is_empty() && rows.iter().all(|r| r.updated == rows[0].updated);
            if emit(ctx, stream, entity, &mut state, &rows, limit)? {
                return Ok(());
            }
            let Some(newest) = newest.filter(|_| total >= CDC_CAP) else {
                break;
            };
            entity_since = if one_instant {
                tracing::warn!(stream, entity, "over {CDC_CAP} changes in one second; deletions beyond the cap in that second are not visible");
                parse_time(&newest)
                    .map(|t| {
                        (t + Duration::seconds(1))
                            .format("%Y-%m-%dT%H:%M:%S%:z")
                            .to_string()
                    })
                    .unwrap_or(newest)
            } else {
                newest
            };
        }
    }
    state.completed(started, ctx.config.cdc_margin());
    ctx.out.checkpoint(stream, &state)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_per_entity_states_load_as_no_complete_read() {
        let old = serde_json::json!({"Invoice": {"last_updated": "2024-01-01T00:00:00-08:00", "ids": {}}});
        let s: DeletedState = serde_json::from_value(old).expect("loads");
        assert_eq!(s, DeletedState::default());
    }
}
