//! The connection pool, one concrete sqlx pool per dialect.
//!
//! Concrete pools rather than `sqlx::Any`: `Any` converts every value through its own
//! representation, which costs more than the JSON text we actually fetch. The three arms
//! share code through small macros.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use tributary_sdk::Record;

use crate::dialect::{Dialect, Param, Statement};
use crate::error::{password_of, redact_url, Error, Result};
use crate::streams::Kind;

/// How to open a pool.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// SQLite only: create the file when missing (migrations and sample data).
    pub create_if_missing: bool,
    /// SQLite only: trade durability for speed (bulk sample generation into a temp file).
    pub bulk_load: bool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// A database handle: pool, dialect, and what is needed to keep secrets out of errors.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: Pool,
    dialect: Dialect,
    redacted_url: String,
    password: Option<String>,
}

/// Binds `params` in order to a sqlx query.
macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                Param::Int(v) => q.bind(*v),
                Param::Text(s) => q.bind(s.as_str()),
                Param::Bool(b) => q.bind(*b),
                Param::Null(Kind::Int) => q.bind(None::<i64>),
                Param::Null(Kind::Bool) => q.bind(None::<bool>),
                Param::Null(_) => q.bind(None::<&str>),
            };
        }
        q
    }};
}

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! with_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match &$db.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
            Pool::MySql($p) => $body,
        }
    };
}

impl Db {
    /// Opens a pool for `url` and makes one connection, so bad URLs, refused connections
    /// and rejected credentials surface here, classified.
    pub(crate) async fn open(url: &str, settings: &PoolSettings) -> Result<Db> {
        let dialect = Dialect::from_url(url)?;
        let redacted_url = redact_url(url);
        let password = password_of(url);
        let secret = password.as_deref();
        let bad_url = |e: sqlx::Error| Error::Url {
            url: redacted_url.clone(),
            reason: scrub(e.to_string(), secret),
        };
        let connecting = format!("cannot connect to {redacted_url}");
        let timeout = settings.connect_timeout;
        let size = settings.pool_size.max(1);
        let pool = match dialect {
            Dialect::Sqlite => {
                let mut opts = SqliteConnectOptions::from_str(url)
                    .map_err(bad_url)?
                    .create_if_missing(settings.create_if_missing)
                    .busy_timeout(timeout)
                    // Bigger row channel: fewer wake-ups between sqlx's SQLite worker
                    // thread and the reader.
                    .row_buffer_size(1024);
                if settings.bulk_load {
                    opts = opts
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Off)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(size)
                    .min_connections(0)
                    .acquire_timeout(timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| Error::db(connecting.clone(), e, secret))?;
                Pool::Sqlite(pool)
            }
            Dialect::Postgres => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(bad_url)?
                    .application_name("tributary-internal-db");
                let pool = PgPoolOptions::new()
                    .max_connections(size)
                    .min_connections(0)
                    .acquire_timeout(timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| Error::db(connecting.clone(), e, secret))?;
                Pool::Postgres(pool)
            }
            Dialect::MySql => {
                // sqlx knows the `mysql` scheme; MariaDB speaks the same protocol.
                let url = match url.strip_prefix("mariadb:") {
                    Some(rest) => format!("mysql:{rest}"),
                    None => url.to_string(),
                };
                let opts = MySqlConnectOptions::from_str(&url)
                    .map_err(bad_url)?
                    .timezone(Some("+00:00".into()));
                let pool = MySqlPoolOptions::new()
                    .max_connections(size)
                    .min_connections(0)
                    .acquire_timeout(timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| Error::db(connecting.clone(), e, secret))?;
                Pool::MySql(pool)
            }
        };
        Ok(Db {
            pool,
            dialect,
            redacted_url,
            password,
        })
    }

    /// The dialect.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL with its password redacted, for messages.
    pub(crate) fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    fn err(&self, context: impl Into<String>, e: sqlx::Error) -> Error {
        Error::db(context, e, self.password.as_deref())
    }

    /// Fetches one page of records built by [`Dialect::page_query`].
    pub(crate) async fn fetch_records(&self, st: &Statement, context: &str) -> Result<Vec<Record>> {
        if let Pool::Sqlite(p) = &self.pool {
            let text: Option<String> = bind_all!(sqlx::query_scalar(&st.sql), &st.params)
                .fetch_one(p)
                .await
                .map_err(|e| self.err(context, e))?;
            return split_page(text.as_deref().unwrap_or(""))
                .map_err(|reason| Error::Internal(format!("{context}: {reason}")));
        }
        with_pool!(self, p => {
            bind_all!(sqlx::query(&st.sql), &st.params)
                .try_map(|row| to_record(&row))
                .fetch_all(p)
                .await
        })
        .map_err(|e| self.err(context, e))
    }

    /// Runs a [`Dialect::keys_query`]: the ids of one reconciliation page, ascending.
    pub(crate) async fn fetch_ids(&self, st: &Statement, context: &str) -> Result<Vec<i64>> {
        let mut ids = if let Pool::Sqlite(p) = &self.pool {
            let text: Option<String> = bind_all!(sqlx::query_scalar(&st.sql), &st.params)
                .fetch_one(p)
                .await
                .map_err(|e| self.err(context, e))?;
            split_ids(text.as_deref().unwrap_or(""))
                .map_err(|reason| Error::Internal(format!("{context}: {reason}")))?
        } else {
            with_pool!(self, p => {
                bind_all!(sqlx::query_scalar::<_, i64>(&st.sql), &st.params)
                    .fetch_all(p)
                    .await
            })
            .map_err(|e| self.err(context, e))?
        };
        // group_concat does not promise its input order; the next page starts after the
        // largest id, so make the order a guarantee (cheap on an already sorted page).
        ids.sort_unstable();
        Ok(ids)
    }

    /// Runs a [`Dialect::boundary_query`]: the `(cursor, id)` key found, if any.
    pub(crate) async fn fetch_key(
        &self,
        st: &Statement,
        context: &str,
    ) -> Result<Option<(String, i64)>> {
        with_pool!(self, p => {
            bind_all!(sqlx::query(&st.sql), &st.params)
                .try_map(|row| to_key(&row))
                .fetch_optional(p)
                .await
        })
        .map_err(|e| self.err(context, e))
    }

    /// Executes a statement, returning the rows affected.
    pub(crate) async fn execute(&self, st: &Statement, context: &str) -> Result<u64> {
        with_pool!(self, p => {
            bind_all!(sqlx::query(&st.sql), &st.params)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(|e| self.err(context, e))
    }

    /// Runs plain SQL with no parameters (DDL, `SELECT 1`).
    pub(crate) async fn scalar_i64(&self, sql: &str, context: &str) -> Result<i64> {
        with_pool!(self, p => {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await
        })
        .map_err(|e| self.err(context, e))
    }

    /// Inserts many rows with one statement per chunk, all in one transaction.
    pub(crate) async fn insert_rows(
        &self,
        table_sql: impl Fn(usize) -> String,
        columns: usize,
        rows: Vec<Vec<Param>>,
        context: &str,
    ) -> Result<()> {
        let per_stmt = (self.dialect.max_params() / columns.max(1)).clamp(1, 500);
        let full_sql = table_sql(per_stmt);
        with_pool!(self, p => {
            async {
                let mut tx = p.begin().await?;
                for chunk in rows.chunks(per_stmt) {
                    let sql_owned;
                    let sql = if chunk.len() == per_stmt {
                        full_sql.as_str()
                    } else {
                        sql_owned = table_sql(chunk.len());
                        sql_owned.as_str()
                    };
                    bind_all!(sqlx::query(sql), chunk.iter().flatten())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
        })
        .map_err(|e| self.err(context, e))
    }

    /// Applies the crate's migrations for this dialect.
    pub(crate) async fn migrate(&self) -> Result<()> {
        let context = format!("migrating {}", self.redacted_url);
        let result = match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
            Pool::MySql(p) => sqlx::migrate!("./migrations/mysql").run(p).await,
        };
        result.map_err(|e| self.err(context, sqlx::Error::from(e)))
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// Splits an aggregated SQLite page (`id cursor deleted json` lines) into records, in
/// key order.
fn split_page(text: &str) -> std::result::Result<Vec<Record>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut records = Vec::with_capacity(text.len() / 256 + 1);
    let mut sorted = true;
    let mut prev: Option<(&str, i64)> = None;
    for line in text.split('\n') {
        let bad = || format!("malformed page line {:?}", line.get(..60).unwrap_or(line));
        let mut fields = line.splitn(4, ' ');
        let (Some(id), Some(cursor), Some(deleted), Some(data)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let n: i64 = id.parse().map_err(|_| bad())?;
        let deleted = match deleted {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        if let Some(p) = prev {
            sorted &= p < (cursor, n);
        }
        prev = Some((cursor, n));
        records.push(Record {
            pk: id.to_string(),
            cursor: Some(cursor.to_string()),
            deleted,
            data: data.to_string(),
        });
    }
    // SQLite keeps a subquery's order inside group_concat in practice, but does not
    // promise it; checking is cheap and sorting makes it a guarantee.
    if !sorted {
        records.sort_by(|a, b| {
            (a.cursor.as_deref(), a.pk.parse::<i64>().unwrap_or(0))
                .cmp(&(b.cursor.as_deref(), b.pk.parse::<i64>().unwrap_or(0)))
        });
    }
    Ok(records)
}

/// Splits an aggregated SQLite key page (ids separated by spaces).
fn split_ids(text: &str) -> std::result::Result<Vec<i64>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(' ')
        .map(|id| {
            id.parse::<i64>().map_err(|_| {
                format!(
                    "malformed id {:?} in a key page",
                    id.get(..30).unwrap_or(id)
                )
            })
        })
        .collect()
}

/// A boundary row `(id, cursor)` as a `(cursor, id)` key.
fn to_key<R: Row>(row: &R) -> Result<(String, i64), sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((row.try_get(1)?, row.try_get(0)?))
}

/// A page row `(id, cursor, deleted, json)` as a record.
fn to_record<R: Row>(row: &R) -> Result<Record, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: i64 = row.try_get(0)?;
    let cursor: String = row.try_get(1)?;
    let deleted: i64 = row.try_get(2)?;
    let data: String = row.try_get(3)?;
    Ok(Record {
        pk: id.to_string(),
        cursor: Some(cursor),
        deleted: deleted != 0,
        data,
    })
}

fn scrub(message: String, secret: Option<&str>) -> String {
    match secret.filter(|s| !s.is_empty()) {
        Some(s) => message.replace(s, "***"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::{split_ids, split_page};

    #[test]
    fn splits_and_orders_pages() {
        let text = "2 2024-01-01T00:00:00.000000Z 1 {\"id\":2}\n1 2024-01-01T00:00:00.000000Z 0 {\"id\":1,\"s\":\"a b\"}";
        let r = split_page(text).expect("valid");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].pk, "1");
        assert_eq!(r[0].data, "{\"id\":1,\"s\":\"a b\"}");
        assert_eq!((r[0].deleted, r[1].deleted), (false, true));
        assert!(split_page("").expect("empty").is_empty());
        assert!(split_page("x").is_err());
        assert!(split_page("1 2024-01-01T00:00:00.000000Z yes {}").is_err());
        assert_eq!(split_ids("3 1 2").expect("valid"), vec![3, 1, 2]);
        assert!(split_ids("").expect("empty").is_empty());
        assert!(split_ids("1 x").is_err());
    }
}
