//! An entity stream's CDC read, from the last complete read (`complete_at`).
//!
//! One request returns every change since `complete_at`, deletions included
//! (`status: "Deleted"` stubs, emitted as deletion records). The answer is read
//! inclusively: `changedSince` is the margin before the previous read started, so it
//! overlaps what that read saw, and the exact position plus the remembered deletions drop
//! the overlap. Deletion stubs are never dropped for being older than the position.
//!
//! A response at the 1,000-object cap is not trusted: the documentation does not say
//! which 1,000 changes a truncated answer holds (oldest first, by Id, ...), and CDC takes
//! no upper bound, so no split by time can be proven complete. Nothing of it is emitted;
//! the caller reconciles from the saved position instead, which is exact whatever the
//! server's order (a full scan, needed only when more than 1,000 objects of one entity
//! changed since the last complete read).
//!
//! CDC answers for 30 days. Whether the last complete read is inside that horizon is
//! judged by the server's clock (the envelope `time` of the answer), so a client clock
//! that runs behind cannot make a truncated answer look complete; a refused request
//! (HTTP 400, e.g. a `ValidationFault` for an old `changedSince`) is not an error either.
//! All three mean "CDC cannot answer" and the caller reconciles.

use std::sync::Arc;

use tributary_sdk::toolkit::Limit;

use super::entity::{cdc_horizon, emit_rows, id_order, Filter, CDC_CAP};
use super::seek::malformed;
use super::state::EntityState;
use super::{Ctx, EntityStream};
use crate::error::Result;
use crate::parse::{self, Row};

/// How a CDC read ended.
#[derive(Debug)]
pub(crate) enum CdcOutcome {
    /// Read to the end (or to the limit); the state says which.
    Done,
    /// CDC cannot answer for the whole period since `complete_at`; why. Nothing was
    /// emitted and the state is unchanged.
    CannotAnswer(String),
}

/// Reads `def` through CDC from `st.complete_at`, moving `st` on; on success the read
/// is complete and `complete_at` moves to this read's start less the margin.
pub(crate) async fn read(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    st: &mut EntityState,
    filter: &Filter,
    limit: &Limit,
) -> Result<CdcOutcome> {
    let (Some(since), Some(complete)) = (st.complete_at.clone(), st.complete_instant()) else {
        return Ok(CdcOutcome::CannotAnswer("no complete read known".into()));
    };
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
    let now = page
        .time
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| ctx.client.server_now());
    if complete <= cdc_horizon(now) {
        return Ok(CdcOutcome::CannotAnswer(format!(
            "by the server's clock ({now}) the last complete read ({complete}) is beyond CDC's 30-day horizon, so its answer may be incomplete"
        )));
    }
    if page.rows.len() >= CDC_CAP {
        return Ok(CdcOutcome::CannotAnswer(format!(
            "the CDC answer holds {} objects, QuickBooks' cap, so it may be truncated",
            page.rows.len()
        )));
    }
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
    let stop = emit_rows(
        ctx,
        def.name,
        &mut st.position,
        &mut st.deleted,
        &rows,
        filter,
        limit,
        &what,
    )?;
    if !stop {
        // Stopped at the limit, the position is exact and `complete_at` stays.
        st.completed(now, ctx.config.cdc_margin());
    }
    ctx.out.checkpoint(def.name, &st.as_ref())?;
    Ok(CdcOutcome::Done)
}
