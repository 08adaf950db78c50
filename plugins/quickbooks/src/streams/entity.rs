//! Entity streams: which path a read takes, and the window filter.
//!
//! - **CDC from the last complete read** ([`super::cdc`]) when the stream's `complete_at`
//!   (see [`super::state`]) is inside the 30-day horizon, judged by the server's clock:
//!   every change since then, deletions included, however old the newest object is.
//! - **Reconciliation** ([`super::reconcile`]) when CDC cannot answer: no state, no or too
//!   old `complete_at`, `--full-refresh`, or CDC refusing the request. One seek scan of
//!   every object inside a snapshot: the host marks whatever it did not list as deleted.
//! - **Narrowed reads** (`--client`, `--since/--until`): the query API with the window's
//!   conditions at the source, from the narrowed scope's own position. No CDC, no
//!   reconciliation, no deletions: a one-client or one-month extraction stays cheap and
//!   touches nothing outside its window; proving deletions is the main sync's job.
//!
//! Every page is checkpointed with the exact position, so a stopped run resumes without
//! duplicates or misses.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use tributary_sdk::toolkit::Limit;
use tributary_sdk::Record;

use super::cdc::{self, CdcOutcome};
use super::position::Position;
use super::reconcile;
use super::seek::{malformed, seek, PageSink};
use super::state::{EntityState, StateRef};
use super::{ClientField, Ctx, EntityStream};
use crate::config::WindowField;
use crate::error::Result;
use crate::parse::{format_time, Row};

/// Objects one CDC response may carry.
pub const CDC_CAP: usize = 1000;
/// How far back CDC reaches, in days.
pub const CDC_DAYS: i64 = 30;

/// The oldest `changedSince` trusted when the server's clock reads `now`: 30 days less an
/// hour of safety.
pub fn cdc_horizon(now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(CDC_DAYS) + Duration::hours(1)
}

/// What to do with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Emit,
    Skip,
    Stop,
}

/// The window and client filter, resolved once per stream.
#[derive(Debug)]
pub(crate) struct Filter {
    pub(crate) updated_from: Option<chrono::DateTime<Utc>>,
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

    pub(crate) fn verdict(&self, row: &Row<'_>) -> Verdict {
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
    pub(crate) fn conditions(&self, def: &EntityStream) -> Vec<String> {
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

/// The record for one object (a deletion record for a CDC stub).
pub(crate) fn record(row: &Row<'_>) -> Record {
    let mut rec =
        Record::from_json(row.id.clone(), row.raw.get().to_string()).with_deleted(row.deleted);
    rec.cursor = row.updated_raw.clone();
    rec
}

/// Emits `rows` (already in ascending order) that were not emitted before, moving `pos`
/// over them and remembering emitted deletions in `deleted`; returns true when the
/// stream must stop (limit reached or past the window's end). The caller checkpoints.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_rows(
    ctx: &Ctx,
    stream: &str,
    pos: &mut Position,
    deleted: &mut BTreeMap<String, String>,
    rows: &[Row<'_>],
    filter: &Filter,
    limit: &Limit,
    where_: &str,
) -> Result<bool> {
    let mut batch = Vec::with_capacity(rows.len());
    let mut stop = false;
    for row in rows {
        // A live object must say when it changed; a deletion stub without a time (the
        // reference infers its JSON shape from an XML capture) is still a deletion, and
        // only never moves the position.
        if row.updated.is_none() && !row.deleted {
            return Err(malformed(
                stream,
                where_,
                format!(
                    "object Id {} has no readable MetaData.LastUpdatedTime",
                    row.id
                ),
            ));
        }
        // Ids are never reused: a deletion emitted once is done, whatever its time.
        if (row.deleted && deleted.contains_key(&row.id)) || pos.seen(row) {
            continue;
        }
        if limit.reached() {
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
                batch.push(record(row));
                limit.admit();
                if row.deleted {
                    // Remembered until a complete read starts after it.
                    let at = match (&row.updated_raw, row.updated) {
                        (Some(t), Some(_)) => t.clone(),
                        _ => format_time(&ctx.client.server_now()),
                    };
                    deleted.insert(row.id.clone(), at);
                }
            }
        }
        pos.advance(row);
    }
    ctx.out.records(stream, batch)?;
    Ok(stop || limit.reached())
}

/// The ordinary sink: emit what is new, checkpoint every page.
pub(crate) struct Emit<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) stream: &'a str,
    pub(crate) filter: &'a Filter,
    pub(crate) limit: &'a Limit,
    pub(crate) complete_at: &'a Option<String>,
    pub(crate) deleted: &'a mut BTreeMap<String, String>,
}

impl PageSink for Emit<'_> {
    fn page(
        &mut self,
        cursor: &mut Position,
        rows: &[Row<'_>],
        _time: Option<DateTime<FixedOffset>>,
        what: &str,
    ) -> Result<bool> {
        let stop = emit_rows(
            self.ctx,
            self.stream,
            cursor,
            self.deleted,
            rows,
            self.filter,
            self.limit,
            what,
        )?;
        self.ctx.out.checkpoint(
            self.stream,
            &StateRef {
                position: cursor,
                complete_at: self.complete_at,
                deleted: self.deleted,
            },
        )?;
        Ok(stop)
    }
}

/// Reads one entity stream.
pub async fn read(
    ctx: &Arc<Ctx>,
    def: EntityStream,
    state: Option<serde_json::Value>,
    limit: &Limit,
) -> Result<()> {
    let mut st = EntityState::from_state(def.name, state)?;
    let filter = Filter::new(ctx, &def);
    if ctx.window.narrows() {
        narrowed(ctx, &def, &mut st, &filter, limit).await?;
    } else {
        let horizon = cdc_horizon(ctx.client.server_now());
        match st.complete_instant() {
            Some(c) if c > horizon => {
                tracing::info!(
                    stream = def.name,
                    since = st.complete_at.as_deref().unwrap_or(""),
                    "incremental read through CDC from the last complete read"
                );
                match cdc::read(ctx, &def, &mut st, &filter, limit).await? {
                    CdcOutcome::Done => {}
                    CdcOutcome::CannotAnswer(why) => {
                        tracing::warn!(stream = def.name, "{why}; reconciling instead");
                        reconcile::read(ctx, &def, &mut st, &filter, limit).await?;
                    }
                }
            }
            Some(_) => {
                tracing::info!(
                    stream = def.name,
                    complete_at = st.complete_at.as_deref().unwrap_or(""),
                    "the last complete read is beyond CDC's 30-day horizon; reconciling"
                );
                reconcile::read(ctx, &def, &mut st, &filter, limit).await?;
            }
            None => {
                tracing::info!(
                    stream = def.name,
                    "no complete read known; reconciling (a full scan that also proves deletions)"
                );
                reconcile::read(ctx, &def, &mut st, &filter, limit).await?;
            }
        }
    }
    Ok(())
}

/// A read narrowed by clients or dates: the query API with the window's conditions, from
/// the narrowed scope's position (the host keeps it apart from the main one).
async fn narrowed(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    st: &mut EntityState,
    filter: &Filter,
    limit: &Limit,
) -> Result<()> {
    // A window start after the saved position moves the position up to it.
    if let Some(start) = filter.updated_from {
        if st.position.instant().is_none_or(|p| p < start) {
            st.position = Position::at(format_time(&start));
        }
    }
    tracing::info!(
        stream = def.name,
        since = st
            .position
            .last_updated
            .as_deref()
            .unwrap_or("the beginning"),
        "narrowed read through the query API (no deletions are concluded)"
    );
    let conditions = filter.conditions(def);
    let EntityState {
        position,
        complete_at,
        deleted,
    } = st;
    let mut sink = Emit {
        ctx,
        stream: def.name,
        filter,
        limit,
        complete_at,
        deleted,
    };
    seek(ctx, def, position, &conditions, &mut sink).await
}

/// WHERE conditions of a reconciliation pass: none of the window's, only what makes a
/// name list return its inactive rows.
pub(crate) fn list_conditions(def: &EntityStream) -> Vec<String> {
    if def.list {
        vec!["Active IN (true, false)".to_string()]
    } else {
        Vec::new()
    }
}

/// Orders ids numerically when both are numbers.
pub(crate) fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}
