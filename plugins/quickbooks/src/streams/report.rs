//! `transaction_list`: the TransactionList report, which has no paging, read in date
//! chunks. The saved state is the last date fully read; an incremental run re-reads
//! `report_lookback_days` before it, because recent transactions are often edited, and
//! upserts by (type, id) absorb the overlap.
//!
//! Memory stays bounded however many transactions a company has: a chunk's size adapts
//! to the density the previous answer showed (aiming at [`TARGET_ROWS`] rows an answer,
//! growing at most twofold a step and never past `report_chunk_days`, starting from one
//! day), and an answer is walked row by row ([`parse::report_each`]) and emitted in
//! batches of [`BATCH`], never turned into a tree of values. What one day holds cannot
//! be split: a day of more rows than that is read whole, as the API gives it.

use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tributary_sdk::toolkit::Limit;
use tributary_sdk::Record;

use super::Ctx;
use crate::error::{Error, Result};
use crate::parse;

/// Rows one report answer should hold: about 4 MB of JSON.
pub const TARGET_ROWS: u64 = 5_000;
/// Records per batch handed to the host.
const BATCH: usize = 1_000;

/// The next chunk's length in days after an answer of `rows` rows over `days` days:
/// sized to [`TARGET_ROWS`] at that density, at most twice `days`, within `1..=max`.
pub fn next_chunk_days(days: i64, rows: u64, max: i64) -> i64 {
    let fitted = (days as u64)
        .saturating_mul(TARGET_ROWS)
        .checked_div(rows)
        .map_or(i64::MAX, |d| i64::try_from(d).unwrap_or(i64::MAX));
    fitted.min(days.saturating_mul(2)).clamp(1, max.max(1))
}

/// Saved position of the report stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// Last TxnDate fully read.
    pub through: Option<NaiveDate>,
}

/// The record of one report row, or `None` when the client filter leaves it out.
fn record(ctx: &Ctx, row: &parse::ReportRow) -> Option<Record> {
    let text = |k: &str| {
        row.data
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if !ctx.window.clients.is_empty() && !ctx.window.clients.iter().any(|c| *c == text("name_id")) {
        return None;
    }
    let pk = match (text("txn_type"), text("txn_type_id")) {
        (t, id) if !id.is_empty() => Record::composite_key(&[t, id]),
        (t, _) => Record::composite_key(&[
            t,
            text("doc_num"),
            text("tx_date"),
            text("subt_nat_home_amount"),
        ]),
    };
    let mut rec = Record::from_json(pk, serde_json::Value::Object(row.data.clone()).to_string());
    let date = text("tx_date");
    if !date.is_empty() {
        rec.cursor = Some(date);
    }
    Some(rec)
}

/// Reads `transaction_list`; returns the records emitted.
pub async fn read(
    ctx: &Ctx,
    stream: &str,
    state: Option<serde_json::Value>,
    limit: &Limit,
) -> Result<()> {
    let state: ReportState = match state {
        None | Some(serde_json::Value::Null) => ReportState::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| Error::Config(format!("saved state of stream {stream} is not understood ({e}); reset it or run with --full-refresh")))?,
    };
    let today = Utc::now().date_naive();
    let floor = ctx.window.start.map(|s| s.date_naive());
    let mut start = match state.through {
        Some(t) => t - Duration::days(i64::from(ctx.config.report_lookback_days)),
        None => floor
            .or(ctx.config.start_date)
            .unwrap_or(today - Duration::days(3 * 365)),
    };
    if let Some(f) = floor {
        start = start.max(f);
    }
    // One day past today: company-local dates run up to a day ahead of UTC's.
    let end = ctx
        .window
        .end
        .map(|e| (e - Duration::nanoseconds(1)).date_naive())
        .unwrap_or(today + Duration::days(1));
    let max_chunk = i64::from(ctx.config.report_chunk_days.max(1));
    let mut chunk = 1i64;
    while start <= end {
        ctx.out.check_cancelled()?;
        let chunk_end = (start + Duration::days(chunk - 1)).min(end);
        let (s, e) = (
            start.format("%Y-%m-%d").to_string(),
            chunk_end.format("%Y-%m-%d").to_string(),
        );
        let what = format!("report TransactionList for {stream} from {s} to {e}");
        let body = ctx
            .client
            .get(
                "reports/TransactionList",
                &[("start_date", s.as_str()), ("end_date", e.as_str())],
                &what,
            )
            .await?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut rows = 0u64;
        let mut cut = false;
        // Records leave in batches while the answer is walked; an emit error is kept
        // apart from parse errors so it is reported as itself.
        let mut sent: Result<()> = Ok(());
        let walked = parse::report_each(&body, |row| {
            rows += 1;
            if limit.reached() {
                cut = true;
                return Err(String::new());
            }
            if let Some(rec) = record(ctx, &row) {
                batch.push(rec);
                limit.admit();
            }
            if batch.len() >= BATCH {
                if let Err(e) = ctx.out.records(stream, std::mem::take(&mut batch)) {
                    sent = Err(e.into());
                    return Err(String::new());
                }
            }
            Ok(())
        });
        sent?;
        match walked {
            Err(detail) if !cut => {
                return Err(Error::Malformed {
                    stream: stream.into(),
                    position: what,
                    detail,
                })
            }
            _ => {}
        }
        ctx.out.records(stream, batch)?;
        drop(body);
        if cut || limit.reached() {
            // The chunk was cut short: its end is not fully read, so it is not saved.
            break;
        }
        ctx.out.checkpoint(
            stream,
            &ReportState {
                through: Some(chunk_end),
            },
        )?;
        let days = (chunk_end - start).num_days() + 1;
        chunk = next_chunk_days(days, rows, max_chunk);
        start = chunk_end + Duration::days(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_the_density_grow_gently_and_stay_in_bounds() {
        // Sparse: doubles up to the maximum.
        assert_eq!(next_chunk_days(1, 3, 30), 2);
        assert_eq!(next_chunk_days(16, 40, 30), 30);
        assert_eq!(next_chunk_days(30, 0, 30), 30);
        // Dense: shrinks to fit the target, never below a day.
        assert_eq!(next_chunk_days(30, 60_000, 30), 2);
        assert_eq!(next_chunk_days(2, 1_000_000, 30), 1);
        assert_eq!(next_chunk_days(8, 5_000, 30), 8);
    }
}
