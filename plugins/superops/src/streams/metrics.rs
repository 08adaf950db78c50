//! Derived service-delivery streams, computed from what is extracted in the read's window.
//!
//! **`sla_summary`**, one row per client (key `client_id`), over tickets *created* in the
//! window (all tickets when the window is open):
//! - `tickets`: count; `resolved_tickets`: those with a `resolutionTime`.
//! - `first_response_measured`: tickets whose `firstResponseViolated` is not null;
//!   `first_response_met`: those where it is `false`;
//!   `first_response_attainment` = met / measured (null when nothing was measured).
//! - `resolution_measured`, `resolution_met`, `resolution_attainment`: the same with
//!   `resolutionViolated`.
//! - `mean_resolution_hours` = mean of (`resolutionTime` − `createdTime`) in hours over
//!   resolved tickets (null when none).
//!
//! **`technician_productivity`**, one row per technician (key `technician_id`):
//! - `worklog_entries`, `worklog_hours` (sum of `qty`, exact decimal text),
//!   `billable_hours` (sum of `qty` where `billable`), `billable_share` = billable /
//!   worklog hours (null when no hours), over worklog entries of both modules whose
//!   `billDateTime` is in the window;
//! - `tickets_resolved`: tickets assigned to the technician whose `resolutionTime` is in
//!   the window.
//!
//! With a client filter, only that client's tickets count, and only TICKET-module
//! worklogs on those tickets (PROJECT entries carry no client).
//!
//! **Deletions.** Both streams are recomputed in full on every read, so without a
//! narrowing window each read is a complete snapshot of them: the row of a client or
//! technician that no longer has anything to aggregate (its tickets and worklogs were
//! deleted, or re-assigned) is marked deleted instead of keeping stale figures. The
//! snapshot is completed only when the ticket and worklog scans behind it were whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tributary_sdk::toolkit::Limit;
use tributary_sdk::Record;

use super::{client_condition, defs, full_scan, parse_row, Ctx, Scan, SeenKeys};
use crate::error::{Error, Result};
use crate::json::text_of;
use crate::time;

/// Name of the per-client SLA stream.
pub const SLA_SUMMARY: &str = "sla_summary";
/// Name of the per-technician stream.
pub const TECHNICIAN_PRODUCTIVITY: &str = "technician_productivity";
/// Both derived streams: name, fields (the notation of [`crate::schema`]), what the date
/// window applies to, and what the client filter narrows by.
pub const METRIC_FIELDS: [(&str, &str, &str, &str); 2] = [
    (
        SLA_SUMMARY,
        "client_id:id client_name tickets:int resolved_tickets:int first_response_measured:int first_response_met:int first_response_attainment:num resolution_measured:int resolution_met:int resolution_attainment:num mean_resolution_hours:num window_start:time window_end:time",
        "tickets' createdTime",
        "client_id",
    ),
    (
        TECHNICIAN_PRODUCTIVITY,
        "technician_id:id technician_name worklog_entries:int worklog_hours:money billable_hours:money billable_share:num tickets_resolved:int window_start:time window_end:time",
        "worklogs' billDateTime, tickets' resolutionTime",
        "the client's tickets and their worklogs",
    ),
];

/// What the metrics need of the tickets, aggregated while they are scanned: never one
/// entry per ticket, so a tenant's ticket count does not decide the memory a read needs.
#[derive(Debug, Default)]
pub struct Facts {
    /// SLA figures per client, over tickets created in the window.
    by_client: BTreeMap<String, SlaAcc>,
    /// Per technician: a name and the tickets resolved in the window.
    resolved_by_tech: BTreeMap<String, (Option<String>, u64)>,
    /// Under a client filter, the ids of those clients' tickets (worklogs are attributed
    /// to a client through their ticket); `None` without one.
    pub client_ticket_ids: Option<HashSet<String>>,
    /// The scan was a whole listing ([`super::ScanOutcome::is_whole`], no repeats).
    pub whole: bool,
}

impl Facts {
    fn add(&mut self, ctx: &Ctx, v: &super::RowView, id: &str) {
        let client_id = text_of(v.client.as_ref().and_then(|c| c.get("accountId")));
        let created = v.created_time.as_deref().and_then(time::parse);
        let resolved = v.resolution_time.as_deref().and_then(time::parse);
        if let Some(ids) = &mut self.client_ticket_ids {
            ids.insert(id.to_string());
        }
        if let (Some(client), Some(created)) = (client_id, created) {
            if ctx.in_window(created) {
                let a = self.by_client.entry(client).or_default();
                if a.name.is_none() {
                    a.name = name_of(v.client.as_ref());
                }
                a.tickets += 1;
                if let Some(r) = resolved {
                    a.resolved += 1;
                    a.resolution_micros += micros_between(created, r);
                }
                if let Some(violated) = v.first_response_violated.as_ref().and_then(Value::as_bool)
                {
                    a.fr_measured += 1;
                    a.fr_met += u64::from(!violated);
                }
                if let Some(violated) = v.resolution_violated.as_ref().and_then(Value::as_bool) {
                    a.res_measured += 1;
                    a.res_met += u64::from(!violated);
                }
            }
        }
        let tech = text_of(v.technician.as_ref().and_then(|t| t.get("userId")));
        if let (Some(tech), Some(resolved)) = (tech, resolved) {
            if ctx.in_window(resolved) {
                let e = self.resolved_by_tech.entry(tech).or_default();
                if e.0.is_none() {
                    e.0 = name_of(v.technician.as_ref());
                }
                e.1 += 1;
            }
        }
    }
}

fn name_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Scans the tickets the metrics (and client-filtered worklogs) need, once per read.
pub async fn ticket_facts(ctx: &Ctx) -> Result<Arc<Facts>> {
    ctx.facts
        .get_or_try_init(|| async {
            let def = defs::find("tickets").ok_or_else(|| Error::Other("tickets stream undefined".into()))?;
            let scan = Scan::new(
                def,
                "ticketId client technician createdTime resolutionTime firstResponseViolated resolutionViolated",
                ctx.config.page_size,
            )
            .with_sort("createdTime", false)
            .with_condition(client_condition(&ctx.window.clients).into_iter().collect());
            let clients = ctx.clients();
            let mut facts = Facts {
                client_ticket_ids: clients.as_ref().map(|_| HashSet::new()),
                ..Facts::default()
            };
            let mut seen = SeenKeys::default();
            let mut page_no = 0;
            let mut repeated = false;
            let outcome = full_scan(ctx, &scan, |page| {
                page_no += 1;
                for (i, raw) in page.items.iter().enumerate() {
                    let (_, v) = parse_row(raw, "tickets", page_no, i)?;
                    let Some(id) = v.ticket_id.as_deref() else { continue };
                    if let Some(cs) = &clients {
                        let client_id = text_of(v.client.as_ref().and_then(|c| c.get("accountId")));
                        if !client_id.as_deref().is_some_and(|c| cs.contains(c)) {
                            continue;
                        }
                    }
                    if !seen.insert(id) {
                        repeated = true;
                        continue;
                    }
                    facts.add(ctx, &v, id);
                }
                Ok(true)
            })
            .await?;
            facts.whole = outcome.is_whole() && !repeated;
            Ok(Arc::new(facts))
        })
        .await
        .cloned()
}

/// A decimal with six fractional digits, enough for hours and quantities, summed exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Micros(i128);

impl Micros {
    fn parse(s: &str) -> Option<Micros> {
        let s = s.trim();
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (w, f) = s.split_once('.').unwrap_or((s, ""));
        if w.is_empty() && f.is_empty()
            || f.len() > 6
            || !w.chars().chain(f.chars()).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let whole: i128 = if w.is_empty() { 0 } else { w.parse().ok()? };
        let frac: i128 = format!("{f:0<6}").parse().ok()?;
        let v = whole * 1_000_000 + frac;
        Some(Micros(if neg { -v } else { v }))
    }

    fn to_text(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.abs();
        let frac = format!("{:06}", a % 1_000_000);
        let frac = frac.trim_end_matches('0');
        format!("{sign}{}.{frac:0<2}", a / 1_000_000)
    }

    fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

fn ratio(num: u64, den: u64) -> Value {
    if den == 0 {
        Value::Null
    } else {
        json!(num as f64 / den as f64)
    }
}

/// Emits derived stream `name`; without a narrowing window, as a snapshot.
pub async fn read(ctx: &Ctx, name: &str, limit: &Limit) -> Result<()> {
    let facts = ticket_facts(ctx).await?;
    let window = json!({
        "window_start": ctx.window.start.map(time::to_cursor),
        "window_end": ctx.window.end.map(time::to_cursor),
    });
    let (records, whole) = if name == SLA_SUMMARY {
        (sla_summary(&facts, &window)?, facts.whole)
    } else {
        let (records, worklogs_whole) = technician_productivity(ctx, &facts, &window).await?;
        (records, facts.whole && worklogs_whole)
    };
    let mut records = records;
    let n = records.len();
    records.truncate(limit.take(n));
    let cut = records.len() < n;
    let snapshot = super::open_snapshot(ctx, name)?;
    ctx.out.records(name, records)?;
    super::conclude(
        snapshot,
        whole && !cut,
        "the rows were cut by the record limit, or the scans behind them changed while they were paged",
    )?;
    Ok(())
}

#[derive(Debug, Default)]
struct SlaAcc {
    name: Option<String>,
    tickets: u64,
    resolved: u64,
    fr_measured: u64,
    fr_met: u64,
    res_measured: u64,
    res_met: u64,
    /// Σ (resolutionTime − createdTime) in microseconds: timestamps carry up to six
    /// fractional digits, which whole seconds would drop.
    resolution_micros: i128,
}

fn sla_summary(facts: &Facts, window: &Value) -> Result<Vec<Record>> {
    facts
        .by_client
        .iter()
        .map(|(client, a)| {
            let mut row = json!({
                "client_id": client,
                "client_name": a.name.clone(),
                "tickets": a.tickets,
                "resolved_tickets": a.resolved,
                "first_response_measured": a.fr_measured,
                "first_response_met": a.fr_met,
                "first_response_attainment": ratio(a.fr_met, a.fr_measured),
                "resolution_measured": a.res_measured,
                "resolution_met": a.res_met,
                "resolution_attainment": ratio(a.res_met, a.res_measured),
                "mean_resolution_hours": if a.resolved == 0 { Value::Null } else { json!(a.resolution_micros as f64 / 3.6e9 / a.resolved as f64) },
            });
            merge(&mut row, window);
            Record::from_value(client.clone(), &row).map_err(|e| Error::Other(e.message))
        })
        .collect()
}

#[derive(Default)]
struct TechAcc {
    name: Option<String>,
    entries: u64,
    hours: Micros,
    billable: Micros,
    resolved: u64,
}

/// The rows, and whether the worklog scans behind them were whole listings.
async fn technician_productivity(
    ctx: &Ctx,
    facts: &Facts,
    window: &Value,
) -> Result<(Vec<Record>, bool)> {
    let def = defs::find("worklog_entries")
        .ok_or_else(|| Error::Other("worklog stream undefined".into()))?;
    let ticket_ids = facts.client_ticket_ids.as_ref();
    let mut by_tech: BTreeMap<String, TechAcc> = BTreeMap::new();
    let mut whole = true;
    for module in ["TICKET", "PROJECT"] {
        if ticket_ids.is_some() && module == "PROJECT" {
            continue;
        }
        let mut scan = Scan::new(
            def,
            "itemId billable qty billDateTime technician workItem",
            ctx.config.page_size,
        );
        scan.module = Some(module);
        let mut seen = SeenKeys::default();
        let mut page_no = 0;
        let mut repeated = false;
        let outcome = full_scan(ctx, &scan, |page| {
            page_no += 1;
            for (i, raw) in page.items.iter().enumerate() {
                let (_, v) = parse_row(raw, "worklog_entries", page_no, i)?;
                let Some(item) = v.item_id.as_deref() else {
                    continue;
                };
                if !seen.insert(item) {
                    repeated = true;
                    continue;
                }
                if let Some(ids) = ticket_ids {
                    if !defs::worklog_ticket(&v).is_some_and(|t| ids.contains(&t)) {
                        continue;
                    }
                }
                if !v
                    .bill_date_time
                    .as_deref()
                    .and_then(time::parse)
                    .is_some_and(|t| ctx.in_window(t))
                {
                    continue;
                }
                let Some(tech) = text_of(v.technician.as_ref().and_then(|t| t.get("userId")))
                else {
                    continue;
                };
                let qty = match v.qty.as_ref() {
                    Some(Value::String(s)) => Micros::parse(s),
                    Some(Value::Number(n)) => Micros::parse(&n.to_string()),
                    _ => None,
                }
                .ok_or_else(|| Error::Malformed {
                    context: format!("stream worklog_entries ({module}) page {page_no} row {i}"),
                    detail: format!("qty {:?} is not a decimal", v.qty),
                })?;
                let a = by_tech.entry(tech).or_default();
                a.name = a.name.take().or_else(|| name_of(v.technician.as_ref()));
                a.entries += 1;
                a.hours.0 += qty.0;
                if v.billable.as_ref().and_then(Value::as_bool) == Some(true) {
                    a.billable.0 += qty.0;
                }
            }
            Ok(true)
        })
        .await?;
        whole &= outcome.is_whole() && !repeated;
    }
    for (tech, (name, resolved)) in &facts.resolved_by_tech {
        let a = by_tech.entry(tech.clone()).or_default();
        if a.name.is_none() {
            a.name = name.clone();
        }
        a.resolved += resolved;
    }
    let records = by_tech
        .into_iter()
        .map(|(tech, a)| {
            let mut row = json!({
                "technician_id": tech,
                "technician_name": a.name,
                "worklog_entries": a.entries,
                "worklog_hours": a.hours.to_text(),
                "billable_hours": a.billable.to_text(),
                "billable_share": if a.hours.0 == 0 { Value::Null } else { json!(a.billable.as_f64() / a.hours.as_f64()) },
                "tickets_resolved": a.resolved,
            });
            merge(&mut row, window);
            Record::from_value(tech, &row).map_err(|e| Error::Other(e.message))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((records, whole))
}

/// `to − from` in microseconds (exact for every timestamp the API sends).
fn micros_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
    let d = to - from;
    i128::from(d.num_seconds()) * 1_000_000 + i128::from(d.subsec_nanos() / 1_000)
}

fn merge(row: &mut Value, extra: &Value) {
    if let (Some(r), Some(e)) = (row.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Micros;

    #[test]
    fn sums_decimals_exactly() {
        let mut total = Micros::default();
        for s in ["0.10", "0.20", "1.25", "3"] {
            total.0 += Micros::parse(s).map(|m| m.0).unwrap_or(-1);
        }
        assert_eq!(total.to_text(), "4.55");
        assert_eq!(
            Micros::parse("2").map(Micros::to_text).as_deref(),
            Some("2.00")
        );
        assert!(Micros::parse("1.2345678").is_none());
    }
}
