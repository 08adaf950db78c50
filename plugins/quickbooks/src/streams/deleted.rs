//! `deleted_objects`: every transaction QuickBooks hard-deleted, from CDC. One request
//! covers all transaction entities; when it reaches the 1,000-object cap the entity list
//! is split (one request per entity) and each entity's window is split further the way
//! entity streams do. CDC only reaches back 30 days: a position older than that restarts
//! at the horizon with a warning, since older deletions can no longer be read.

use std::collections::BTreeMap;

use tributary_sdk::Record;

use super::entity::{cdc_horizon, id_order, CDC_CAP};
use super::position::Position;
use super::Ctx;
use crate::error::{Error, Result};
use crate::parse::{self, format_time, Row};

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

/// Emits the deleted stubs among `rows` (sorted), advancing `pos` over all of them.
fn emit(
    ctx: &Ctx,
    stream: &str,
    entity: &str,
    pos: &mut Position,
    rows: &[Row<'_>],
    emitted: &mut u64,
) -> Result<bool> {
    let mut batch = Vec::new();
    for row in rows {
        if pos.seen(row) {
            continue;
        }
        if ctx.window.limit.is_some_and(|l| *emitted >= l) {
            return finish(ctx, stream, batch, true);
        }
        if let (Some(end), Some(t)) = (ctx.window.end, row.updated) {
            if t >= end {
                return finish(ctx, stream, batch, true);
            }
        }
        if row.deleted {
            batch.push(stub_record(entity, row)?);
            *emitted += 1;
        }
        pos.advance(row);
    }
    finish(ctx, stream, batch, false)
}

fn finish(ctx: &Ctx, stream: &str, batch: Vec<Record>, stop: bool) -> Result<bool> {
    ctx.out.records(stream, batch)?;
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

/// Reads `deleted_objects`; returns the records emitted.
pub async fn read(ctx: &Ctx, stream: &str, state: Option<serde_json::Value>) -> Result<u64> {
    let mut positions: BTreeMap<String, Position> = match state {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| Error::Config(format!("saved state of stream {stream} is not understood ({e}); reset it or run with --full-refresh")))?,
    };
    let horizon = cdc_horizon();
    let floor = match ctx.window.start {
        Some(s) if s > horizon => s,
        _ => horizon,
    };
    for entity in DELETABLE {
        let pos = positions.entry((*entity).to_string()).or_default();
        match pos.instant() {
            Some(t) if t >= floor => {}
            Some(t) => {
                tracing::warn!(stream, entity, since = %t, "position is older than the 30-day CDC window; deletions before {} can no longer be read", format_time(&floor));
                *pos = Position::at(format_time(&floor));
            }
            None => *pos = Position::at(format_time(&floor)),
        }
    }
    let mut emitted = 0u64;
    // One request for every entity, from the oldest position.
    let since = positions
        .values()
        .filter_map(|p| p.instant().map(|t| (t, p.last_updated.clone())))
        .min_by_key(|(t, _)| *t)
        .and_then(|(_, s)| s)
        .unwrap_or_default();
    let entities = DELETABLE.join(",");
    let what = format!("cdc {stream} changedSince {since}");
    let body = ctx
        .client
        .get(
            "cdc",
            &[
                ("entities", entities.as_str()),
                ("changedSince", since.as_str()),
            ],
            &what,
        )
        .await?;
    let all = parse::cdc_rows(&body).map_err(|d| Error::Malformed {
        stream: stream.into(),
        position: what.clone(),
        detail: d,
    })?;
    if all.len() < CDC_CAP {
        for entity in DELETABLE {
            let rows = sorted(
                all.iter()
                    .filter(|(e, _)| e == entity)
                    .map(|(_, r)| r.clone())
                    .collect(),
            );
            let pos = positions.entry((*entity).to_string()).or_default();
            let stop = emit(ctx, stream, entity, pos, &rows, &mut emitted)?;
            ctx.out.checkpoint(stream, &positions)?;
            if stop {
                break;
            }
        }
        return Ok(emitted);
    }
    drop(all);
    tracing::info!(
        stream,
        "CDC response hit the {CDC_CAP}-object cap; one request per entity"
    );
    for entity in DELETABLE {
        loop {
            ctx.out.check_cancelled()?;
            let since = positions
                .get(*entity)
                .and_then(|p| p.last_updated.clone())
                .unwrap_or_default();
            let what = format!("cdc {stream} ({entity}) changedSince {since}");
            let body = ctx
                .client
                .get(
                    "cdc",
                    &[("entities", entity), ("changedSince", since.as_str())],
                    &what,
                )
                .await?;
            let all = parse::cdc_rows(&body).map_err(|d| Error::Malformed {
                stream: stream.into(),
                position: what.clone(),
                detail: d,
            })?;
            let total = all.len();
            let rows = sorted(
                all.into_iter()
                    .filter(|(e, _)| e == entity)
                    .map(|(_, r)| r)
                    .collect(),
            );
            let one_instant = !rows.is_empty() && rows.iter().all(|r| r.updated == rows[0].updated);
            let pos = positions.entry((*entity).to_string()).or_default();
            let stop = emit(ctx, stream, entity, pos, &rows, &mut emitted)?;
            ctx.out.checkpoint(stream, &positions)?;
            if stop {
                return Ok(emitted);
            }
            if total < CDC_CAP {
                break;
            }
            if one_instant {
                tracing::warn!(stream, entity, "over {CDC_CAP} changes in one second; deletions beyond the cap in that second are not visible");
                if let Some(t) = positions.get(*entity).and_then(Position::instant) {
                    positions.insert(
                        (*entity).to_string(),
                        Position::at(
                            (t + chrono::Duration::seconds(1))
                                .format("%Y-%m-%dT%H:%M:%S%:z")
                                .to_string(),
                        ),
                    );
                }
            }
        }
    }
    Ok(emitted)
}
