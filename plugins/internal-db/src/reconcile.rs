//! Key reconciliation: how hard-deleted rows are found.
//!
//! Keyset reads on `updated_at` cannot see an absence, so a pass lists every live `id` of
//! the table, keyset-paged by `id` (the primary-key index, nothing else), and sends the
//! ids to the host inside a [`Coverage::Source`] snapshot. When the snapshot completes,
//! the host marks every row of the stream it holds whose key was not listed as deleted,
//! in the same transaction.
//!
//! The listing has no window and no client condition: it is a statement about the whole
//! table, which is why the host may accept it whatever the read's window (rows outside a
//! date window are listed too, so they never look deleted). Soft-deleted rows are left
//! out of it, so a row soft-deleted before its column was configured is marked as well.
//!
//! Paging by the immutable `id` is what makes the listing exact on a live table: a row
//! that exists from the first page to the last is on exactly one page, whatever is
//! inserted, updated or deleted meanwhile. Memory stays flat: one page of ids is in
//! flight while the next is fetched, and the host keeps seen keys in a temporary table.

use std::time::Instant;

use tokio::sync::mpsc;
use tributary_sdk::{ConnectorError, Coverage, Emitter};

use crate::client::Db;
use crate::dialect::KeyFilter;
use crate::error::Result;
use crate::read::Stop;
use crate::streams::StreamDef;

/// Most ids one key page holds, whatever `page_size` says: keys are small, and more
/// per batch buys nothing once the per-query cost is amortised.
const MAX_KEY_PAGE: u32 = 50_000;

/// Runs one reconciliation pass of `def`: opens the snapshot, lists every live id in
/// pages of `page_size`, and completes it. Returns the ids listed. On any error the
/// snapshot is dropped, which abandons it: nothing is marked.
pub(crate) async fn run(
    db: &Db,
    def: &'static StreamDef,
    soft_delete: Option<String>,
    page_size: u32,
    out: &Emitter,
) -> Result<u64, Stop> {
    let snapshot = out
        .snapshot(def.name, Coverage::Source)
        .map_err(Stop::Host)?;
    let started = Instant::now();
    tracing::info!(
        stream = def.name,
        "reconciliation started: listing every live id"
    );
    let (tx, mut rx) = mpsc::channel::<Result<Vec<i64>>>(1);
    let producer = tokio::spawn(list_ids(
        db.clone(),
        def,
        soft_delete,
        page_size.clamp(1, MAX_KEY_PAGE),
        tx,
    ));
    let mut listed = 0u64;
    let mut stop = None;
    while let Some(page) = rx.recv().await {
        let ids = match page {
            Ok(ids) => ids,
            Err(e) => {
                stop = Some(Stop::Source(e.into()));
                break;
            }
        };
        listed += ids.len() as u64;
        let keys = ids.iter().map(i64::to_string).collect();
        if let Err(e) = snapshot.keys(keys).and_then(|()| out.check_cancelled()) {
            stop = Some(Stop::Host(e));
            break;
        }
    }
    // Dropping the receiver makes a producer that is still fetching stop at its next send.
    drop(rx);
    let joined = producer.await;
    if let Some(stop) = stop {
        return Err(stop);
    }
    joined.map_err(|e| Stop::Source(ConnectorError::system(format!("key lister failed: {e}"))))?;
    // Logged before the completion goes out, so a log reader that has not seen this line
    // knows the host has not been told to mark anything yet.
    tracing::info!(
        stream = def.name,
        ids = listed,
        secs = started.elapsed().as_secs_f64(),
        "reconciliation listed every live id"
    );
    snapshot.complete().map_err(Stop::Host)?;
    Ok(listed)
}

/// Fetches key pages in id order until the table is exhausted, one page ahead of the
/// consumer.
async fn list_ids(
    db: Db,
    def: &'static StreamDef,
    soft_delete: Option<String>,
    page_size: u32,
    tx: mpsc::Sender<Result<Vec<i64>>>,
) {
    let context = format!("listing ids of {} in {}", def.name, db.redacted_url());
    let mut after = None;
    loop {
        let st = db.dialect().keys_query(
            def,
            &KeyFilter {
                after,
                soft_delete: soft_delete.clone(),
                limit: i64::from(page_size),
            },
        );
        let ids = match db.fetch_ids(&st, &context).await {
            Ok(ids) => ids,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = ids.len() == page_size as usize;
        after = ids.last().copied();
        if !ids.is_empty() && tx.send(Ok(ids)).await.is_err() {
            return;
        }
        if !full {
            return;
        }
    }
}
