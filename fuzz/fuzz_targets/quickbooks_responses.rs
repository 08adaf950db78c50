//! The QuickBooks response parsers on arbitrary bytes: a query page, a CDC answer and a
//! fault envelope (JSON or XML). Invariant: each either succeeds or returns an error,
//! never panics; every object a page or CDC answer yields is one whole JSON value (the
//! exact slice of it, nothing cut) whose `Id` is the row's id.
//!
//! "Whole JSON" is the grammar's: a lone UTF-16 surrogate escape (`"\uDA23"`) is valid
//! JSON text that serde_json's value parser refuses (fuzzing found it); objects pass
//! through as text, so it is checked by syntax, and the `Id` only where the text parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tributary_quickbooks::error::parse_fault;
use tributary_quickbooks::parse::{cdc_page, query_page_raw, query_row};

/// One JSON value, and nothing else, by the grammar.
fn whole(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn id_of(raw: &str) -> Option<String> {
    match serde_json::from_str::<Value>(raw).ok()?.get("Id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = query_page_raw(data, "Invoice") {
        for raw in &page.objects {
            let text = raw.get();
            assert!(whole(text), "a page object is whole JSON");
            if let (Ok(row), Ok(_)) = (query_row(raw), serde_json::from_str::<Value>(text)) {
                assert_eq!(id_of(text).as_deref(), Some(row.id.as_str()));
            }
        }
    }
    if let Ok(page) = cdc_page(data) {
        for (entity, row) in &page.rows {
            assert!(!entity.is_empty());
            let text = row.raw.get();
            assert!(whole(text), "a CDC object is whole JSON");
            if serde_json::from_str::<Value>(text).is_ok() {
                assert_eq!(id_of(text).as_deref(), Some(row.id.as_str()));
            }
        }
    }
    let _ = parse_fault(data);
});
