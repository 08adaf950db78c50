//! An entity stream's CDC read, from the last complete read (`complete_at`).
//!
//! One request returns every change since `complete_at`, deletions included
//! (`status: "Deleted"` stubs, emitted as deletion records). The answer is read
//! inclusively: `changedSince` is the margin before the previous read started, so it
//! overlaps what that read saw, and the exact position plus the remembered deletions drop
//! the overlap. Deletion stubs are never dropped for being older than the position.
//!
//! A response at the 1,000-object cap is not trusted to be complete: the next request
//! starts from the newest change it held (the server, as far as anyone has observed,
//! returns the oldest changes first), until a response comes back under the cap. A second
//! with more than 1,000 changes cannot be split by time: its live objects are read
//! through the query API (deletions beyond the cap in that second stay invisible to CDC;
//! the next reconciliation catches them).
//!
//! CDC answers for 30 days. Whether the last complete read is inside that horizon is
//! judged by the server's clock (the envelope `time` of the first answer), so a client
//! clock that runs behind cannot make a truncated answer look complete; a refused request
//! (HTTP 400, e.g. a `ValidationFault` for an old `changedSince`) is not an error either.
//! Both mean "CDC cannot answer" and the caller reconciles.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::entity::{cdc_horizon, emit_rows, id_order, Emit, Filter, CDC_CAP};
use super::seek::{malformed, tie};
use super::state::EntityState;
use super::{Ctx, EntityStream};
use crate::error::Result;
use crate::parse::{self, Row};

/// How a CDC read ended.
#[derive(Debug)]
pub(crate) enum CdcOutcome {
    /// Read to the end (or to the limit); the state says which.
    Done,
    /// CDC cannot answer for the whole period since `complete_at`; why.
    CannotAnswer(String),
}

/// Reads `def` through CDC from `st.complete_at`, moving `st` on; on success the read
/// is complete and `complete_at` moves to this read's start less the margin.
pub(crate) async fn read(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    st: &mut EntityState,
    filter: &Filter,
    emitted: &mut u64,
) -> Result<CdcOutcome> {
    let (Some(mut since), Some(complete)) = (st.complete_at.clone(), st.complete_instant()) else {
        return Ok(CdcOutcome::CannotAnswer("no complete read known".into()));
    };
    let mut started: Option<DateTime<Utc>> = None;
    loop {
        ctx.out.check_cancelled()?;
        let what = format!("cdc {} changedSince {since}", def.name);
        let body = match ctx
            .client
            .get(
                "cdc",
                &[("entities", def.entity), ("changedSince", since.as_str())],
                &what,
            )
            .await
        {
            Ok(b) => b,
            Err(e) if e.is_bad_request() => {
                return Ok(CdcOutcome::CannotAnswer(format!(
                    "QuickBooks refused the CDC request ({e})"
                )))
            }
            Err(e) => return Err(e),
        };
        let page = parse::cdc_page(&body).map_err(|d| malformed(def.name, &what, d))?;
        ctx.client.observe_server_time(page.time);
        if started.is_none() {
            let now = page
                .time
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| ctx.client.server_now());
            if complete <= cdc_horizon(now) {
                return Ok(CdcOutcome::CannotAnswer(format!(
                    "by the server's clock ({now}) the last complete read ({complete}) is beyond CDC's 30-day horizon, so its answer may be incomplete"
                )));
            }
            started = Some(now);
        }
        let total = page.rows.len();
        let mut rows: Vec<Row<'_>> = page
            .rows
            .into_iter()
            .filter(|(e, _)| e == def.entity)
            .map(|(_, r)| r)
            .collect();
        rows.sort_by(|a, b| {
            a.updated
                .cmp(&b.updated)
                .then_with(|| id_order(&a.id, &b.id))
        });
        let newest = rows.last().and_then(|r| r.updated_raw.clone());
        let one_instant = !rows.is_empty() && rows.iter().all(|r| r.updated == rows[0].updated);
        let stop = emit_rows(
            ctx,
            def.name,
            &mut st.position,
            &mut st.deleted,
            &rows,
            filter,
            emitted,
            &what,
        )?;
        ctx.out.checkpoint(def.name, &st.as_ref())?;
        if stop {
            // Stopped at the limit: the position is exact, `complete_at` stays.
            return Ok(CdcOutcome::Done);
        }
        let Some(newest) = newest.filter(|_| total >= CDC_CAP) else {
            if let Some(s) = started {
                st.completed(s, ctx.config.cdc_margin());
            }
            ctx.out.checkpoint(def.name, &st.as_ref())?;
            return Ok(CdcOutcome::Done);
        };
        tracing::info!(
            stream = def.name,
            "CDC response hit the {CDC_CAP}-object cap; splitting the window"
        );
        if one_instant {
            tracing::warn!(stream = def.name, at = %newest, "over {CDC_CAP} changes in one second; reading it through the query API (deletions beyond the cap in that second wait for the next reconciliation)");
            let conditions = filter.conditions(def);
            let EntityState {
                position,
                complete_at,
                deleted,
            } = &mut *st;
            let mut sink = Emit {
                ctx,
                stream: def.name,
                filter,
                emitted,
                complete_at,
                deleted,
            };
            if tie(ctx, def, position, &conditions, &mut sink).await? {
                return Ok(CdcOutcome::Done);
            }
            let next = parse::parse_time(&newest).map(|t| t + Duration::seconds(1));
            since = match next {
                Some(t) => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                None => newest,
            };
        } else {
            since = newest;
        }
    }
}
