//! Reading QuickBooks envelopes without re-serializing objects: each object is kept as
//! its raw JSON text (passed through to the destination untouched) plus the few fields
//! the connector needs (Id, LastUpdatedTime, status, TxnDate, CustomerRef).

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Parses every timestamp form QuickBooks uses: RFC 3339 (`-08:00`), `-0800`, fractional
/// seconds, no offset (taken as UTC) and bare dates.
pub fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t);
    }
    let utc = FixedOffset::east_opt(0)?;
    if let Ok(n) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return utc.from_local_datetime(&n).single();
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return utc.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single();
    }
    None
}

/// Formats an instant for a query literal or `changedSince`: RFC 3339 with an offset.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    // Real Ids are strings; library fixtures use numbers. Accept both.
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(de::Error::custom(format!(
                "Id is neither string nor number: {other}"
            )))
        }
    })
}

#[derive(Deserialize)]
struct MetaTimes {
    #[serde(rename = "LastUpdatedTime")]
    last_updated: Option<String>,
}

#[derive(Deserialize)]
struct RefValue {
    #[serde(default, deserialize_with = "string_or_number")]
    value: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "Id", default, deserialize_with = "string_or_number")]
    id: Option<String>,
    #[serde(rename = "MetaData")]
    meta: Option<MetaTimes>,
    status: Option<String>,
    #[serde(rename = "SyncToken", default, deserialize_with = "string_or_number")]
    sync_token: Option<String>,
    #[serde(rename = "TxnDate")]
    txn_date: Option<String>,
    #[serde(rename = "CustomerRef")]
    customer: Option<RefValue>,
}

/// One object of a page.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// `Id`.
    pub id: String,
    /// `MetaData.LastUpdatedTime` as sent.
    pub updated_raw: Option<String>,
    /// The same, parsed.
    pub updated: Option<DateTime<FixedOffset>>,
    /// A CDC `status: "Deleted"` stub.
    pub deleted: bool,
    /// `SyncToken` (absent on deleted stubs).
    pub sync_token: Option<String>,
    /// `TxnDate`, for the date window.
    pub txn_date: Option<String>,
    /// `CustomerRef.value`, for the client filter.
    pub customer: Option<String>,
    /// The object, byte-for-byte as received.
    pub raw: &'a RawValue,
}

fn row(raw: &RawValue, honour_status: bool) -> Result<Row<'_>, String> {
    let head: Head = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let id = head.id.ok_or_else(|| "object without Id".to_string())?;
    let updated_raw = head.meta.and_then(|m| m.last_updated);
    Ok(Row {
        updated: updated_raw.as_deref().and_then(parse_time),
        updated_raw,
        // `status` means something only inside CDC (the .NET SDK flags live objects).
        deleted: honour_status
            && head
                .status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("deleted")),
        sync_token: head.sync_token,
        txn_date: head.txn_date,
        customer: head.customer.and_then(|c| c.value),
        id,
        raw,
    })
}

/// The envelope `time`: company-local RFC 3339 with milliseconds on data responses, epoch
/// milliseconds (a JSON number) on the lower-case authentication envelope.
///
/// A text without an offset (library fixtures write `"2016-01-01T00:00:00"`) names no
/// instant: it is the company's local time in an unknown zone. It is taken as unknown
/// rather than guessed as UTC, because positions are derived from this clock and a guess
/// off by the zone's offset could move one past changes; the client's clock stands in.
pub fn envelope_time(v: &Value) -> Option<DateTime<FixedOffset>> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .ok()
        }
        Value::Number(n) => {
            let ms = n.as_i64()?;
            let utc = FixedOffset::east_opt(0)?;
            DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&utc))
        }
        _ => None,
    }
}

/// Deserializes `{"QueryResponse": {"<entity>": [..], ...}, "time": ..}` in one pass,
/// keeping each object of the entity array as raw text and skipping everything else.
struct PageSeed<'e> {
    entity: &'e str,
}

/// One query page: its objects, not yet looked into, and the server's `time`.
#[derive(Debug)]
pub struct QueryPage<'a> {
    /// The objects of the entity array, byte-for-byte.
    pub objects: Vec<&'a RawValue>,
    /// The envelope `time` (server clock), when present and readable.
    pub time: Option<DateTime<FixedOffset>>,
}

struct ResponseSeed<'e> {
    entity: &'e str,
}

impl<'de, 'e> de::DeserializeSeed<'de> for PageSeed<'e> {
    type Value = (Option<Vec<&'de RawValue>>, Option<DateTime<FixedOffset>>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'e> de::Visitor<'de> for PageSeed<'e> {
    type Value = (Option<Vec<&'de RawValue>>, Option<DateTime<FixedOffset>>);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a query response envelope")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut time = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "QueryResponse" {
                found = Some(map.next_value_seed(ResponseSeed {
                    entity: self.entity,
                })?);
            } else if key == "time" {
                time = envelope_time(&map.next_value::<Value>()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok((found, time))
    }
}

impl<'de, 'e> de::DeserializeSeed<'de> for ResponseSeed<'e> {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'e> de::Visitor<'de> for ResponseSeed<'e> {
    type Value = Vec<&'de RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a QueryResponse object")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.entity {
                items = map.next_value::<Vec<&'de RawValue>>()?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(items)
    }
}

/// The objects of a query page as raw JSON, not yet looked into, with the server time.
pub fn query_page_raw<'a>(body: &'a [u8], entity: &str) -> Result<QueryPage<'a>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let (items, time) = de::DeserializeSeed::deserialize(PageSeed { entity }, &mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let objects = items.ok_or_else(|| "no QueryResponse in body".to_string())?;
    Ok(QueryPage { objects, time })
}

/// Reads the fields the connector needs from one query object.
pub fn query_row(raw: &RawValue) -> Result<Row<'_>, String> {
    row(raw, false)
}

/// The objects of a query page for `entity`; an empty page is `{"QueryResponse":{}}`.
pub fn query_page<'a>(body: &'a [u8], entity: &str) -> Result<Vec<Row<'a>>, String> {
    query_page_raw(body, entity)?
        .objects
        .into_iter()
        .map(|r| row(r, false))
        .collect()
}

/// `totalCount` of a `COUNT(*)` query.
pub fn total_count(body: &[u8]) -> Result<u64, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    v.pointer("/QueryResponse/totalCount")
        .and_then(Value::as_u64)
        .ok_or_else(|| "no QueryResponse.totalCount".to_string())
}

#[derive(Deserialize)]
struct CdcEnvelope<'a> {
    #[serde(rename = "CDCResponse", borrow)]
    cdc: Option<Vec<CdcItem<'a>>>,
    #[serde(default)]
    time: Option<Value>,
}

/// One CDC response: every object with its entity name, and the server time.
#[derive(Debug)]
pub struct CdcPage<'a> {
    /// `(entity, row)` for every object of every block.
    pub rows: Vec<(String, Row<'a>)>,
    /// The envelope `time` (server clock), when present and readable.
    pub time: Option<DateTime<FixedOffset>>,
}

#[derive(Deserialize)]
struct CdcItem<'a> {
    #[serde(rename = "QueryResponse", borrow, default)]
    blocks: Vec<BTreeMap<String, &'a RawValue>>,
}

/// Every object of a CDC response, with its entity name: `(entity, row)`. Blocks keys
/// other than arrays (`startPosition`, `maxResults`, `totalCount`) are skipped.
pub fn cdc_rows(body: &[u8]) -> Result<Vec<(String, Row<'_>)>, String> {
    cdc_page(body).map(|p| p.rows)
}

/// [`cdc_rows`] plus the envelope `time`.
pub fn cdc_page(body: &[u8]) -> Result<CdcPage<'_>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    // A derived struct would also take an array (its fields by position).
    if !text.trim_start().starts_with('{') {
        return Err("not a CDC answer (not a JSON object)".to_string());
    }
    let env: CdcEnvelope<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(items) = env.cdc else {
        return Err("no CDCResponse in body".to_string());
    };
    let mut out = Vec::new();
    for item in items {
        for block in item.blocks {
            for (key, raw) in block {
                if !raw.get().trim_start().starts_with('[') {
                    continue;
                }
                let objects: Vec<&RawValue> =
                    serde_json::from_str(raw.get()).map_err(|e| format!("{key}: {e}"))?;
                for o in objects {
                    out.push((key.clone(), row(o, true)?));
                }
            }
        }
    }
    Ok(CdcPage {
        rows: out,
        time: env.time.as_ref().and_then(envelope_time),
    })
}

/// One data row of a report, as a JSON object keyed by column.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// `{"tx_date": "...", "txn_type": "Invoice", "txn_type_id": "151", ...}`.
    pub data: serde_json::Map<String, Value>,
}

/// Flattens a TransactionList report: columns keyed by their `ColKey` metadata (or
/// `ColType`), `id` attributes as `<key>_id`, sections walked recursively (their header
/// names kept in `section`). An empty report (`NoReportData`, `Rows: {}`, `Row: null`)
/// gives no rows. Collects every row; see [`report_each`] for the streaming form.
pub fn report_rows(body: &[u8]) -> Result<Vec<ReportRow>, String> {
    let mut out = Vec::new();
    report_each(body, |row| {
        out.push(row);
        Ok(())
    })?;
    Ok(out)
}

/// The top of a report: only the column definitions are read into values; the rows stay
/// raw text, walked one row at a time.
#[derive(Deserialize)]
struct ReportTop<'a> {
    #[serde(rename = "Header", default)]
    header: Option<de::IgnoredAny>,
    #[serde(rename = "Columns", default)]
    columns: Option<Value>,
    #[serde(rename = "Rows", borrow, default)]
    rows: Option<&'a RawValue>,
}

/// `Rows`: a list of rows, each still raw.
#[derive(Deserialize)]
struct RowList<'a> {
    #[serde(rename = "Row", borrow, default)]
    row: Option<Vec<&'a RawValue>>,
}

/// One row: data (`ColData`) or a section (`Header` + nested `Rows`).
#[derive(Deserialize)]
struct ReportItem<'a> {
    #[serde(rename = "ColData", default)]
    col_data: Option<Vec<Cell>>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(rename = "Header", default)]
    header: Option<SectionHeader>,
    #[serde(rename = "Rows", borrow, default)]
    rows: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SectionHeader {
    #[serde(rename = "ColData", default)]
    col_data: Vec<Cell>,
}

#[derive(Deserialize)]
struct Cell {
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
}

/// Hands every data row of a report to `on_row`, in order, holding only the body, one
/// borrowed slice per row of the current section and the row being built: a report has
/// no paging, so a large one must not be turned into a tree of values at once. An error
/// from `on_row` stops the walk and is returned.
pub fn report_each(
    body: &[u8],
    mut on_row: impl FnMut(ReportRow) -> Result<(), String>,
) -> Result<(), String> {
    // Validated whole first: members skipped as `IgnoredAny` are not checked otherwise.
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    // A derived struct would also take an array (its fields by position).
    if !text.trim_start().starts_with('{') {
        return Err("not a report (not a JSON object)".to_string());
    }
    let top: ReportTop<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if top.header.is_none() && top.rows.is_none() {
        return Err("not a report (no Header or Rows)".to_string());
    }
    let columns: Vec<String> = top
        .columns
        .as_ref()
        .and_then(|c| c.get("Column"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .enumerate()
                .map(|(i, c)| {
                    let key = c.get("MetaData").and_then(Value::as_array).and_then(|m| {
                        m.iter()
                            .find(|e| e.get("Name").and_then(Value::as_str) == Some("ColKey"))
                            .and_then(|e| e.get("Value"))
                            .and_then(Value::as_str)
                    });
                    key.or_else(|| c.get("ColType").and_then(Value::as_str))
                        .or_else(|| c.get("ColTitle").and_then(Value::as_str))
                        .map_or_else(|| format!("col{i}"), str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    walk(top.rows, &columns, &mut Vec::new(), &mut on_row)
}

fn walk(
    rows: Option<&RawValue>,
    columns: &[String],
    sections: &mut Vec<String>,
    on_row: &mut dyn FnMut(ReportRow) -> Result<(), String>,
) -> Result<(), String> {
    let Some(rows) = rows else { return Ok(()) };
    let list: Option<RowList<'_>> = serde_json::from_str(rows.get()).map_err(|e| e.to_string())?;
    for raw in list.and_then(|l| l.row).unwrap_or_default() {
        let item: ReportItem<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        if let Some(cells) = item.col_data {
            if item.kind.as_deref().is_some_and(|t| t != "Data") {
                continue;
            }
            let mut data = serde_json::Map::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let key = columns.get(i).cloned().unwrap_or_else(|| format!("col{i}"));
                if let Some(Value::String(id)) = cell.id {
                    data.insert(format!("{key}_id"), Value::String(id));
                }
                data.insert(key, cell.value.unwrap_or(Value::Null));
            }
            if !sections.is_empty() {
                data.insert("section".into(), Value::String(sections.join(":")));
            }
            on_row(ReportRow { data })?;
        } else {
            let header = item
                .header
                .and_then(|h| h.col_data.into_iter().next())
                .and_then(|c| match c.value {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                })
                .unwrap_or_default();
            sections.push(header);
            walk(item.rows, columns, sections, on_row)?;
            sections.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_page_keeps_raw_objects() {
        let body = br#"{"QueryResponse":{"TimeActivity":[{"Id":"5","MetaData":{"LastUpdatedTime":"2013-08-06T02:23:26-07:00"},"Hours":10}],"startPosition":1,"maxResults":1},"time":"2013-08-06T03:04:31.099-07:00"}"#;
        let rows = query_page(body, "TimeActivity").expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "5");
        assert!(rows[0].raw.get().contains("\"Hours\":10"));
        assert!(query_page(br#"{"QueryResponse":{},"time":"x"}"#, "Invoice")
            .expect("empty")
            .is_empty());
        assert!(query_page(br#"{"QueryResponse":{"Invoice":[{"Id":"1""#, "Invoice").is_err());
    }

    #[test]
    fn cdc_fixture_with_numeric_ids_and_stubs() {
        let body = br#"{"CDCResponse":[{"QueryResponse":[{"Customer":[{"Id":1,"DisplayName":"TestCustomer"}],"startPosition":1,"maxResults":1},{"Payment":[{"domain":"QBO","status":"Deleted","Id":"2359","MetaData":{"LastUpdatedTime":"2021-12-15T09:14:16-08:00"}}]}]}],"time":"2016-01-01T00:00:00"}"#;
        let rows = cdc_rows(body).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.id, "1");
        assert!(rows[1].1.deleted);
        assert!(
            cdc_rows(br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"x"}"#)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn report_sections_and_empty_reports() {
        let body = br#"{"Header":{"ReportName":"TransactionList","Option":[{"Name":"NoReportData","Value":"false"}]},
            "Columns":{"Column":[{"ColTitle":"Date","ColType":"tx_date"},{"ColTitle":"Transaction Type","ColType":"txn_type"},{"ColTitle":"Amount","ColType":"Money","MetaData":[{"Name":"ColKey","Value":"subt_nat_home_amount"}]}]},
            "Rows":{"Row":[{"Header":{"ColData":[{"id":"1","value":"Amy's Bird Sanctuary"}]},
              "Rows":{"Row":[{"ColData":[{"value":"2016-06-14"},{"id":"151","value":"Invoice"},{"value":"47.60"}],"type":"Data"}]},
              "Summary":{"ColData":[{"value":"Total for Amy's Bird Sanctuary"},{"value":"505.95"}]},"type":"Section"}]}}"#;
        let rows = report_rows(body).expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].data["txn_type_id"], "151");
        assert_eq!(rows[0].data["subt_nat_home_amount"], "47.60");
        assert_eq!(rows[0].data["section"], "Amy's Bird Sanctuary");
        for empty in [
            r#"{"Header":{},"Rows":{}}"#,
            r#"{"Header":{},"Rows":{"Row":null}}"#,
        ] {
            assert!(report_rows(empty.as_bytes()).expect("empty").is_empty());
        }
        // Found by fuzzing: bytes that are not UTF-8 inside a member the walker skips.
        let mut bad = br#"{"Header":{"Option":[{"Name":"NoReportData","V"#.to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(br#"alue":"true"}]},"Rows":{}}"#);
        assert!(report_rows(&bad).is_err());
        // Found by fuzzing: an array taken as the report's fields by position.
        assert!(report_rows(b"[1e2, null, null]").is_err());
    }

    #[test]
    fn time_forms_name_one_instant_and_order_it() {
        // The same instant in the forms QuickBooks writes (MetaData, filters, envelope).
        let want = DateTime::parse_from_rfc3339("2023-02-18T21:16:17Z").expect("utc");
        for form in [
            "2023-02-18T13:16:17-08:00",
            "2023-02-18T13:16:17-0800",
            " 2023-02-18T13:16:17.000-08:00 ",
            "2023-02-18T21:16:17",
        ] {
            assert_eq!(parse_time(form), Some(want), "{form}");
        }
        assert_eq!(
            parse_time("2023-02-18"),
            DateTime::parse_from_rfc3339("2023-02-18T00:00:00Z").ok(),
            "a bare date is midnight UTC"
        );
        // Fractional seconds order within the second, not beside it.
        let a = parse_time("2013-08-06T03:04:31.099-07:00").expect("millis");
        let b = parse_time("2013-08-06T03:04:31-07:00").expect("whole");
        assert!(b < a && a - b == chrono::Duration::milliseconds(99));
        for bad in ["", "yesterday", "2023-13-01", "1533811101733"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        // Query literals round-trip: what format_time writes, parse_time reads back.
        let t = Utc::now();
        let round = parse_time(&format_time(&t)).expect("round trip");
        assert_eq!(round.timestamp(), t.timestamp());
        // The envelope time: a string on data responses, epoch ms on the 401 envelope.
        assert_eq!(
            envelope_time(&serde_json::json!(1533811101733i64)).map(|t| t.timestamp_millis()),
            Some(1533811101733)
        );
        assert_eq!(
            envelope_time(&serde_json::json!("2013-08-06T03:04:31.099-07:00")),
            Some(a)
        );
    }

    #[test]
    fn pages_carry_the_server_time() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"1","MetaData":{"LastUpdatedTime":"2024-01-01T00:00:00-08:00"}}],"startPosition":1,"maxResults":1},"time":"2024-05-01T10:00:00.250-07:00"}"#;
        let page = query_page_raw(body, "Invoice").expect("page");
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.time, parse_time("2024-05-01T17:00:00.250Z"));
        let cdc = cdc_page(
            br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2024-05-01T10:00:00-07:00"}"#,
        )
        .expect("cdc");
        assert!(cdc.rows.is_empty());
        assert_eq!(cdc.time, parse_time("2024-05-01T17:00:00Z"));
        // The library fixture's zone-less time names no instant: unknown, not UTC.
        let fixture =
            cdc_page(br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2016-01-01T00:00:00"}"#)
                .expect("cdc");
        assert_eq!(fixture.time, None);
    }
}
