//! The TransactionList report: one row per transaction dated in the range, optionally in
//! sections per customer, every value a string.

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::data::{Store, ENTITIES};

/// Default columns, in order: (ColKey, title, ColType).
const COLUMNS: &[(&str, &str, &str)] = &[
    ("tx_date", "Date", "Date"),
    ("txn_type", "Transaction Type", "String"),
    ("doc_num", "Num", "String"),
    ("is_no_post", "Posting", "Boolean"),
    ("name", "Name", "String"),
    ("dept_name", "Department", "String"),
    ("memo", "Memo/Description", "String"),
    ("account_name", "Account", "String"),
    ("other_account", "Split", "String"),
    ("subt_nat_home_amount", "Amount", "Money"),
];

fn cell(value: impl Into<String>) -> Value {
    json!({"value": value.into()})
}

fn ref_cell(r: Option<&Value>) -> Value {
    match r {
        Some(r) => json!({"id": r.get("value").and_then(Value::as_str).unwrap_or(""),
            "value": r.get("name").and_then(Value::as_str).unwrap_or("")}),
        None => cell(""),
    }
}

fn row(entity: &str, label: &str, id: u64, v: &Value) -> Value {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let name = v
        .get("CustomerRef")
        .or_else(|| v.get("VendorRef"))
        .or_else(|| v.get("EntityRef"));
    let account = v
        .get("DepositToAccountRef")
        .or_else(|| v.get("APAccountRef"))
        .or_else(|| v.get("AccountRef"))
        .cloned()
        .unwrap_or_else(|| match entity {
            "Invoice" | "CreditMemo" => json!({"value": "84", "name": "Accounts Receivable (A/R)"}),
            _ => json!({"value": "35", "name": "Checking"}),
        });
    let lines = v.get("Line").and_then(Value::as_array).map_or(0, Vec::len);
    let memo = v
        .get("PrivateNote")
        .and_then(Value::as_str)
        .or_else(|| v.pointer("/CustomerMemo/value").and_then(Value::as_str))
        .unwrap_or("");
    let amount = v.get("TotalAmt").and_then(Value::as_f64).unwrap_or(0.0);
    let amount = if matches!(entity, "Purchase" | "Bill" | "CreditMemo") {
        -amount
    } else {
        amount
    };
    json!({"ColData": [
        cell(s("TxnDate")),
        json!({"id": id.to_string(), "value": label}),
        cell(s("DocNumber")),
        cell("No"),
        ref_cell(name),
        cell(""),
        cell(memo),
        ref_cell(Some(&account)),
        cell(if lines > 2 { "-Split-".to_string() } else { "Services".to_string() }),
        cell(format!("{amount:.2}")),
    ], "type": "Data"})
}

/// Builds the report for `[start, end]` (inclusive dates), grouped by customer when
/// `group_by_customer`.
pub fn transaction_list(
    store: &Store,
    start: NaiveDate,
    end: NaiveDate,
    group_by_customer: bool,
) -> Value {
    let mut rows: Vec<(String, u64, Value, String, String)> = Vec::new();
    for kind in ENTITIES {
        let Some(label) = kind.report_type else {
            continue;
        };
        for o in store.table(kind.name) {
            let Some(d) = o.txn_date else {
                continue;
            };
            if d < start || d > end {
                continue;
            }
            let v = o.value();
            let date = d.format("%Y-%m-%d").to_string();
            let who = v
                .get("CustomerRef")
                .or_else(|| v.get("VendorRef"))
                .or_else(|| v.get("EntityRef"));
            let who_id = who
                .and_then(|w| w.get("value"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let who_name = who
                .and_then(|w| w.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("Not Specified")
                .to_string();
            rows.push((
                date,
                o.id,
                row(kind.name, label, o.id, &v),
                who_id,
                who_name,
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let empty = rows.is_empty();
    let body_rows: Value = if empty {
        json!({})
    } else if group_by_customer {
        let mut groups: Vec<(String, String, Vec<Value>, f64)> = Vec::new();
        for (_, _, r, id, name) in rows {
            let amount = r
                .pointer("/ColData/9/value")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            match groups.iter_mut().find(|g| g.0 == id) {
                Some(g) => {
                    g.2.push(r);
                    g.3 += amount;
                }
                None => groups.push((id, name, vec![r], amount)),
            }
        }
        let sections: Vec<Value> = groups
            .into_iter()
            .map(|(id, name, rows, total)| {
                json!({"Header": {"ColData": [{"id": id, "value": name.clone()}, {"value": ""}]},
                    "Rows": {"Row": rows},
                    "Summary": {"ColData": [{"value": format!("Total for {name}")}, {"value": format!("{total:.2}")}]},
                    "type": "Section"})
            })
            .collect();
        json!({"Row": sections})
    } else {
        json!({"Row": rows.into_iter().map(|r| r.2).collect::<Vec<_>>()})
    };
    let columns: Vec<Value> = COLUMNS
        .iter()
        .map(|(key, title, ty)| json!({"ColTitle": title, "ColType": ty, "MetaData": [{"Name": "ColKey", "Value": key}]}))
        .collect();
    json!({"Header": {"Time": store.clock.envelope_time(), "ReportName": "TransactionList", "DateMacro": "custom",
            "StartPeriod": start.format("%Y-%m-%d").to_string(), "EndPeriod": end.format("%Y-%m-%d").to_string(),
            "Currency": "USD", "Option": [{"Name": "NoReportData", "Value": if empty { "true" } else { "false" }}]},
        "Columns": {"Column": columns},
        "Rows": body_rows})
}
