//! The reconciliation pass of an entity stream: what runs when CDC cannot answer (no
//! state, a last complete read beyond the 30-day horizon, `--full-refresh`, a refused
//! CDC request).
//!
//! The query API has no projection (results are whole objects), so the cheapest listing
//! of live keys is the full seek scan; it is done as the one pass of this run, without
//! the window's conditions (name lists keep `Active IN (true, false)`), inside a
//! [`Coverage::Source`] snapshot. Objects the saved position already covers are sent as
//! keys only; newer ones are emitted as records (they count as seen). When the scan
//! reaches the end the snapshot completes, the host marks every row it did not see as
//! deleted, and the state records the complete read. Stopped early (limit, cancel, error),
//! nothing is concluded and `complete_at` stays, so the next run reconciles again.
//!
//! Keys cross a page at a time; no more than a page of objects is held in memory.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use tributary_sdk::toolkit::Limit;
use tributary_sdk::{Coverage, Snapshot};

use super::entity::{list_conditions, record, Filter, Verdict};
use super::position::Position;
use super::seek::{malformed, seek, PageSink};
use super::state::{EntityState, StateRef};
use super::{Ctx, EntityStream};
use crate::error::Result;
use crate::parse::Row;

struct Reconcile<'a> {
    ctx: &'a Ctx,
    stream: &'a str,
    /// The position before this pass: what the destination holds already.
    saved: &'a Position,
    snapshot: &'a Snapshot,
    filter: &'a Filter,
    limit: &'a Limit,
    complete_at: &'a Option<String>,
    deleted: &'a std::collections::BTreeMap<String, String>,
    /// Server time of the first page: when the listing began.
    started: Option<DateTime<Utc>>,
    /// Stopped at the record limit before the end of the listing.
    stopped: bool,
    listed: u64,
}

impl PageSink for Reconcile<'_> {
    fn page(
        &mut self,
        cursor: &mut Position,
        rows: &[Row<'_>],
        time: Option<DateTime<FixedOffset>>,
        what: &str,
    ) -> Result<bool> {
        if self.started.is_none() {
            self.started = Some(
                time.map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|| self.ctx.client.server_now()),
            );
        }
        let mut keys = Vec::new();
        let mut batch = Vec::new();
        for row in rows {
            if row.updated.is_none() {
                return Err(malformed(
                    self.stream,
                    what,
                    format!(
                        "object Id {} has no readable MetaData.LastUpdatedTime",
                        row.id
                    ),
                ));
            }
            // The scan's own overlap: each page starts at the previous one's newest second.
            if cursor.seen(row) {
                continue;
            }
            let emit = !self.saved.seen(row) && self.filter.verdict(row) == Verdict::Emit;
            if emit {
                if !self.limit.admit() {
                    self.stopped = true;
                    break;
                }
                batch.push(record(row));
            } else {
                keys.push(row.id.clone());
            }
            cursor.advance(row);
        }
        self.listed += (keys.len() + batch.len()) as u64;
        let progressed = !batch.is_empty();
        self.ctx.out.records(self.stream, batch)?;
        self.snapshot.keys(keys)?;
        if progressed {
            // Exact for a resumed run: everything up to the cursor is in the destination.
            self.ctx.out.checkpoint(
                self.stream,
                &StateRef {
                    position: &Position::max_merge(self.saved, cursor),
                    complete_at: self.complete_at,
                    deleted: self.deleted,
                },
            )?;
        }
        Ok(self.stopped)
    }
}

/// Runs the reconciliation pass of `def`, moving `st` on.
pub(crate) async fn read(
    ctx: &Arc<Ctx>,
    def: &EntityStream,
    st: &mut EntityState,
    filter: &Filter,
    limit: &Limit,
) -> Result<()> {
    let snapshot = ctx.out.snapshot(def.name, Coverage::Source)?;
    let saved = st.position.clone();
    let mut cursor = Position::default();
    let (started, stopped, listed) = {
        let mut sink = Reconcile {
            ctx,
            stream: def.name,
            saved: &saved,
            snapshot: &snapshot,
            filter,
            limit,
            complete_at: &st.complete_at,
            deleted: &st.deleted,
            started: None,
            stopped: false,
            listed: 0,
        };
        // An error returns here and drops the snapshot: nothing is concluded.
        seek(ctx, def, &mut cursor, &list_conditions(def), &mut sink).await?;
        (sink.started, sink.stopped, sink.listed)
    };
    st.position = Position::max_merge(&saved, &cursor);
    if stopped {
        snapshot.abandon();
        ctx.out.checkpoint(def.name, &st.as_ref())?;
        tracing::info!(
            stream = def.name,
            listed,
            "reconciliation stopped at the record limit; nothing concluded, the next run reconciles again"
        );
        return Ok(());
    }
    snapshot.complete()?;
    st.completed(
        started.unwrap_or_else(|| ctx.client.server_now()),
        ctx.config.cdc_margin(),
    );
    ctx.out.checkpoint(def.name, &st.as_ref())?;
    tracing::info!(
        stream = def.name,
        listed,
        "reconciliation complete: every object listed, vanished ones are marked deleted"
    );
    Ok(())
}
