//! `transaction_list`: the TransactionList report, which has no paging, read in date
//! chunks (`report_chunk_days`). The saved state is the last date fully read; an
//! incremental run re-reads `report_lookback_days` before it, because recent
//! transactions are often edited, and upserts by (type, id) absorb the overlap.

use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tributary_sdk::Record;

use super::Ctx;
use crate::error::{Error, Result};
use crate::parse;

/// Saved position of the report stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// Last TxnDate fully read.
    pub through: Option<NaiveDate>,
}

/// Reads `transaction_list`; returns the records emitted.
pub async fn read(ctx: &Ctx, stream: &str, state: Option<serde_json::Value>) -> Result<u64> {
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
    let chunk = i64::from(ctx.config.report_chunk_days.max(1));
    let mut emitted = 0u64;
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
        let rows = parse::report_rows(&body).map_err(|d| Error::Malformed {
            stream: stream.into(),
            position: what.clone(),
            detail: d,
        })?;
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            if ctx.window.limit.is_some_and(|l| emitted >= l) {
                break;
            }
            let text = |k: &str| {
                row.data
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            if !ctx.window.clients.is_empty()
                && !ctx.window.clients.iter().any(|c| *c == text("name_id"))
            {
                continue;
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
            let data = serde_json::Value::Object(row.data.clone()).to_string();
            let mut rec = Record::from_json(pk, data);
            let date = text("tx_date");
            if !date.is_empty() {
                rec.cursor = Some(date);
            }
            batch.push(rec);
            emitted += 1;
        }
        ctx.out.records(stream, batch)?;
        if ctx.window.limit.is_some_and(|l| emitted >= l) {
            // The chunk was cut short: its end is not fully read, so it is not saved.
            break;
        }
        ctx.out.checkpoint(
            stream,
            &ReportState {
                through: Some(chunk_end),
            },
        )?;
        start = chunk_end + Duration::days(1);
    }
    Ok(emitted)
}
