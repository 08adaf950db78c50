//! Exact handling of the API's JSON: pages are split into raw row texts (never through
//! `f64`), and IDs that arrive as bare numbers are turned into strings by a single pass over
//! the text.
//!
//! Why a text pass: serde_json's `arbitrary_precision` would keep big numbers, but it is a
//! workspace-wide feature switch that changes number handling for every crate. Instead each
//! row stays a `RawValue` (a slice of the response), and [`normalize_ids`] rewrites only
//! number tokens that are IDs: values of keys named `id` or ending in `Id`/`ID`, plus any
//! integer of 16 or more digits (beyond what a double holds exactly). Everything else,
//! including money strings, is copied byte for byte.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// One page of a list query.
#[derive(Debug)]
pub struct Page {
    /// Rows as raw JSON text, in response order.
    pub items: Vec<Box<RawValue>>,
    /// `listInfo.hasMore == true` (`null` and `false` both end the list).
    pub has_more: bool,
    /// `listInfo.totalCount` (an Int, or a string of digits).
    pub total_count: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    errors: Option<Vec<GqlError>>,
}

/// One entry of a GraphQL `errors` array.
#[derive(Debug, Deserialize)]
pub struct GqlError {
    /// Free text.
    #[serde(default)]
    pub message: Option<String>,
    /// `clientError` codes live here.
    #[serde(default)]
    pub extensions: Option<GqlExtensions>,
}

/// `errors[].extensions`.
#[derive(Debug, Deserialize)]
pub struct GqlExtensions {
    /// SuperOps application error codes.
    #[serde(default, rename = "clientError")]
    pub client_error: Option<Vec<ClientError>>,
    /// graphql-java's classification (`ValidationError`, ...).
    #[serde(default)]
    pub classification: Option<Value>,
}

/// `errors[].extensions.clientError[]`.
#[derive(Debug, Deserialize)]
pub struct ClientError {
    /// `rate_limit_exceeded`, `forbidden`, ...
    #[serde(default)]
    pub code: Option<String>,
}

impl GqlError {
    /// The `clientError` codes of this entry.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.extensions
            .iter()
            .flat_map(|e| e.client_error.iter().flatten())
            .filter_map(|c| c.code.as_deref())
    }
}

#[derive(Deserialize)]
struct ListInfo {
    #[serde(default, rename = "hasMore")]
    has_more: Option<bool>,
    #[serde(default, rename = "totalCount")]
    total_count: Option<Value>,
}

/// The parsed body: either errors or the root field's raw result.
pub enum Body<'a> {
    /// `errors` was non-empty; `partial` says whether `data` carried anything.
    Errors {
        /// The errors.
        errors: Vec<GqlError>,
        /// Whether data was non-empty (partial data).
        partial: bool,
    },
    /// The root field's value.
    Data(Option<&'a RawValue>),
}

/// Splits a response body into errors or the value of root field `root`.
pub fn parse_body<'a>(body: &'a str, root: &str, context: &str) -> Result<Body<'a>> {
    // A derived struct would also take an array (its fields by position).
    if !body.trim_start().starts_with('{') {
        return Err(Error::Malformed {
            context: context.to_string(),
            detail: "not a GraphQL response (not a JSON object)".to_string(),
        });
    }
    let env: Envelope<'a> = serde_json::from_str(body).map_err(|e| Error::Malformed {
        context: context.to_string(),
        detail: format!("not a GraphQL response ({e})"),
    })?;
    let data: Option<HashMap<Cow<'a, str>, Option<&'a RawValue>>> =
        match env.data {
            Some(raw) if raw.get() != "null" => Some(serde_json::from_str(raw.get()).map_err(
                |e| Error::Malformed {
                    context: context.to_string(),
                    detail: format!("data is not an object ({e})"),
                },
            )?),
            _ => None,
        };
    if let Some(errors) = env.errors.filter(|e| !e.is_empty()) {
        let partial = data
            .as_ref()
            .is_some_and(|d| d.values().any(|v| v.is_some_and(|v| v.get() != "null")));
        return Ok(Body::Errors { errors, partial });
    }
    let data = data.ok_or_else(|| Error::Malformed {
        context: context.to_string(),
        detail: "neither data nor errors".to_string(),
    })?;
    Ok(Body::Data(data.get(root).copied().flatten()))
}

/// Reads the list and `listInfo` of a list query's result.
pub fn parse_list(result: Option<&RawValue>, list_key: &str, context: &str) -> Result<Page> {
    let malformed = |detail: String| Error::Malformed {
        context: context.to_string(),
        detail,
    };
    let Some(result) = result.filter(|r| r.get() != "null") else {
        return Err(malformed("the query returned null".to_string()));
    };
    let fields: HashMap<Cow<'_, str>, Option<Box<RawValue>>> =
        serde_json::from_str(result.get())
            .map_err(|e| malformed(format!("result is not an object ({e})")))?;
    let items = match fields.get(list_key) {
        Some(Some(raw)) => serde_json::from_str::<Option<Vec<Box<RawValue>>>>(raw.get())
            .map_err(|e| malformed(format!("{list_key} is not a list ({e})")))?
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let info: Option<ListInfo> = match fields.get("listInfo") {
        Some(Some(raw)) => {
            serde_json::from_str(raw.get()).map_err(|e| malformed(format!("listInfo ({e})")))?
        }
        _ => None,
    };
    let (has_more, total_count) = match info {
        Some(i) => (
            i.has_more == Some(true),
            match i.total_count {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            },
        ),
        None => (false, None),
    };
    Ok(Page {
        items,
        has_more,
        total_count,
    })
}

fn is_id_key(key: &str) -> bool {
    key == "id" || key.ends_with("Id") || key.ends_with("ID") || key.ends_with("_id")
}

/// Rewrites number tokens that are IDs (see the module doc) as JSON strings; borrows when
/// there is nothing to change. The input must be valid JSON (it came from a parser).
pub fn normalize_ids(src: &str) -> Cow<'_, str> {
    let b = src.as_bytes();
    // Per open container: is it an object, and does it expect a key next?
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut key_is_id = false;
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(top) = stack.last() {
                    if top.0 && top.1 {
                        key_is_id = is_id_key(&src[start..i.min(b.len())]);
                    }
                }
                i += 1;
            }
            b'{' => {
                stack.push((true, true));
                i += 1;
            }
            b'[' => {
                stack.push((false, false));
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b':' => {
                if let Some(top) = stack.last_mut() {
                    top.1 = false;
                }
                i += 1;
            }
            b',' => {
                if let Some(top) = stack.last_mut() {
                    top.1 = top.0;
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let tok = &src[start..i];
                let integer = !tok.contains(['.', 'e', 'E']);
                let digits = tok.trim_start_matches('-').len();
                let id_value = stack.last().is_some_and(|t| t.0 && !t.1) && key_is_id;
                if integer && (id_value || digits >= 16) {
                    let o = out.get_or_insert_with(|| String::with_capacity(src.len() + 16));
                    o.push_str(&src[copied..start]);
                    o.push('"');
                    o.push_str(tok);
                    o.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(src),
        Some(mut o) => {
            o.push_str(&src[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The fields of a row the connector itself reads (keys, cursor, filters, metrics).
/// Parsed from the normalised text, so every ID here is a string.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RowView {
    pub ticket_id: Option<String>,
    pub account_id: Option<String>,
    pub id: Option<String>,
    pub contract_id: Option<String>,
    pub user_id: Option<String>,
    pub item_id: Option<String>,
    pub asset_id: Option<String>,
    pub invoice_id: Option<String>,
    pub updated_time: Option<String>,
    pub created_time: Option<String>,
    pub bill_date_time: Option<String>,
    pub invoice_date: Option<String>,
    pub start_date: Option<String>,
    pub resolution_time: Option<String>,
    pub client: Option<Value>,
    pub asset: Option<Value>,
    pub technician: Option<Value>,
    pub work_item: Option<Value>,
    pub contract: Option<Value>,
    pub first_response_violated: Option<Value>,
    pub resolution_violated: Option<Value>,
    pub qty: Option<Value>,
    pub billable: Option<Value>,
}

/// The text of a scalar inside a JSON association (`"123"` or `123`).
pub fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_id_numbers_and_big_integers_only() {
        let src = r#"{"client":{"accountId":7928838372746166998,"name":"A"},"n":5,"qty":"1.50","big":[12345678901234567],"x":{"id":4},"f":1.5e3}"#;
        assert_eq!(
            normalize_ids(src),
            r#"{"client":{"accountId":"7928838372746166998","name":"A"},"n":5,"qty":"1.50","big":["12345678901234567"],"x":{"id":"4"},"f":1.5e3}"#
        );
    }

    #[test]
    fn leaves_strings_alone() {
        let src = r#"{"ticketId":"7928838372746166987","s":"a \"quoted\" 123456789012345678"}"#;
        assert!(matches!(normalize_ids(src), Cow::Borrowed(_)));
    }

    #[test]
    fn reads_has_more_null_and_string_total() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"listInfo":{"totalCount":"98","hasMore":null},"tickets":[{"a":1}]}"#,
        )
        .expect("json");
        let page = parse_list(Some(&raw), "tickets", "t").expect("page");
        assert!(!page.has_more);
        assert_eq!(page.total_count, Some(98));
        assert_eq!(page.items.len(), 1);
    }
}
