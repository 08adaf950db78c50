//! A real subset of the QuickBooks query language: `SELECT * | COUNT(*) FROM <Entity>
//! [WHERE c AND c ...] [ORDERBY|ORDER BY f [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS n]`,
//! with `= != < > <= >= IN LIKE`, and the documented errors.

use std::cmp::Ordering;

use serde_json::Value;

use super::data::{entity, parse_ts, Obj, Store};

/// The most rows one query may return.
pub const MAX_RESULTS_LIMIT: usize = 1000;
/// Rows returned when the query has no MAXRESULTS.
pub const DEFAULT_MAX_RESULTS: usize = 100;

/// A query the emulator refuses: the Fault it answers with (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Fault code (`4000` parse error, `4001` validation error).
    pub code: &'static str,
    /// Fault `Message`.
    pub message: String,
    /// Fault `Detail`.
    pub detail: String,
}

impl QueryError {
    fn parse(detail: impl Into<String>) -> Self {
        QueryError {
            code: "4000",
            message: "Error parsing query".into(),
            detail: format!("QueryParserError: {}", detail.into()),
        }
    }
    fn validation(detail: impl Into<String>) -> Self {
        QueryError {
            code: "4001",
            message: "Invalid query".into(),
            detail: format!("QueryValidationError: {}", detail.into()),
        }
    }
}

/// A literal on the right of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `'text'`.
    Str(String),
    /// `12.5`.
    Num(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `('a', 'b')`.
    List(Vec<Lit>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `IN (..)`
    In,
    /// `LIKE '%x%'`
    Like,
}

/// One `field op literal` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// Field path as written (`Metadata.LastUpdatedTime`).
    pub field: String,
    /// Operator.
    pub op: Op,
    /// Right-hand side.
    pub lit: Lit,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `COUNT(*)` rather than `*`.
    pub count: bool,
    /// Entity name, case-sensitive.
    pub entity: String,
    /// Conditions, all of which must hold.
    pub conds: Vec<Cond>,
    /// Sort field and whether descending.
    pub order: Option<(String, bool)>,
    /// 1-based start position.
    pub start: usize,
    /// Page size.
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(QueryError::parse(format!(
                            "unterminated string literal starting at column {}",
                            s.len()
                        )))
                    }
                    Some('\\') => {
                        if let Some(n) = chars.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s
                .parse::<f64>()
                .map_err(|_| QueryError::parse(format!("bad number {s}")))?;
            out.push(Tok::Num(n));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "!=" | "<>" => Some("!="),
                _ => None,
            };
            if let Some(s) = sym {
                out.push(Tok::Sym(s));
                i += 2;
                continue;
            }
            let s = match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '*' => "*",
                _ => {
                    return Err(QueryError::parse(format!(
                        "Encountered \"{c}\" at column {}",
                        i + 1
                    )))
                }
            };
            out.push(Tok::Sym(s));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.is_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(QueryError::parse(format!(
                "expected {kw}, found {:?}",
                self.peek()
            )))
        }
    }
    fn expect_sym(&mut self, s: &str) -> Result<(), QueryError> {
        match self.next() {
            Some(Tok::Sym(x)) if x == s => Ok(()),
            other => Err(QueryError::parse(format!(
                "expected \"{s}\", found {other:?}"
            ))),
        }
    }
    fn word(&mut self) -> Result<String, QueryError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            other => Err(QueryError::parse(format!(
                "expected a name, found {other:?}"
            ))),
        }
    }
    fn number(&mut self) -> Result<usize, QueryError> {
        match self.next() {
            Some(Tok::Num(n)) if n >= 0.0 => Ok(n as usize),
            other => Err(QueryError::parse(format!(
                "expected a number, found {other:?}"
            ))),
        }
    }
    fn literal(&mut self) -> Result<Lit, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            other => Err(QueryError::parse(format!(
                "expected a literal, found {other:?}"
            ))),
        }
    }
}

const KEYWORDS: &[&str] = &["ORDERBY", "ORDER", "STARTPOSITION", "MAXRESULTS"];

/// Parses a query, applying the documented limits.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    p.expect_kw("SELECT")?;
    let count = if p.is_kw("COUNT") {
        p.pos += 1;
        p.expect_sym("(")?;
        p.expect_sym("*")?;
        p.expect_sym(")")?;
        true
    } else {
        p.expect_sym("*")?;
        false
    };
    p.expect_kw("FROM")?;
    let entity = p.word()?;
    let mut q = Query {
        count,
        entity,
        conds: Vec::new(),
        order: None,
        start: 1,
        max: DEFAULT_MAX_RESULTS,
    };
    if p.is_kw("WHERE") {
        p.pos += 1;
        loop {
            let field = p.word()?;
            if KEYWORDS.iter().any(|k| field.eq_ignore_ascii_case(k)) {
                return Err(QueryError::parse(format!(
                    "expected a field, found {field}"
                )));
            }
            let op = match p.next() {
                Some(Tok::Sym("=")) => Op::Eq,
                Some(Tok::Sym("!=")) => Op::Ne,
                Some(Tok::Sym("<")) => Op::Lt,
                Some(Tok::Sym(">")) => Op::Gt,
                Some(Tok::Sym("<=")) => Op::Le,
                Some(Tok::Sym(">=")) => Op::Ge,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => Op::In,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
                other => {
                    return Err(QueryError::parse(format!(
                        "expected an operator after {field}, found {other:?}"
                    )))
                }
            };
            let lit = if op == Op::In {
                p.expect_sym("(")?;
                let mut items = vec![p.literal()?];
                while matches!(p.peek(), Some(Tok::Sym(","))) {
                    p.pos += 1;
                    items.push(p.literal()?);
                }
                p.expect_sym(")")?;
                Lit::List(items)
            } else {
                p.literal()?
            };
            if field.split('.').next().is_some_and(|f| f == "Line") {
                return Err(QueryError::validation(format!(
                    "property '{field}' is not queryable"
                )));
            }
            q.conds.push(Cond { field, op, lit });
            if p.is_kw("AND") {
                p.pos += 1;
            } else {
                break;
            }
        }
        if p.is_kw("OR") {
            return Err(QueryError::parse(
                "Encountered \"OR\": only AND is supported",
            ));
        }
    }
    loop {
        if p.is_kw("ORDERBY") || p.is_kw("ORDER") {
            if p.is_kw("ORDER") {
                p.pos += 1;
                p.expect_kw("BY")?;
            } else {
                p.pos += 1;
            }
            let field = p.word()?;
            let desc = if p.is_kw("DESC") {
                p.pos += 1;
                true
            } else {
                if p.is_kw("ASC") {
                    p.pos += 1;
                }
                false
            };
            q.order = Some((field, desc));
        } else if p.is_kw("STARTPOSITION") {
            p.pos += 1;
            q.start = p.number()?.max(1);
        } else if p.is_kw("MAXRESULTS") {
            p.pos += 1;
            let n = p.number()?;
            if n > MAX_RESULTS_LIMIT {
                return Err(QueryError::validation(format!(
                    "value {n} is too large. Max allowed value is {MAX_RESULTS_LIMIT}"
                )));
            }
            q.max = n;
        } else if let Some(t) = p.peek() {
            return Err(QueryError::parse(format!("Encountered unexpected {t:?}")));
        } else {
            break;
        }
    }
    Ok(q)
}

fn canonical(field: &str) -> String {
    match field.split_once('.') {
        Some((head, rest)) if head.eq_ignore_ascii_case("metadata") => format!("MetaData.{rest}"),
        _ => field.to_string(),
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path.split('.') {
        cur = cur.get(seg)?;
    }
    // A reference compares by its value (`CustomerRef = '24'`).
    if let Some(v) = cur.get("value") {
        return Some(v);
    }
    Some(cur)
}

/// A field value reduced to something comparable.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Text(String),
    Bool(bool),
}

fn field_key(obj: &Obj, path: &str) -> Option<Key> {
    match path {
        "MetaData.LastUpdatedTime" => return Some(Key::Num(obj.ts as f64)),
        "Id" => return Some(Key::Num(obj.id as f64)),
        _ => {}
    }
    let value = obj.value();
    let v = lookup(&value, path)?;
    if path.ends_with("Time") {
        return v.as_str().and_then(parse_ts).map(|t| Key::Num(t as f64));
    }
    match v {
        Value::Number(n) => n.as_f64().map(Key::Num),
        Value::Bool(b) => Some(Key::Bool(*b)),
        Value::String(s) => Some(Key::Text(s.clone())),
        _ => None,
    }
}

fn lit_key(lit: &Lit, like: &Key, path: &str) -> Option<Key> {
    match (lit, like) {
        (Lit::Str(s), Key::Num(_)) if path.ends_with("Time") => {
            parse_ts(s).map(|t| Key::Num(t as f64))
        }
        (Lit::Str(s), Key::Num(_)) => s.trim().parse::<f64>().ok().map(Key::Num),
        (Lit::Num(n), Key::Num(_)) => Some(Key::Num(*n)),
        (Lit::Num(n), Key::Text(_)) => Some(Key::Text(n.to_string())),
        (Lit::Str(s), Key::Text(_)) => Some(Key::Text(s.clone())),
        (Lit::Bool(b), Key::Bool(_)) => Some(Key::Bool(*b)),
        (Lit::Str(s), Key::Bool(_)) => Some(Key::Bool(s.eq_ignore_ascii_case("true"))),
        _ => None,
    }
}

fn compare(a: &Key, b: &Key) -> Option<Ordering> {
    match (a, b) {
        // Ids and other numeric strings compare as numbers.
        (Key::Text(x), Key::Text(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.partial_cmp(&q),
            _ => Some(x.cmp(y)),
        },
        _ => a.partial_cmp(b),
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let parts: Vec<String> = pattern
        .to_lowercase()
        .split('%')
        .map(str::to_string)
        .collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            if !text.starts_with(part.as_str()) {
                return false;
            }
            pos = part.len();
        } else if let Some(found) = text[pos..].find(part.as_str()) {
            pos += found + part.len();
        } else {
            return false;
        }
    }
    match parts.last() {
        Some(last) if !last.is_empty() && parts.len() > 1 => text.ends_with(last.as_str()),
        Some(last) if parts.len() == 1 => text == *last,
        _ => true,
    }
}

/// A condition with its literal resolved once per query where the field's type is
/// known up front (timestamps, ids): parsing the literal per row dominated big scans.
struct Prepared<'q> {
    path: String,
    cond: &'q Cond,
    numeric: Option<Vec<f64>>,
}

fn prepare(cond: &Cond) -> Prepared<'_> {
    let path = canonical(&cond.field);
    let numeric = if path == "MetaData.LastUpdatedTime" || path == "Id" {
        let one = |l: &Lit| match l {
            Lit::Str(s) if path == "Id" => s.trim().parse::<f64>().ok(),
            Lit::Str(s) => parse_ts(s).map(|t| t as f64),
            Lit::Num(n) => Some(*n),
            _ => None,
        };
        match &cond.lit {
            Lit::List(items) => items.iter().map(one).collect(),
            lit => one(lit).map(|v| vec![v]),
        }
    } else {
        None
    };
    Prepared {
        path,
        cond,
        numeric,
    }
}

fn matches_prepared(obj: &Obj, p: &Prepared<'_>) -> bool {
    let Some(values) = &p.numeric else {
        return matches(obj, p.cond, &p.path);
    };
    let Some(Key::Num(v)) = field_key(obj, &p.path) else {
        return false;
    };
    match p.cond.op {
        Op::Eq | Op::In => values.contains(&v),
        Op::Ne => values.iter().all(|x| v != *x),
        Op::Lt => values.first().is_some_and(|x| v < *x),
        Op::Gt => values.first().is_some_and(|x| v > *x),
        Op::Le => values.first().is_some_and(|x| v <= *x),
        Op::Ge => values.first().is_some_and(|x| v >= *x),
        Op::Like => false,
    }
}

fn matches(obj: &Obj, cond: &Cond, path: &str) -> bool {
    let Some(value) = field_key(obj, path) else {
        return false;
    };
    let test = |lit: &Lit, op: Op| -> bool {
        let Some(rhs) = lit_key(lit, &value, path) else {
            return false;
        };
        let ord = compare(&value, &rhs);
        match op {
            Op::Eq | Op::In => ord == Some(Ordering::Equal),
            Op::Ne => ord != Some(Ordering::Equal),
            Op::Lt => ord == Some(Ordering::Less),
            Op::Gt => ord == Some(Ordering::Greater),
            Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            Op::Like => match (&value, lit) {
                (Key::Text(t), Lit::Str(p)) => like(t, p),
                _ => false,
            },
        }
    };
    match (&cond.lit, cond.op) {
        (Lit::List(items), _) => items.iter().any(|l| test(l, Op::Eq)),
        (lit, op) => test(lit, op),
    }
}

/// What a query selected.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// `COUNT(*)`.
    Count(usize),
    /// One page of objects.
    Page(Vec<&'a Obj>),
}

/// The incremental-sync shape (`LastUpdatedTime` conditions only, sorted ascending by
/// it) answered from the timestamp index: a binary search plus one page.
fn indexed<'a>(
    store: &'a Store,
    entity: &str,
    list: bool,
    q: &Query,
    conds: &[Prepared<'_>],
) -> Option<Outcome<'a>> {
    let by_ts = q
        .order
        .as_ref()
        .is_some_and(|(f, desc)| !desc && canonical(f) == "MetaData.LastUpdatedTime");
    if list
        || q.count
        || !by_ts
        || !conds.iter().all(|p| {
            p.path == "MetaData.LastUpdatedTime" && p.numeric.as_ref().is_some_and(|v| v.len() == 1)
        })
    {
        return None;
    }
    let index = store.ts_index(entity)?;
    let lower = conds
        .iter()
        .filter_map(
            |p| match (p.cond.op, p.numeric.as_ref().and_then(|v| v.first())) {
                (Op::Ge | Op::Eq, Some(v)) => Some(*v as i64),
                (Op::Gt, Some(v)) => Some(*v as i64 + 1),
                _ => None,
            },
        )
        .max();
    let from = lower.map_or(0, |l| index.partition_point(|(ts, _)| *ts < l));
    let page = index[from..]
        .iter()
        .filter_map(|(_, id)| store.get(entity, *id))
        .filter(|o| conds.iter().all(|p| matches_prepared(o, p)))
        .skip(q.start.saturating_sub(1))
        .take(q.max)
        .collect();
    Some(Outcome::Page(page))
}

/// Runs `q` against the store.
pub fn run<'a>(store: &'a Store, q: &Query) -> Result<Outcome<'a>, QueryError> {
    let Some(kind) = entity(&q.entity) else {
        return Err(QueryError::validation(format!(
            "Invalid context declaration : {}",
            q.entity
        )));
    };
    let conds: Vec<Prepared<'_>> = q.conds.iter().map(prepare).collect();
    if let Some(page) = indexed(store, kind.name, kind.list, q, &conds) {
        return Ok(page);
    }
    // Name-list entities hide inactive rows unless the query filters on Active.
    let hide_inactive = kind.list && !conds.iter().any(|p| p.path == "Active");
    let mut rows: Vec<&Obj> = store
        .table(kind.name)
        .filter(|o| !hide_inactive || o.value().get("Active") != Some(&Value::Bool(false)))
        .filter(|o| conds.iter().all(|p| matches_prepared(o, p)))
        .collect();
    if q.count {
        return Ok(Outcome::Count(rows.len()));
    }
    if let Some((field, desc)) = &q.order {
        let path = canonical(field);
        if path == "MetaData.LastUpdatedTime" || path == "Id" {
            // The common case, keyed without JSON lookups.
            let key = |o: &Obj| if path == "Id" { o.id as i64 } else { o.ts };
            let cmp = |a: &&Obj, b: &&Obj| {
                let ord = if *desc {
                    key(b).cmp(&key(a))
                } else {
                    key(a).cmp(&key(b))
                };
                ord.then(a.id.cmp(&b.id))
            };
            // Only the first `start - 1 + max` rows matter: select them in linear time,
            // then sort just those (a full sort per page dominated big scans).
            let wanted = q.start.saturating_sub(1) + q.max;
            if wanted > 0 && wanted < rows.len() {
                rows.select_nth_unstable_by(wanted - 1, cmp);
                rows.truncate(wanted);
            }
            rows.sort_by(cmp);
            let page = rows
                .into_iter()
                .skip(q.start.saturating_sub(1))
                .take(q.max)
                .collect();
            return Ok(Outcome::Page(page));
        }
        rows.sort_by(|a, b| {
            let ka = field_key(a, &path);
            let kb = field_key(b, &path);
            let ord = match (&ka, &kb) {
                (Some(x), Some(y)) => compare(x, y).unwrap_or(Ordering::Equal),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            // Ties keep a stable order by Id, so offset paging is repeatable.
            ord.then(a.id.cmp(&b.id))
        });
    }
    let page = rows
        .into_iter()
        .skip(q.start.saturating_sub(1))
        .take(q.max)
        .collect();
    Ok(Outcome::Page(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_incremental_query() {
        let q = parse("SELECT * FROM Invoice WHERE Metadata.LastUpdatedTime > '2024-05-01T00:00:00-07:00' AND Metadata.LastUpdatedTime <= '2024-05-31T00:00:00-0700' ORDER BY Metadata.LastUpdatedTime ASC STARTPOSITION 1 MAXRESULTS 1000").expect("parses");
        assert_eq!(q.entity, "Invoice");
        assert_eq!(q.conds.len(), 2);
        assert_eq!(q.max, 1000);
        assert_eq!(
            q.order,
            Some(("Metadata.LastUpdatedTime".to_string(), false))
        );
    }

    #[test]
    fn rejects_large_maxresults_and_bad_quotes() {
        let e = parse("SELECT * FROM Invoice MAXRESULTS 1500").expect_err("too large");
        assert_eq!(e.code, "4001");
        assert!(e
            .detail
            .contains("value 1500 is too large. Max allowed value is 1000"));
        let e =
            parse("SELECT * FROM Customer WHERE DisplayName = 'O'Brien'").expect_err("bad quote");
        assert_eq!(e.code, "4000");
        let q = parse("select count(*) from Customer where DisplayName = 'O\\'Brien' and Active IN (true, false) ORDERBY Id DESC").expect("escape");
        assert!(q.count);
        assert_eq!(q.conds[0].lit, Lit::Str("O'Brien".into()));
    }

    #[test]
    fn like_wildcards() {
        assert!(like("Amy's Bird", "amy%"));
        assert!(like("Amy's Bird", "%bird"));
        assert!(like("Amy's Bird", "%s B%"));
        assert!(!like("Amy's Bird", "bird%"));
    }
}
