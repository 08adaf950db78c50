//! Cross-source referential gaps, found in the warehouse (so an incremental run still
//! checks everything): the client profiles of the internal database against SuperOps and
//! QuickBooks, and back.
//!
//! | check | references | keys |
//! |---|---|---|
//! | profile → SuperOps client | `client_profiles.superops_account_id` | `clients.accountId` |
//! | profile → QuickBooks customer | `client_profiles.quickbooks_customer_id` | `customers.Id` |
//! | SuperOps ticket → profile | `tickets.client.accountId` | `client_profiles.superops_account_id` |
//! | QuickBooks invoice → profile | `invoices.CustomerRef.value` | `client_profiles.quickbooks_customer_id` |
//!
//! Sources are recognised by plugin (`internal-db`, `superops`, `quickbooks`); several
//! sources of one plugin pool their keys. A check runs only when both its tables exist;
//! rows marked deleted count on neither side, nor do rows without a reference. Ids are
//! compared as text (SuperOps sends a ticket's `accountId` as a bare number).

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::ReferentialGap;
use crate::destination::{table_prefix, Destination, DestinationError};

/// Unmatched rows listed per check.
const GAP_SAMPLES: usize = 5;

/// A stream of some sources: the sources' names and the stream.
struct Side<'a> {
    sources: Vec<&'a str>,
    stream: &'static str,
}

impl Side<'_> {
    fn label(&self) -> String {
        format!("{}.{}", self.sources.join("+"), self.stream)
    }
}

/// The id at `path` (object keys) as text; empty strings are no reference.
fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    let v = path.iter().try_fold(value, |v, k| v.get(k))?;
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `(pk, reference)` of every live row of the side with a reference at `path`.
fn references(
    dest: &dyn Destination,
    side: &Side<'_>,
    path: &[&str],
) -> Result<Vec<(String, String)>, DestinationError> {
    let mut out = Vec::new();
    for source in &side.sources {
        dest.for_each_row(source, side.stream, &mut |row| {
            if row.deleted {
                return;
            }
            let Ok(value) = serde_json::from_str::<Value>(row.data) else {
                return;
            };
            if let Some(r) = text_at(&value, path) {
                out.push((row.pk.to_string(), r));
            }
        })?;
    }
    Ok(out)
}

/// One check: rows of `from` whose reference at `from_path` is none of the values at
/// `to_path` in `to`.
fn check(
    dest: &dyn Destination,
    what: &str,
    from: &Side<'_>,
    from_path: &[&str],
    to: &Side<'_>,
    to_path: &[&str],
) -> Result<ReferentialGap, DestinationError> {
    let keys: HashSet<String> = references(dest, to, to_path)?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    let refs = references(dest, from, from_path)?;
    let mut gap = ReferentialGap {
        check: what.to_string(),
        from: from.label(),
        field: from_path.join("."),
        to: format!("{} ({})", to.label(), to_path.join(".")),
        checked: refs.len() as u64,
        ..ReferentialGap::default()
    };
    let mut unmatched: Vec<&(String, String)> =
        refs.iter().filter(|(_, r)| !keys.contains(r)).collect();
    gap.gaps = unmatched.len() as u64;
    unmatched.sort();
    gap.samples = unmatched
        .iter()
        .take(GAP_SAMPLES)
        .map(|(pk, r)| format!("{pk} → {r}"))
        .collect();
    Ok(gap)
}

/// Every check whose tables exist. `sources`: (source name, plugin name) of every source
/// the manifest declares; `present`: `(table prefix, stream)` of the destination.
pub fn gaps(
    dest: &dyn Destination,
    sources: &[(String, String)],
    present: &BTreeSet<(String, String)>,
) -> Result<Vec<ReferentialGap>, DestinationError> {
    let side = |plugin: &str, stream: &'static str| -> Option<Side<'_>> {
        let names: Vec<&str> = sources
            .iter()
            .filter(|(name, p)| {
                p == plugin && present.contains(&(table_prefix(name), stream.to_string()))
            })
            .map(|(name, _)| name.as_str())
            .collect();
        (!names.is_empty()).then_some(Side {
            sources: names,
            stream,
        })
    };
    let Some(profiles) = side("internal-db", "client_profiles") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if let Some(clients) = side("superops", "clients") {
        out.push(check(
            dest,
            "client profiles whose SuperOps id matches no SuperOps client",
            &profiles,
            &["superops_account_id"],
            &clients,
            &["accountId"],
        )?);
    }
    if let Some(customers) = side("quickbooks", "customers") {
        out.push(check(
            dest,
            "client profiles whose QuickBooks id matches no QuickBooks customer",
            &profiles,
            &["quickbooks_customer_id"],
            &customers,
            &["Id"],
        )?);
    }
    if let Some(tickets) = side("superops", "tickets") {
        out.push(check(
            dest,
            "SuperOps tickets whose client matches no client profile",
            &tickets,
            &["client", "accountId"],
            &profiles,
            &["superops_account_id"],
        )?);
    }
    if let Some(invoices) = side("quickbooks", "invoices") {
        out.push(check(
            dest,
            "QuickBooks invoices whose customer matches no client profile",
            &invoices,
            &["CustomerRef", "value"],
            &profiles,
            &["quickbooks_customer_id"],
        )?);
    }
    Ok(out)
}
