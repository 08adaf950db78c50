//! The TransactionList report walker on arbitrary bytes. Invariant: it either fails or
//! accepted a JSON object and yields exactly the data rows a plain walk of the parsed
//! value finds (`ColData` rows
//! whose `type` is absent or `Data`, sections walked recursively), in the same order,
//! each with one key per cell.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tributary_quickbooks::parse::report_rows;

/// The number of cells of every data row, in order, by walking the whole value.
fn data_rows(rows: Option<&Value>, out: &mut Vec<usize>) -> bool {
    let Some(rows) = rows else { return true };
    if rows.is_null() {
        return true;
    }
    let Some(obj) = rows.as_object() else { return false };
    let list = match obj.get("Row") {
        None | Some(Value::Null) => return true,
        Some(Value::Array(a)) => a,
        Some(_) => return false,
    };
    for r in list {
        let Some(r) = r.as_object() else { return false };
        match r.get("ColData") {
            Some(Value::Array(cells)) => {
                match r.get("type") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(t)) if t == "Data" => {}
                    Some(Value::String(_)) => continue,
                    Some(_) => return false,
                }
                out.push(cells.len());
            }
            Some(Value::Null) | None => {
                if !data_rows(r.get("Rows"), out) {
                    return false;
                }
            }
            Some(_) => return false,
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = report_rows(data) else { return };
    // JSON by the grammar (serde_json's value parser refuses some valid texts, such as
    // numbers beyond f64 or lone surrogate escapes; fuzzing found both).
    assert!(
        serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok(),
        "the walker accepted what is not JSON"
    );
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    assert!(v.is_object(), "a report is an object");
    let mut cells = Vec::new();
    if !data_rows(v.get("Rows"), &mut cells) {
        return; // shapes the walker may read more leniently (e.g. odd cell types)
    }
    assert_eq!(rows.len(), cells.len(), "every data row, once");
    for (row, n) in rows.iter().zip(cells) {
        let keys = row.data.keys().filter(|k| !k.ends_with("_id") && *k != "section").count();
        assert!(keys <= n, "no more keys than cells");
    }
});
