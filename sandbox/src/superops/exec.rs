//! Executes a GraphQL request against a tenant: validation the way graphql-java reports
//! it, `ListInfoInput` semantics (conditions, sort, paging) and rendering in selection
//! order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, Duration, NaiveDateTime};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::data::{parse_time, Tenant};
use super::graphql::{self, Field};
use super::schema::{self, Collection, InputShape, Kind, ListQuery};

/// Largest page the API returns; larger requests are clamped (the reference leaves clamp
/// versus reject open; clamping is the lenient reading).
pub const MAX_PAGE_SIZE: usize = 100;
const DEFAULT_PAGE_SIZE: usize = 20;

/// The body of a GraphQL POST.
#[derive(Debug, Deserialize)]
pub struct GraphQlRequest {
    /// The document.
    pub query: String,
    /// Variables, if any.
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
    /// Ignored (one operation per document).
    #[serde(default, rename = "operationName")]
    pub _operation_name: Option<String>,
}

/// Rendering switches that reproduce documented quirks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    /// Send `totalCount` as a string (`"98"`), as one documentation example does.
    pub total_count_as_string: bool,
    /// Refuse `createdTime after` (documented, but not confirmed live; peers report date
    /// operators failing) with a `type_validation_failed` client error.
    pub refuse_created_after: bool,
}

/// Whether `cond` (a leaf or a group) uses `createdTime after` anywhere.
fn uses_created_after(cond: &Value) -> bool {
    if let Some(operands) = cond.get("operands").and_then(Value::as_array) {
        return operands.iter().any(uses_created_after);
    }
    cond.get("attribute").and_then(Value::as_str) == Some("createdTime")
        && cond.get("operator").and_then(Value::as_str) == Some("after")
}

/// Results of filtered and sorted scans, keyed by query shape and tenant generation, so
/// paging through a large list does not re-sort it for every page.
#[derive(Debug, Default)]
pub struct ScanCache {
    entries: HashMap<String, (u64, Arc<Vec<u32>>)>,
}

/// The operation names a request document calls (for statistics and fault targeting).
pub fn root_fields(query: &str) -> Vec<String> {
    graphql::parse(query)
        .map(|op| op.selection.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default()
}

fn validation_error(kind: &str, path: &[&str], message: &str, loc: (usize, usize)) -> Value {
    json!({
        "message": format!("Validation error ({kind}@[{}]) : {message}", path.join("/")),
        "locations": [{"line": loc.0, "column": loc.1}],
        "extensions": {"classification": "ValidationError"},
    })
}

/// A `clientError` response body, the shape SuperOps uses for application errors.
pub fn client_error_body(code: &str, path: Option<&str>, message: &str, param: Value) -> String {
    json!({
        "errors": [{
            "message": message,
            "path": path.map(|p| vec![p]),
            "extensions": {"clientError": [{"code": code, "param": param}]},
        }],
        "data": {},
    })
    .to_string()
}

/// The body graphql-java answers when `query` sub-selects a field that the schema types
/// as a JSON scalar: reported for the first sub-selected field inside the rows (or the
/// row list itself when the rows select only leaves), as if that field had become JSON.
pub fn sub_selection_not_allowed(query: &str) -> String {
    let mut path: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut loc = (1, 1);
    if let Ok(op) = graphql::parse(query) {
        if let Some(root) = op.selection.first() {
            let list_key = schema::list_query(&root.name).map_or("", |q| q.list_key);
            if let Some(list) = root.selection.iter().flatten().find(|f| f.name == list_key) {
                let nested = list
                    .selection
                    .iter()
                    .flatten()
                    .find(|f| f.selection.is_some());
                path = vec![root.key().to_string(), list.key().to_string()];
                match nested {
                    Some(f) => {
                        path.push(f.key().to_string());
                        field = f.name.clone();
                        loc = f.location;
                    }
                    None => {
                        field = list.name.clone();
                        loc = list.location;
                    }
                }
            }
        }
    }
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    json!({
        "errors": [validation_error(
            "SubSelectionNotAllowed",
            &p,
            &format!("Sub selection not allowed on leaf type JSON of field {field}"),
            loc,
        )],
        "data": null,
    })
    .to_string()
}

fn validate_selection(
    type_name: &str,
    sel: &[Field],
    path: &mut Vec<String>,
    errors: &mut Vec<Value>,
) {
    let Some(fields) = schema::fields(type_name) else {
        return;
    };
    for f in sel {
        if f.name == "__typename" {
            continue;
        }
        path.push(f.key().to_string());
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match fields.iter().find(|(n, _)| *n == f.name) {
            None => errors.push(validation_error(
                "FieldUndefined",
                &p,
                &format!("Field '{}' in type '{type_name}' is undefined", f.name),
                f.location,
            )),
            Some((_, Kind::Json)) | Some((_, Kind::Scalar)) if f.selection.is_some() => {
                let leaf = if fields.iter().any(|(n, k)| *n == f.name && *k == Kind::Json) {
                    "JSON"
                } else {
                    "scalar"
                };
                errors.push(validation_error(
                    "SubSelectionNotAllowed",
                    &p,
                    &format!(
                        "Sub selection not allowed on leaf type {leaf} of field {}",
                        f.name
                    ),
                    f.location,
                ))
            }
            Some((_, Kind::Object(t))) => match &f.selection {
                None => errors.push(validation_error(
                    "SubSelectionRequired",
                    &p,
                    &format!("Sub selection required for type {t} of field {}", f.name),
                    f.location,
                )),
                Some(s) => validate_selection(t, s, path, errors),
            },
            _ => {}
        }
        path.pop();
    }
}

/// What one list query was asked for.
struct ListArgs {
    page: usize,
    page_size: usize,
    condition: Option<Value>,
    sort: Vec<(String, bool)>,
    raw_sort: Value,
    client_id: Option<String>,
    module: Option<String>,
}

fn as_usize(v: Option<&Value>) -> Option<usize> {
    match v? {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn list_args(q: &ListQuery, input: &Value) -> Result<ListArgs, String> {
    let (li, client_id, module) = match q.shape {
        InputShape::ListInfo => (input.clone(), None, None),
        InputShape::Sites => (
            input.get("listInfo").cloned().unwrap_or(Value::Null),
            input
                .get("clientId")
                .and_then(text)
                .filter(|s| !s.is_empty()),
            None,
        ),
        InputShape::Worklogs => {
            let module = input.get("module").and_then(text);
            if module.is_none() {
                return Err("module".to_string());
            }
            (
                input.get("listInfo").cloned().unwrap_or(Value::Null),
                None,
                module,
            )
        }
    };
    let page = as_usize(li.get("page")).unwrap_or(1).max(1);
    let page_size = as_usize(li.get("pageSize"))
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let raw_sort = li.get("sort").cloned().unwrap_or(Value::Null);
    let sort = match &raw_sort {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![&raw_sort],
        _ => Vec::new(),
    }
    .into_iter()
    .filter_map(|s| {
        let attr = s.get("attribute")?.as_str()?.to_string();
        let desc = s
            .get("order")
            .and_then(Value::as_str)
            .is_some_and(|o| o.eq_ignore_ascii_case("DESC"));
        Some((attr, desc))
    })
    .collect();
    Ok(ListArgs {
        page,
        page_size,
        condition: li.get("condition").cloned().filter(|c| !c.is_null()),
        sort,
        raw_sort,
        client_id,
        module,
    })
}

/// Executes one request; always an HTTP 200 JSON body.
pub fn execute(
    tenant: &Tenant,
    cache: &Mutex<ScanCache>,
    req: &GraphQlRequest,
    opts: ExecOptions,
) -> Vec<u8> {
    let op = match graphql::parse(&req.query) {
        Ok(op) => op,
        Err(e) => {
            return json!({"errors": [{
                "message": format!("Invalid Syntax : {} at line {} column {}", e.message, e.location.0, e.location.1),
                "locations": [{"line": e.location.0, "column": e.location.1}],
                "extensions": {"classification": "InvalidSyntax"},
            }], "data": null})
            .to_string()
            .into_bytes()
        }
    };
    let empty = Map::new();
    let vars = req.variables.as_ref().unwrap_or(&empty);
    let mut errors = Vec::new();
    for root in &op.selection {
        let Some(q) = schema::list_query(&root.name) else {
            errors.push(validation_error(
                "FieldUndefined",
                &[root.key()],
                &format!("Field '{}' in type 'Query' is undefined", root.name),
                root.location,
            ));
            continue;
        };
        match root.arguments.iter().find(|(n, _)| n == "input") {
            Some((_, graphql::Literal::Variable(v))) => {
                let declared = op
                    .variables
                    .iter()
                    .find(|(n, _)| n == v)
                    .map(|(_, t)| t.as_str());
                match declared {
                    None => errors.push(validation_error(
                        "UndefinedVariable",
                        &[root.key()],
                        &format!("Undefined variable {v}"),
                        root.location,
                    )),
                    Some(t) if !q.arg_types.contains(&t) => errors.push(validation_error(
                        "VariableTypeMismatch",
                        &[root.key()],
                        &format!(
                            "Variable type '{t}' does not match expected type '{}'",
                            q.arg_types[q.arg_types.len() - 1]
                        ),
                        root.location,
                    )),
                    _ => {}
                }
            }
            Some(_) => {}
            None if q.arg_types.iter().all(|t| t.ends_with('!')) => errors.push(validation_error(
                "MissingFieldArgument",
                &[root.key()],
                "Missing field argument 'input'",
                root.location,
            )),
            None => {}
        }
        match &root.selection {
            None => errors.push(validation_error(
                "SubSelectionRequired",
                &[root.key()],
                &format!(
                    "Sub selection required for type {} of field {}",
                    q.row_type, root.name
                ),
                root.location,
            )),
            Some(sel) => {
                let mut path = vec![root.key().to_string()];
                for f in sel {
                    path.push(f.key().to_string());
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    let t = if f.name == q.list_key {
                        Some(q.row_type)
                    } else if f.name == "listInfo" {
                        Some("ListInfo")
                    } else {
                        None
                    };
                    match (t, &f.selection) {
                        (None, _) if f.name == "__typename" => {}
                        (None, _) => errors.push(validation_error(
                            "FieldUndefined",
                            &p,
                            &format!("Field '{}' is undefined", f.name),
                            f.location,
                        )),
                        (Some(t), None) => errors.push(validation_error(
                            "SubSelectionRequired",
                            &p,
                            &format!("Sub selection required for type {t} of field {}", f.name),
                            f.location,
                        )),
                        (Some(t), Some(s)) => validate_selection(t, s, &mut path, &mut errors),
                    }
                    path.pop();
                }
            }
        }
    }
    if !errors.is_empty() {
        return json!({"errors": errors, "data": null})
            .to_string()
            .into_bytes();
    }

    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(b"{\"data\":{");
    for (i, root) in op.selection.iter().enumerate() {
        let Some(q) = schema::list_query(&root.name) else {
            continue;
        };
        let input = root
            .arguments
            .iter()
            .find(|(n, _)| n == "input")
            .map(|(_, l)| l.resolve(vars))
            .unwrap_or(Value::Null);
        let args = match list_args(q, &input) {
            Ok(a) => a,
            Err(attr) => {
                return client_error_body(
                    "mandatory_validation_failed",
                    Some(&root.name),
                    &format!("{attr} is mandatory"),
                    json!({"attributes": [attr]}),
                )
                .into_bytes()
            }
        };
        if opts.refuse_created_after && args.condition.as_ref().is_some_and(uses_created_after) {
            return client_error_body(
                "type_validation_failed",
                Some(&root.name),
                "operator after is not supported for attribute createdTime",
                json!({"attributes": ["condition"]}),
            )
            .into_bytes();
        }
        let indices = match scan(tenant, cache, q, &args) {
            Ok(ix) => ix,
            Err(message) => {
                return client_error_body(
                    "type_validation_failed",
                    Some(&root.name),
                    &message,
                    json!({"attributes": ["condition"]}),
                )
                .into_bytes()
            }
        };
        let rows = tenant.rows(q.collection);
        let start = (args.page - 1)
            .saturating_mul(args.page_size)
            .min(indices.len());
        let end = (start + args.page_size).min(indices.len());
        let has_more = end < indices.len();
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, root.key());
        out.push(b'{');
        let sel = root.selection.as_deref().unwrap_or(&[]);
        for (j, f) in sel.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_key(&mut out, f.key());
            if f.name == q.list_key {
                out.push(b'[');
                for (k, &ix) in indices[start..end].iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    if let Some(row) = rows.get(ix as usize) {
                        write_object(
                            &mut out,
                            row,
                            f.selection.as_deref().unwrap_or(&[]),
                            q.row_type,
                        );
                    }
                }
                out.push(b']');
            } else if f.name == "listInfo" {
                let total = indices.len();
                let info = json!({
                    "page": args.page,
                    "pageSize": args.page_size,
                    "sort": args.raw_sort,
                    "condition": args.condition,
                    // The LIVE quirk: the last page says null, not false.
                    "hasMore": if has_more { json!(true) } else { Value::Null },
                    "totalCount": if opts.total_count_as_string { json!(total.to_string()) } else { json!(total) },
                });
                let info = info.as_object().cloned().unwrap_or_default();
                write_object(
                    &mut out,
                    &info,
                    f.selection.as_deref().unwrap_or(&[]),
                    "ListInfo",
                );
            } else {
                let _ = serde_json::to_writer(&mut out, &json!(list_type_name(q)));
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    out
}

fn list_type_name(q: &ListQuery) -> String {
    format!("{}List", q.row_type)
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

fn write_object(out: &mut Vec<u8>, row: &Map<String, Value>, sel: &[Field], type_name: &str) {
    let kinds = schema::fields(type_name).unwrap_or(&[]);
    out.push(b'{');
    for (i, f) in sel.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(out, f.key());
        if f.name == "__typename" {
            let _ = write!(out, "\"{type_name}\"");
            continue;
        }
        let v = row.get(&f.name).unwrap_or(&Value::Null);
        match (
            kinds.iter().find(|(n, _)| *n == f.name).map(|(_, k)| *k),
            &f.selection,
        ) {
            (Some(Kind::Object(t)), Some(s)) => write_nested(out, v, s, t),
            _ => {
                let _ = serde_json::to_writer(&mut *out, v);
            }
        }
    }
    out.push(b'}');
}

fn write_nested(out: &mut Vec<u8>, v: &Value, sel: &[Field], type_name: &str) {
    match v {
        Value::Object(m) => write_object(out, m, sel, type_name),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_nested(out, item, sel, type_name);
            }
            out.push(b']');
        }
        _ => out.extend_from_slice(b"null"),
    }
}

/// Filters and sorts a collection, returning row indices; cached per shape and generation.
fn scan(
    tenant: &Tenant,
    cache: &Mutex<ScanCache>,
    q: &ListQuery,
    args: &ListArgs,
) -> Result<Arc<Vec<u32>>, String> {
    let key = format!(
        "{:?}|{}|{:?}|{:?}|{:?}",
        q.collection,
        args.condition
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
        args.sort,
        args.client_id,
        args.module
    );
    if let Ok(c) = cache.lock() {
        if let Some((generation, ix)) = c.entries.get(&key) {
            if *generation == tenant.generation {
                return Ok(ix.clone());
            }
        }
    }
    let fields = schema::fields(q.row_type).unwrap_or(&[]);
    for (attr, _) in &args.sort {
        let top = attr.split('.').next().unwrap_or("");
        if !fields.iter().any(|(n, _)| *n == top) {
            return Err(format!("sort attribute {attr} is not supported"));
        }
        // Rejected on the live API (reference §4).
        if q.collection == Collection::Assets && attr == "lastCommunicatedTime" {
            return Err("sorting by lastCommunicatedTime is not supported".to_string());
        }
    }
    let rows = tenant.rows(q.collection);
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(cid) = &args.client_id {
            if lookup(row, "client.accountId")
                .first()
                .and_then(|v| text(v))
                .as_deref()
                != Some(cid.as_str())
            {
                continue;
            }
        }
        if let Some(m) = &args.module {
            if lookup(row, "workItem.module")
                .first()
                .and_then(|v| text(v))
                .as_deref()
                != Some(m.as_str())
            {
                continue;
            }
        }
        if let Some(c) = &args.condition {
            if !matches(row, c, fields, tenant.clock)? {
                continue;
            }
        }
        out.push(i as u32);
    }
    if !args.sort.is_empty() {
        let mut keyed: Vec<(Vec<SortKey>, u32)> = out
            .iter()
            .map(|&i| {
                let row = &rows[i as usize];
                (
                    args.sort
                        .iter()
                        .map(|(a, _)| sort_key(lookup(row, a).first().copied()))
                        .collect(),
                    i,
                )
            })
            .collect();
        keyed.sort_by(|a, b| {
            for (k, (_, desc)) in args.sort.iter().enumerate() {
                let o = a.0[k].partial_cmp(&b.0[k]).unwrap_or(Ordering::Equal);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        out = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let out = Arc::new(out);
    if let Ok(mut c) = cache.lock() {
        if c.entries.len() > 64 {
            c.entries.clear();
        }
        c.entries.insert(key, (tenant.generation, out.clone()));
    }
    Ok(out)
}

#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey {
    Null,
    Time(NaiveDateTime),
    Num(f64),
    Text(String),
}

fn sort_key(v: Option<&Value>) -> SortKey {
    match v {
        None | Some(Value::Null) => SortKey::Null,
        Some(Value::Number(n)) => SortKey::Num(n.as_f64().unwrap_or(0.0)),
        Some(Value::String(s)) => match parse_time(s) {
            Some(t) if s.len() >= 10 => SortKey::Time(t),
            _ => SortKey::Text(s.to_lowercase()),
        },
        Some(other) => SortKey::Text(other.to_string()),
    }
}

/// Values at a dotted path, flattening arrays on the way.
fn lookup<'a>(row: &'a Map<String, Value>, path: &str) -> Vec<&'a Value> {
    let mut cur: Vec<&Value> = Vec::new();
    let mut parts = path.split('.');
    if let Some(first) = parts.next() {
        if let Some(v) = row.get(first) {
            cur.push(v);
        }
    }
    for part in parts {
        let mut next = Vec::new();
        for v in cur {
            match v {
                Value::Object(m) => next.extend(m.get(part)),
                Value::Array(items) => next.extend(items.iter().filter_map(|i| i.get(part))),
                _ => {}
            }
        }
        cur = next;
    }
    cur.into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect()
}

/// The text of a scalar (IDs may be strings or bare numbers).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time_value(v: &Value) -> Result<NaiveDateTime, String> {
    v.as_str().and_then(parse_time).ok_or_else(|| {
        format!("invalid date value {v}; expected a zone-less datetime such as 2022-04-10T10:15:30")
    })
}

fn duration_of(v: &Value) -> Result<Duration, String> {
    let q = v
        .get("quantity")
        .and_then(|q| q.as_i64().or_else(|| q.as_str()?.parse().ok()));
    let unit = v.get("unit").and_then(Value::as_str).unwrap_or("");
    let q = q.ok_or_else(|| "inLast/inNext need {\"unit\", \"quantity\"}".to_string())?;
    Ok(match unit.to_ascii_uppercase().as_str() {
        "MINUTE" | "MINUTES" => Duration::minutes(q),
        "HOUR" | "HOURS" => Duration::hours(q),
        "DAY" | "DAYS" => Duration::days(q),
        "WEEK" | "WEEKS" => Duration::weeks(q),
        "MONTH" | "MONTHS" => Duration::days(30 * q),
        "YEAR" | "YEARS" => Duration::days(365 * q),
        other => return Err(format!("unknown unit {other}")),
    })
}

fn placeholder_range(
    p: &str,
    now: NaiveDateTime,
) -> Result<(NaiveDateTime, NaiveDateTime), String> {
    let today = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
    let week = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let month = today.with_day(1).unwrap_or(today);
    Ok(match p {
        "placeholder.today" => (today, today + Duration::days(1)),
        "placeholder.yesterday" => (today - Duration::days(1), today),
        "placeholder.this.week" => (week, week + Duration::weeks(1)),
        "placeholder.last.week" => (week - Duration::weeks(1), week),
        "placeholder.this.month" => (month, month + Duration::days(31)),
        "placeholder.last.month" => (month - Duration::days(31), month),
        other => return Err(format!("unknown placeholder {other}")),
    })
}

fn matches(
    row: &Map<String, Value>,
    cond: &Value,
    fields: &[(&str, Kind)],
    now: NaiveDateTime,
) -> Result<bool, String> {
    if let Some(join) = cond.get("joinOperator").and_then(Value::as_str) {
        let operands = cond
            .get("operands")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let or = join.eq_ignore_ascii_case("OR");
        if !or && !join.eq_ignore_ascii_case("AND") {
            return Err(format!("unknown joinOperator {join}"));
        }
        for o in &operands {
            let m = matches(row, o, fields, now)?;
            if or && m {
                return Ok(true);
            }
            if !or && !m {
                return Ok(false);
            }
        }
        return Ok(!or || operands.is_empty());
    }
    let attr = cond
        .get("attribute")
        .and_then(Value::as_str)
        .ok_or("condition without attribute")?;
    let op = cond
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("condition without operator")?;
    let value = cond.get("value").unwrap_or(&Value::Null);
    let top = attr.split('.').next().unwrap_or("");
    if !fields.iter().any(|(n, _)| *n == top) {
        return Err(format!("attribute {attr} is not filterable"));
    }
    let vals = lookup(row, attr);
    let texts: Vec<String> = vals.iter().filter_map(|v| text(v)).collect();
    let wanted = text(value).unwrap_or_default().to_lowercase();
    let any = |f: &dyn Fn(&str) -> bool| texts.iter().any(|t| f(&t.to_lowercase()));
    let times = || {
        vals.iter()
            .filter_map(|v| v.as_str().and_then(parse_time))
            .collect::<Vec<_>>()
    };
    let in_range =
        |from: NaiveDateTime, to: NaiveDateTime| times().iter().any(|t| *t >= from && *t < to);
    let number = |v: &Value| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok());
    let cmp_num = |f: &dyn Fn(f64, f64) -> bool| -> Result<bool, String> {
        let want = number(value).ok_or_else(|| format!("{op} needs a number"))?;
        Ok(vals.iter().filter_map(|v| number(v)).any(|x| f(x, want)))
    };
    Ok(match op {
        "is" => any(&|t| t == wanted),
        "isNot" => !any(&|t| t == wanted),
        "isEmpty" => texts.iter().all(String::is_empty),
        "isNotEmpty" => texts.iter().any(|t| !t.is_empty()),
        "startsWith" => any(&|t| t.starts_with(&wanted)),
        "endsWith" => any(&|t| t.ends_with(&wanted)),
        "contains" => any(&|t| t.contains(&wanted)),
        "notContains" => !any(&|t| t.contains(&wanted)),
        "includes" | "notIncludes" => {
            let list: Vec<String> = value
                .as_array()
                .ok_or_else(|| format!("{op} needs an array value"))?
                .iter()
                .filter_map(text)
                .map(|s| s.to_lowercase())
                .collect();
            let hit = any(&|t| list.iter().any(|w| w == t));
            if op == "includes" {
                hit
            } else {
                !hit
            }
        }
        "greaterThan" => cmp_num(&|x, w| x > w)?,
        "greaterThanOrEqual" => cmp_num(&|x, w| x >= w)?,
        "lessThan" => cmp_num(&|x, w| x < w)?,
        "lessThanOrEqual" => cmp_num(&|x, w| x <= w)?,
        "after" => {
            let w = time_value(value)?;
            times().iter().any(|t| *t > w)
        }
        "before" => {
            let w = time_value(value)?;
            times().iter().any(|t| *t < w)
        }
        "between" => {
            let (from, to) = match value {
                Value::Array(a) if a.len() == 2 => (time_value(&a[0])?, time_value(&a[1])?),
                Value::Object(_) => (
                    time_value(value.get("from").unwrap_or(&Value::Null))?,
                    time_value(value.get("to").unwrap_or(&Value::Null))?,
                ),
                _ => return Err("between needs [from, to]".to_string()),
            };
            times().iter().any(|t| *t >= from && *t <= to)
        }
        "inLast" => in_range(now - duration_of(value)?, now + Duration::seconds(1)),
        "inNext" => in_range(now, now + duration_of(value)?),
        "on" => {
            let (from, to) = placeholder_range(value.as_str().unwrap_or(""), now)?;
            in_range(from, to)
        }
        other => return Err(format!("unknown operator {other}")),
    })
}
