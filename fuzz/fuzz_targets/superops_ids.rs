//! The SuperOps ID-quoting pass and response parser on arbitrary text. Invariant: on
//! valid JSON, quoting changes nothing but turning integer numbers into strings of the
//! same digits (at ID keys, or of 16 digits and more); every other value, key and the
//! structure parse the same. The body parser either succeeds or returns an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tributary_superops::json::{normalize_ids, parse_body, parse_list, Body};

fn same_but_quoted(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::Number(n), Value::String(s)) => {
            // Quoted: the same integer, written out.
            (n.is_i64() || n.is_u64()) && s == &n.to_string()
                || n.is_f64() && s.parse::<f64>().ok() == n.as_f64()
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_but_quoted(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same_but_quoted(x, y)))
        }
        (x, y) => x == y,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(before) = serde_json::from_str::<Value>(text) {
        let quoted = normalize_ids(text);
        let after: Value =
            serde_json::from_str(&quoted).expect("quoting keeps valid JSON valid");
        assert!(same_but_quoted(&before, &after), "{text} became {quoted}");
    }
    if let Ok(Body::Data(result)) = parse_body(text, "getTicketList", "fuzz") {
        let _ = parse_list(result, "tickets", "fuzz");
    }
});
