//! Where SQLite, PostgreSQL and MySQL/MariaDB differ: URL schemes, placeholders, how a
//! row becomes JSON text inside the database, and how timestamps are compared.
//!
//! Every value that comes from outside (cursor, window, client ids, limit) becomes a bound
//! parameter; table and column names come only from the static stream definitions.

use crate::error::{redact_url, Error, Result};
use crate::streams::{Column, Kind, StreamDef};

/// The database family, chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
    /// `mysql://` and `mariadb://` URLs.
    MySql,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// Text (also timestamps, dates and decimals, cast in SQL where the dialect needs it).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// NULL of a column kind.
    Null(Kind),
}

/// What a page query selects.
#[derive(Debug, Clone, Default)]
pub struct PageFilter {
    /// Resume strictly after this `(canonical updated_at, id)`.
    pub after: Option<(String, i64)>,
    /// Stop at this key (inclusive): pages fetched in parallel each own a key range.
    pub upto: Option<(String, i64)>,
    /// Canonical `updated_at` lower bound (inclusive).
    pub start: Option<String>,
    /// Canonical `updated_at` upper bound (exclusive).
    pub end: Option<String>,
    /// Only these client ids (empty: all).
    pub clients: Vec<i64>,
    /// Rows in this page.
    pub limit: i64,
    /// The stream's soft-delete column, if configured: rows where it is set come back
    /// flagged as deletions.
    pub soft_delete: Option<String>,
}

/// What a key-listing query (a reconciliation page) selects.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Resume strictly after this id.
    pub after: Option<i64>,
    /// Leave out rows this soft-delete column marks as deleted.
    pub soft_delete: Option<String>,
    /// Ids in this page.
    pub limit: i64,
}

/// SQL text plus its parameters, in placeholder order.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL.
    pub sql: String,
    /// Parameters for its placeholders, in order.
    pub params: Vec<Param>,
}

impl Dialect {
    /// The dialect of `url`; [`Error::Url`] for anything else.
    pub fn from_url(url: &str) -> Result<Dialect> {
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(Error::Url {
                url: redact_url(url),
                reason:
                    "the scheme must be sqlite:, postgres://, postgresql://, mysql:// or mariadb://"
                        .into(),
            }),
        }
    }

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    /// The text to bind for a canonical timestamp.
    pub fn timestamp_param(self, canonical: &str) -> String {
        match self {
            // MySQL's DATETIME literal has no `T` and no zone suffix.
            Dialect::MySql => canonical
                .replacen('T', " ", 1)
                .trim_end_matches('Z')
                .to_string(),
            Dialect::Sqlite | Dialect::Postgres => canonical.to_string(),
        }
    }

    /// A placeholder for a parameter of `kind`, cast where the driver would otherwise
    /// send text the server will not compare with or store into the column.
    fn placeholder(self, n: usize, kind: Kind) -> String {
        match (self, kind) {
            (Dialect::Sqlite, _) => "?".into(),
            (Dialect::Postgres, Kind::Timestamp) => format!("CAST(${n} AS timestamptz)"),
            (Dialect::Postgres, Kind::Date) => format!("CAST(${n} AS date)"),
            (Dialect::Postgres, Kind::Decimal) => format!("CAST(${n} AS numeric)"),
            (Dialect::Postgres, _) => format!("${n}"),
            (Dialect::MySql, Kind::Timestamp) => "CAST(? AS DATETIME(6))".into(),
            (Dialect::MySql, _) => "?".into(),
        }
    }

    /// `name` quoted as an identifier (names from the config are validated as plain
    /// identifiers first; quoting keeps reserved words working).
    fn quote(self, name: &str) -> String {
        match self {
            Dialect::MySql => format!("`{name}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{name}\""),
        }
    }

    /// A boolean expression: the row's soft-delete column `column` says "deleted".
    ///
    /// Written to work whatever the column's type, so the config needs no kind: NULL is
    /// live; a boolean or integer flag is live when false/0; anything else that is set
    /// (a timestamp, a date) is deleted. The text comparison is what makes one expression
    /// valid for both a `timestamptz` and a `boolean` column in PostgreSQL.
    pub fn soft_deleted_expr(self, column: &str) -> String {
        let c = format!("s.{}", self.quote(column));
        match self {
            Dialect::Sqlite => format!("({c} IS NOT NULL AND {c} NOT IN (0, '0', 'false'))"),
            Dialect::Postgres => {
                format!("({c} IS NOT NULL AND CAST({c} AS text) NOT IN ('false', '0'))")
            }
            Dialect::MySql => {
                format!("({c} IS NOT NULL AND CAST({c} AS CHAR) NOT IN ('0', 'false'))")
            }
        }
    }

    /// The deletion flag of a page row as a BIGINT-compatible 0/1 expression.
    fn deleted_flag(self, soft_delete: Option<&str>) -> String {
        let Some(column) = soft_delete else {
            return match self {
                Dialect::Sqlite => "0".into(),
                Dialect::Postgres => "CAST(0 AS BIGINT)".into(),
                Dialect::MySql => "CAST(0 AS SIGNED)".into(),
            };
        };
        let case = format!(
            "CASE WHEN {} THEN 1 ELSE 0 END",
            self.soft_deleted_expr(column)
        );
        match self {
            Dialect::Sqlite => case,
            Dialect::Postgres => format!("CAST({case} AS BIGINT)"),
            Dialect::MySql => format!("CAST({case} AS SIGNED)"),
        }
    }

    /// Canonical-text expression of the timestamp column `c`.
    fn timestamp_text(self, c: &str) -> String {
        match self {
            Dialect::Sqlite => c.to_string(),
            Dialect::Postgres => {
                format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            Dialect::MySql => format!("DATE_FORMAT({c}, '%Y-%m-%dT%H:%i:%s.%fZ')"),
        }
    }

    /// Expression for one column's value inside the dialect's JSON constructor.
    fn json_value(self, c: &Column, qualified: &str) -> String {
        match (self, c.kind) {
            (_, Kind::Timestamp) => self.timestamp_text(qualified),
            (Dialect::Postgres, Kind::Date) => format!("to_char({qualified}, 'YYYY-MM-DD')"),
            (Dialect::MySql, Kind::Date) => format!("DATE_FORMAT({qualified}, '%Y-%m-%d')"),
            (Dialect::Postgres, Kind::Decimal) => format!("{qualified}::text"),
            (Dialect::MySql, Kind::Decimal) => format!("CAST({qualified} AS CHAR)"),
            // SQLite has no boolean; json('true') carries the JSON subtype into json_object.
            (Dialect::Sqlite, Kind::Bool) => format!(
                "CASE WHEN {qualified} IS NULL THEN NULL WHEN {qualified} THEN json('true') ELSE json('false') END"
            ),
            (Dialect::MySql, Kind::Bool) => {
                format!("JSON_EXTRACT(IF({qualified}, 'true', 'false'), '$')")
            }
            _ => qualified.to_string(),
        }
    }

    /// The query for one page of `stream` in `(updated_at, id)` order: rows of
    /// `(id, canonical updated_at, deleted 0/1, row as JSON text)`, or for SQLite
    /// ([`Dialect::aggregates_pages`]) one value holding the page as
    /// `id updated_at deleted json` lines.
    pub fn page_query(self, stream: &StreamDef, filter: &PageFilter) -> Statement {
        let mut b = Builder::new(self);
        let where_clause = self.where_clause(&mut b, stream, filter);
        let limit = b.push(Param::Int(filter.limit), Kind::Int);
        let table = stream.name;
        let q = |c: &str| format!("s.{c}");
        let order = "ORDER BY s.updated_at, s.id";
        let cursor = self.timestamp_text("s.updated_at");
        let deleted = self.deleted_flag(filter.soft_delete.as_deref());
        let sql = match self {
            Dialect::Sqlite => {
                // One row per page: `id cursor deleted json` lines joined by newlines
                // (json_object escapes newlines inside strings). Fetching one value
                // instead of 10,000 rows halves the cost of a page; the subquery keeps
                // the key order.
                format!(
                    "SELECT group_concat(line, char(10)) FROM \
                     (SELECT s.id || ' ' || {cursor} || ' ' || {deleted} || ' ' || {json} AS line \
                     FROM {table} s{where_clause} {order} LIMIT {limit})",
                    json = self.json_object(stream),
                )
            }
            Dialect::MySql => {
                format!(
                    "SELECT s.id, {cursor}, {deleted}, {json} FROM {table} s{where_clause} {order} LIMIT {limit}",
                    json = self.json_object(stream),
                )
            }
            Dialect::Postgres => {
                // row_to_json gives compact JSON in column order; the inner query keeps
                // the index-friendly WHERE/ORDER on the raw columns.
                let cols = stream
                    .columns
                    .iter()
                    .map(|c| format!("{} AS {}", self.json_value(c, &q(c.name)), c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                match filter.soft_delete {
                    None => format!(
                        "SELECT t.id, t.updated_at, {deleted}, row_to_json(t)::text FROM \
                         (SELECT {cols} FROM {table} s{where_clause} {order} LIMIT {limit}) t \
                         ORDER BY t.updated_at COLLATE \"C\", t.id"
                    ),
                    // The flag must not become a field of the JSON: compute it beside the
                    // columns, then build the JSON from the columns alone.
                    Some(_) => {
                        let names = stream
                            .columns
                            .iter()
                            .map(|c| format!("p.{}", c.name))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!(
                            "SELECT t.id, t.updated_at, p._tributary_deleted, row_to_json(t)::text FROM \
                             (SELECT {cols}, {deleted} AS _tributary_deleted FROM {table} s{where_clause} {order} LIMIT {limit}) p \
                             CROSS JOIN LATERAL (SELECT {names}) t \
                             ORDER BY t.updated_at COLLATE \"C\", t.id"
                        )
                    }
                }
            }
        };
        Statement {
            sql,
            params: b.params,
        }
    }

    /// One page of a reconciliation: the next `limit` ids after `after` in id order, with
    /// no window or client condition (that is what makes it a listing of the source).
    /// Soft-deleted rows are left out, so the host marks any it has as live. SQLite
    /// returns the page as one space-separated text value ([`Dialect::aggregates_pages`]).
    pub fn keys_query(self, stream: &StreamDef, filter: &KeyFilter) -> Statement {
        let mut b = Builder::new(self);
        let mut conds = Vec::new();
        if let Some(after) = filter.after {
            conds.push(format!("s.id > {}", b.push(Param::Int(after), Kind::Int)));
        }
        if let Some(column) = &filter.soft_delete {
            conds.push(format!("NOT {}", self.soft_deleted_expr(column)));
        }
        let where_clause = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let limit = b.push(Param::Int(filter.limit), Kind::Int);
        let table = stream.name;
        let page = format!("SELECT s.id FROM {table} s{where_clause} ORDER BY s.id LIMIT {limit}");
        let sql = match self {
            Dialect::Sqlite => format!("SELECT group_concat(id, ' ') FROM ({page})"),
            Dialect::Postgres | Dialect::MySql => page,
        };
        Statement {
            sql,
            params: b.params,
        }
    }

    /// The key `(canonical updated_at, id)` of the row `offset` rows into the filtered,
    /// ordered stream; an index-only walk that lets pages be fetched in parallel.
    pub fn boundary_query(self, stream: &StreamDef, filter: &PageFilter, offset: i64) -> Statement {
        let mut b = Builder::new(self);
        let where_clause = self.where_clause(&mut b, stream, filter);
        let offset = b.push(Param::Int(offset), Kind::Int);
        let limit = "LIMIT 1 OFFSET";
        Statement {
            sql: format!(
                "SELECT s.id, {cursor} FROM {table} s{where_clause} ORDER BY s.updated_at, s.id {limit} {offset}",
                cursor = self.timestamp_text("s.updated_at"),
                table = stream.name,
            ),
            params: b.params,
        }
    }

    /// The JSON-object expression of a row (SQLite and MySQL).
    fn json_object(self, stream: &StreamDef) -> String {
        let pairs = stream
            .columns
            .iter()
            .map(|c| {
                format!(
                    "'{}', {}",
                    c.name,
                    self.json_value(c, &format!("s.{}", c.name))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Dialect::Sqlite => format!("json_object({pairs})"),
            // MySQL 8 returns the JSON type, which not every driver decodes as text.
            Dialect::MySql | Dialect::Postgres => format!("CAST(JSON_OBJECT({pairs}) AS CHAR)"),
        }
    }

    /// ` WHERE ...` for the filter's keyset range, window and client list (or nothing).
    ///
    /// The keyset predicate `updated_at > c OR (updated_at = c AND id > i)` is what keeps
    /// rows sharing a timestamp from being lost or repeated at a page boundary; the extra
    /// `updated_at >= c` conjunct lets every planner seek the `(updated_at, id)` index.
    fn where_clause(self, b: &mut Builder, stream: &StreamDef, filter: &PageFilter) -> String {
        let mut conds: Vec<String> = Vec::new();
        if let Some((ts, id)) = &filter.after {
            let ts = self.timestamp_param(ts);
            let p1 = b.push(Param::Text(ts.clone()), Kind::Timestamp);
            let p2 = b.push(Param::Text(ts.clone()), Kind::Timestamp);
            let p3 = b.push(Param::Text(ts), Kind::Timestamp);
            let p4 = b.push(Param::Int(*id), Kind::Int);
            conds.push(format!("s.updated_at >= {p1}"));
            conds.push(format!(
                "(s.updated_at > {p2} OR (s.updated_at = {p3} AND s.id > {p4}))"
            ));
        }
        if let Some((ts, id)) = &filter.upto {
            let ts = self.timestamp_param(ts);
            let p1 = b.push(Param::Text(ts.clone()), Kind::Timestamp);
            let p2 = b.push(Param::Text(ts.clone()), Kind::Timestamp);
            let p3 = b.push(Param::Text(ts), Kind::Timestamp);
            let p4 = b.push(Param::Int(*id), Kind::Int);
            conds.push(format!("s.updated_at <= {p1}"));
            conds.push(format!(
                "(s.updated_at < {p2} OR (s.updated_at = {p3} AND s.id <= {p4}))"
            ));
        }
        if let Some(start) = &filter.start {
            let p = b.push(Param::Text(self.timestamp_param(start)), Kind::Timestamp);
            conds.push(format!("s.updated_at >= {p}"));
        }
        if let Some(end) = &filter.end {
            let p = b.push(Param::Text(self.timestamp_param(end)), Kind::Timestamp);
            conds.push(format!("s.updated_at < {p}"));
        }
        if !filter.clients.is_empty() {
            let list = filter
                .clients
                .iter()
                .map(|c| b.push(Param::Int(*c), Kind::Int))
                .collect::<Vec<_>>()
                .join(", ");
            conds.push(format!("s.{} IN ({list})", stream.client_column));
        }
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    }

    /// A multi-row INSERT of `rows` rows into `stream`'s table (values in column order).
    pub fn insert_sql(self, stream: &StreamDef, rows: usize) -> String {
        let mut b = Builder::new(self);
        let names = stream
            .columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("INSERT INTO {} ({names}) VALUES ", stream.name);
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (i, c) in stream.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&b.placeholder_only(c.kind));
            }
            sql.push(')');
        }
        sql
    }

    /// `UPDATE` setting `updated_at` of the rows with the given ids.
    pub fn touch_statement(self, stream: &StreamDef, ids: &[i64], at: &str) -> Statement {
        let mut b = Builder::new(self);
        let ts = b.push(Param::Text(self.timestamp_param(at)), Kind::Timestamp);
        let list = ids
            .iter()
            .map(|id| b.push(Param::Int(*id), Kind::Int))
            .collect::<Vec<_>>()
            .join(", ");
        Statement {
            sql: format!(
                "UPDATE {} SET updated_at = {ts} WHERE id IN ({list})",
                stream.name
            ),
            params: b.params,
        }
    }

    /// `DELETE` of the rows with the given ids (the sample's hard delete).
    pub fn delete_statement(self, stream: &StreamDef, ids: &[i64]) -> Statement {
        let mut b = Builder::new(self);
        let list = ids
            .iter()
            .map(|id| b.push(Param::Int(*id), Kind::Int))
            .collect::<Vec<_>>()
            .join(", ");
        Statement {
            sql: format!("DELETE FROM {} WHERE id IN ({list})", stream.name),
            params: b.params,
        }
    }

    /// `UPDATE` setting the soft-delete `column` (of `kind`: a timestamp set to `at`, or a
    /// boolean set to true) and `updated_at = at` on the rows with the given ids, as an
    /// application does when it soft-deletes.
    pub fn soft_delete_statement(
        self,
        stream: &StreamDef,
        column: &str,
        kind: Kind,
        ids: &[i64],
        at: &str,
    ) -> Statement {
        let mut b = Builder::new(self);
        let value = match kind {
            Kind::Bool => b.push(Param::Bool(true), Kind::Bool),
            _ => b.push(Param::Text(self.timestamp_param(at)), Kind::Timestamp),
        };
        let ts = b.push(Param::Text(self.timestamp_param(at)), Kind::Timestamp);
        let list = ids
            .iter()
            .map(|id| b.push(Param::Int(*id), Kind::Int))
            .collect::<Vec<_>>()
            .join(", ");
        Statement {
            sql: format!(
                "UPDATE {} SET {} = {value}, updated_at = {ts} WHERE id IN ({list})",
                stream.name,
                self.quote(column)
            ),
            params: b.params,
        }
    }

    /// Whether [`Dialect::page_query`] returns the whole page as one text value.
    pub fn aggregates_pages(self) -> bool {
        self == Dialect::Sqlite
    }

    /// Most parameters one statement may carry (SQLite's default limit is 32766).
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            Dialect::Postgres | Dialect::MySql => 65_000,
        }
    }
}

/// Numbers placeholders and collects their parameters.
struct Builder {
    dialect: Dialect,
    n: usize,
    params: Vec<Param>,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Builder {
            dialect,
            n: 0,
            params: Vec::new(),
        }
    }

    fn placeholder_only(&mut self, kind: Kind) -> String {
        self.n += 1;
        self.dialect.placeholder(self.n, kind)
    }

    fn push(&mut self, p: Param, kind: Kind) -> String {
        self.params.push(p);
        self.placeholder_only(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams;

    #[test]
    fn schemes() {
        assert_eq!(Dialect::from_url("sqlite:a.db").ok(), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::from_url("postgresql://h/db").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("mariadb://h/db").ok(),
            Some(Dialect::MySql)
        );
        let e = Dialect::from_url("oracle://u:pw@h/db").expect_err("unsupported");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn page_query_binds_every_value() {
        let s = streams::find("service_history").expect("stream");
        let f = PageFilter {
            after: Some(("2024-01-01T00:00:00.000000Z".into(), 7)),
            upto: None,
            start: Some("2024-01-01T00:00:00.000000Z".into()),
            end: None,
            clients: vec![1, 2],
            limit: 10,
            soft_delete: None,
        };
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let st = d.page_query(s, &f);
            assert_eq!(st.params.len(), 8, "{}", st.sql);
            let bq = d.boundary_query(s, &f, 9);
            assert_eq!(bq.params.len(), 8, "{}", bq.sql);
            assert!(!st.sql.contains("2024-01-01"), "{}", st.sql);
            assert!(st.sql.contains("client_id IN"), "{}", st.sql);
        }
        assert_eq!(
            Dialect::MySql.timestamp_param("2024-01-01T10:00:00.000001Z"),
            "2024-01-01 10:00:00.000001"
        );
    }

    #[test]
    fn key_listing_ignores_window_and_clients() {
        let s = streams::find("contracts").expect("stream");
        let f = KeyFilter {
            after: Some(41),
            soft_delete: Some("is_deleted".into()),
            limit: 500,
        };
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let st = d.keys_query(s, &f);
            assert_eq!(
                st.params,
                vec![Param::Int(41), Param::Int(500)],
                "{}",
                st.sql
            );
            assert!(!st.sql.contains("updated_at"), "{}", st.sql);
            assert!(!st.sql.contains("client_id"), "{}", st.sql);
            assert!(st.sql.contains("NOT (s."), "{}", st.sql);
        }
    }
}
