//! The PostgreSQL warehouse: the SQLite warehouse's tables, columns and guarantees in a
//! schema of a PostgreSQL database.
//!
//! Each write batch is `COPY`ed (text format) into a temporary staging table, then
//! upserted from it with one `INSERT … SELECT DISTINCT ON (_pk) … ON CONFLICT`: the last
//! version of a key in a batch wins, as in SQLite. Records, state checkpoints and snapshot
//! deletions are staged in one open transaction that [`Destination::commit`] commits, so
//! a state never becomes durable ahead of its records.
//!
//! The trait is synchronous and runs on the writer's own thread, so the destination owns
//! a current-thread tokio runtime and one connection and blocks on each statement. It
//! must never be called from inside another runtime (the host's threads are plain
//! threads).
//!
//! JSON that `jsonb` refuses although SQLite keeps it (text that is not JSON, `\u0000`
//! escapes, unpaired surrogate escapes) is kept losslessly: `data` gets JSON `null` and
//! `_raw` (bytea) the record's exact bytes. `_raw` is NULL for every other row.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Executor, Row};
use tributary_sdk::host::{KeyBatch, RecordBatch};

use super::{
    state_key_is_of, table_name, Destination, DestinationError, MarkedRow, StateMap, ViewRows,
};
use crate::views::{self, Client360Sources, Dialect, CLIENT_360};

/// COPY data is sent to the server in pieces of about this size.
const COPY_CHUNK: usize = 1 << 20;

/// The staging table of write batches: private to the connection, emptied per batch.
const STAGE: &str = "pg_temp.tributary_stage";

/// The PostgreSQL warehouse.
pub struct PostgresDestination {
    rt: tokio::runtime::Runtime,
    // A RefCell because `load_state` takes `&self`; the destination lives on one thread.
    conn: RefCell<PgConnection>,
    /// The schema, quoted.
    schema: String,
    in_txn: bool,
    tables: HashSet<String>,
    /// Open snapshots: data table → the temporary table of keys seen.
    snapshots: HashMap<String, String>,
    /// Names the next seen-key table.
    next_snapshot: u64,
    buf: Vec<u8>,
}

/// The server, port, database and schema of `url`, without user or password.
pub fn postgres_address(url: &str, schema: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "postgres://{}:{}/{} schema {schema}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => format!("postgres schema {schema}"),
    }
}

/// Whether `url` parses as a PostgreSQL URL; the error never repeats it.
pub fn postgres_url_problem(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("the URL must start with postgres:// or postgresql://".into());
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|_| "the URL is not a valid PostgreSQL URL".into())
}

/// A PostgreSQL failure as a destination error. Only the server's primary message is
/// kept, cut before any quoted value: details and context can quote record contents.
fn pg(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DestinationError {
    let context = context.into();
    move |e| {
        let message = match &e {
            sqlx::Error::Database(db) => {
                let m = db.message();
                let m = m.split_once(": \"").map_or(m, |(head, _)| head);
                match db.code() {
                    Some(code) => format!("{m} (SQLSTATE {code})"),
                    None => m.to_string(),
                }
            }
            // Configuration errors never carry the URL itself (sqlx parses it first).
            other => other.to_string(),
        };
        DestinationError::Postgres { context, message }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DestinationError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| DestinationError::Io {
            context: "cannot start the PostgreSQL client runtime".into(),
            error,
        })
}

async fn connect(url: &str) -> Result<PgConnection, DestinationError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| DestinationError::Postgres {
            context: "connect".into(),
            message: "the URL is not a valid PostgreSQL URL".into(),
        })?
        // The pid lets a refused second run name the holder of the lock.
        .application_name(&format!("tributary (pid {})", std::process::id()))
        .disable_statement_logging();
    options.connect().await.map_err(pg("connect"))
}

/// The advisory lock key of a schema: stable across versions and machines.
fn lock_key(schema: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("tributary destination {schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A session advisory lock on a schema: one writer at a time. Held as long as its
/// connection; the server releases it when the process dies, `kill -9` included.
pub struct AdvisoryLock {
    _rt: tokio::runtime::Runtime,
    _conn: PgConnection,
}

/// Why the advisory lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AdvisoryLockError {
    /// Another process holds it.
    #[error("{what} is in use by another tributary process{holder}; wait for it to finish, or pass --wait to queue behind it (PostgreSQL advisory lock {key})")]
    Busy {
        /// What the lock protects.
        what: String,
        /// ` (tributary (pid 123))` when the holder is known.
        holder: String,
        /// The lock key.
        key: i64,
    },
    /// The server could not be asked.
    #[error("cannot lock {what}: {error}")]
    Failed {
        /// What the lock protects.
        what: String,
        /// Why.
        error: DestinationError,
    },
}

impl AdvisoryLock {
    /// Takes the lock of `schema` on its own connection. With `wait`, blocks until the
    /// holder is gone; without, fails at once naming the holder.
    pub fn acquire(url: &str, schema: &str, wait: bool) -> Result<Self, AdvisoryLockError> {
        let what = format!("destination {}", postgres_address(url, schema));
        let failed = |error| AdvisoryLockError::Failed {
            what: what.clone(),
            error,
        };
        let rt = runtime().map_err(failed)?;
        let key = lock_key(schema);
        let outcome = rt.block_on(async {
            let mut conn = connect(url).await?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await
                .map_err(pg("advisory lock"))?;
            if got {
                return Ok(Ok(conn));
            }
            // pg_locks splits a bigint key into two oids.
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 LIMIT 1",
            )
            .bind((key as u64 >> 32) as i64)
            .bind((key as u64 & 0xffff_ffff) as i64)
            .fetch_optional(&mut conn)
            .await
            .map_err(pg("advisory lock holder"))?;
            let holder = holder
                .filter(|h| !h.is_empty())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            if !wait {
                return Ok(Err(holder));
            }
            tracing::info!("waiting for {what}: in use by another tributary process{holder}");
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut conn)
                .await
                .map_err(pg("advisory lock"))?;
            Ok(Ok(conn))
        });
        match outcome {
            Ok(Ok(conn)) => Ok(AdvisoryLock {
                _rt: rt,
                _conn: conn,
            }),
            Ok(Err(holder)) => Err(AdvisoryLockError::Busy { what, holder, key }),
            Err(error) => Err(failed(error)),
        }
    }
}

impl PostgresDestination {
    /// Connects, creating the schema and the state table if needed.
    pub fn open(url: &str, schema: &str) -> Result<Self, DestinationError> {
        let rt = runtime()?;
        let quoted = format!("\"{schema}\"");
        let conn = rt.block_on(async {
            let mut conn = connect(url).await?;
            // jsonb keeps non-ASCII escapes only in a UTF-8 database.
            let encoding: String = sqlx::query_scalar("SHOW server_encoding")
                .fetch_one(&mut conn)
                .await
                .map_err(pg("open"))?;
            if encoding != "UTF8" {
                return Err(DestinationError::Postgres {
                    context: "open".into(),
                    message: format!("the database encoding is {encoding}, not UTF8"),
                });
            }
            // Concurrent first runs may race on CREATE … IF NOT EXISTS; they are also
            // refused by the advisory lock, and a rerun finds everything in place.
            conn.execute(
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {quoted};
                     CREATE TABLE IF NOT EXISTS {quoted}._tributary_state (
                        source text NOT NULL,
                        stream text NOT NULL,
                        state text NOT NULL,
                        updated_at timestamptz NOT NULL,
                        PRIMARY KEY (source, stream)
                     );
                     CREATE TABLE IF NOT EXISTS {quoted}._tributary_schemas (
                        source text NOT NULL,
                        stream text NOT NULL,
                        schema text NOT NULL,
                        PRIMARY KEY (source, stream)
                     );
                     CREATE TEMP TABLE IF NOT EXISTS tributary_stage (
                        seq bigint NOT NULL,
                        _pk text NOT NULL,
                        _cursor text,
                        _deleted boolean NOT NULL,
                        _violations text,
                        data text,
                        _raw bytea
                     ) ON COMMIT DELETE ROWS;"
                )
                .as_str(),
            )
            .await
            .map_err(pg(format!("creating schema {schema}")))?;
            Ok::<_, DestinationError>(conn)
        })?;
        Ok(PostgresDestination {
            rt,
            conn: RefCell::new(conn),
            schema: quoted,
            in_txn: false,
            tables: HashSet::new(),
            snapshots: HashMap::new(),
            next_snapshot: 0,
            buf: Vec::new(),
        })
    }

    fn exec(&mut self, sql: &str, context: &str) -> Result<u64, DestinationError> {
        let conn = self.conn.get_mut();
        self.rt
            .block_on(conn.execute(sql))
            .map(|r| r.rows_affected())
            .map_err(pg(context))
    }

    fn begin(&mut self) -> Result<(), DestinationError> {
        if !self.in_txn {
            self.exec("BEGIN", "begin")?;
            self.in_txn = true;
        }
        Ok(())
    }

    fn ensure_table(&mut self, table: &str) -> Result<(), DestinationError> {
        if self.tables.contains(table) {
            return Ok(());
        }
        // Longer names are silently truncated by PostgreSQL, and could then collide.
        if table.len() > 63 {
            return Err(DestinationError::Postgres {
                context: format!("table {table}"),
                message: "the name is longer than PostgreSQL's 63 bytes".into(),
            });
        }
        let schema = &self.schema;
        self.exec(
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.\"{table}\" (
                    _pk text PRIMARY KEY,
                    _source text NOT NULL,
                    _stream text NOT NULL,
                    _cursor text,
                    _extracted_at text NOT NULL,
                    _deleted boolean NOT NULL DEFAULT false,
                    _violations jsonb,
                    data jsonb NOT NULL,
                    _raw bytea
                )"
            ),
            &format!("creating table {table}"),
        )?;
        self.tables.insert(table.to_string());
        Ok(())
    }

    /// COPYs `self.buf` (complete text-format lines) into `target`.
    async fn copy_in(
        conn: &mut PgConnection,
        target: &str,
        columns: &str,
        buf: &[u8],
    ) -> Result<u64, sqlx::Error> {
        let mut copy = conn
            .copy_in_raw(&format!("COPY {target} ({columns}) FROM STDIN"))
            .await?;
        for chunk in buf.chunks(COPY_CHUNK) {
            if let Err(e) = copy.send(chunk).await {
                let _ = copy.abort("send failed").await;
                return Err(e);
            }
        }
        copy.finish().await
    }

    fn stage_keys(&mut self, seen: &str, keys: &KeyBatch) -> Result<(), DestinationError> {
        self.buf.clear();
        for k in keys.iter() {
            push_text(&mut self.buf, k);
            self.buf.push(b'\n');
        }
        let conn = self.conn.get_mut();
        self.rt
            .block_on(Self::copy_in(
                conn,
                &format!("pg_temp.\"{seen}\""),
                "k",
                &self.buf,
            ))
            .map_err(pg("snapshot keys"))?;
        Ok(())
    }

    /// The committed state of one stream (used by tests).
    #[allow(dead_code)]
    pub fn state_of(
        &mut self,
        source: &str,
        stream: &str,
    ) -> Result<Option<String>, DestinationError> {
        let sql = format!(
            "SELECT state FROM {}._tributary_state WHERE source = $1 AND stream = $2",
            self.schema
        );
        let conn = self.conn.get_mut();
        self.rt
            .block_on(
                sqlx::query_scalar(&sql)
                    .bind(source)
                    .bind(stream)
                    .fetch_optional(conn),
            )
            .map_err(pg("reading state"))
    }
}

/// Appends `s` as one COPY text-format field.
fn push_text(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        buf.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b => buf.push(b),
        }
    }
}

/// Appends `bytes` as one COPY text-format bytea field (hex).
fn push_bytea(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.extend_from_slice(b"\\\\x");
    for b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Whether `jsonb` accepts `text`: it must be JSON, and jsonb also refuses `\u0000`
/// (PostgreSQL text cannot hold NUL) and escapes of unpaired UTF-16 surrogates.
pub(super) fn jsonb_accepts(text: &str) -> bool {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return false;
    }
    let b = text.as_bytes();
    let hex_at = |i: usize| -> Option<u32> {
        let digits = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    // In valid JSON a backslash only occurs inside strings, always starting an escape.
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(cp) = hex_at(i + 2) else {
            return false;
        };
        match cp {
            0 | 0xDC00..=0xDFFF => return false,
            0xD800..=0xDBFF => {
                let low = (b.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex_at(i + 8))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return false;
                }
                i += 12;
            }
            _ => i += 6,
        }
    }
    true
}

impl PostgresDestination {
    /// Closes the snapshot of `source.stream` and marks its unseen live rows deleted,
    /// handing each to `listed` when given.
    fn mark_unseen(
        &mut self,
        source: &str,
        stream: &str,
        noticed_at: &str,
        listed: Option<&mut dyn FnMut(MarkedRow)>,
    ) -> Result<u64, DestinationError> {
        let table = table_name(source, stream);
        let Some(seen) = self.snapshots.remove(&table) else {
            return Ok(0);
        };
        self.begin()?;
        let schema = &self.schema;
        let target = format!("{schema}.\"{table}\"");
        let update = format!(
            "UPDATE {target} AS t SET _deleted = true, _extracted_at = $1
             WHERE NOT t._deleted AND NOT EXISTS (SELECT 1 FROM pg_temp.\"{seen}\" s WHERE s.k = t._pk)"
        );
        let conn = self.conn.get_mut();
        let marked = self
            .rt
            .block_on(async {
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(&target)
                    .fetch_one(&mut *conn)
                    .await?;
                let marked = if exists {
                    // Temporary tables have no statistics until analysed; without them
                    // the planner may pick a nested loop over millions of keys.
                    conn.execute(format!("ANALYZE pg_temp.\"{seen}\"").as_str())
                        .await?;
                    match listed {
                        None => sqlx::query(&update)
                            .bind(noticed_at)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected(),
                        Some(each) => {
                            // `data` is NULL where `_raw` keeps what jsonb refused.
                            let returning = format!(
                                "{update} RETURNING t._pk, t._cursor, COALESCE(t.data::text, convert_from(t._raw, 'UTF8'))"
                            );
                            let rows: Vec<(String, Option<String>, Option<String>)> =
                                sqlx::query_as(&returning)
                                    .bind(noticed_at)
                                    .fetch_all(&mut *conn)
                                    .await?;
                            let n = rows.len() as u64;
                            for (pk, cursor, data) in rows {
                                each(MarkedRow {
                                    pk,
                                    cursor,
                                    data: data.unwrap_or_else(|| "null".to_string()),
                                });
                            }
                            n
                        }
                    }
                } else {
                    0
                };
                conn.execute(format!("DROP TABLE pg_temp.\"{seen}\"").as_str())
                    .await?;
                Ok(marked)
            })
            .map_err(pg(format!("marking the rows of {table} not seen")))?;
        Ok(marked)
    }
}

impl Destination for PostgresDestination {
    fn write_flagged(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        violations: &[(usize, String)],
        extracted_at: &str,
    ) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        self.begin()?;
        self.ensure_table(&table)?;
        self.buf.clear();
        let mut flagged = violations.iter().peekable();
        for (i, r) in batch.iter().enumerate() {
            let flag = flagged.next_if(|(at, _)| *at == i).map(|(_, v)| v.as_str());
            let buf = &mut self.buf;
            // The batch index orders versions of a key: the last one wins.
            let _ = write!(buf, "{i}\t");
            push_text(buf, r.pk);
            buf.push(b'\t');
            match r.cursor {
                Some(c) => push_text(buf, c),
                None => buf.extend_from_slice(b"\\N"),
            }
            buf.extend_from_slice(if r.deleted { b"\tt\t" } else { b"\tf\t" });
            match flag {
                Some(v) => push_text(buf, v),
                None => buf.extend_from_slice(b"\\N"),
            }
            buf.push(b'\t');
            if jsonb_accepts(r.data) {
                push_text(buf, r.data);
                buf.extend_from_slice(b"\t\\N\n");
            } else {
                buf.extend_from_slice(b"\\N\t");
                push_bytea(buf, r.data.as_bytes());
                buf.push(b'\n');
            }
        }
        let schema = &self.schema;
        let upsert = format!(
            "INSERT INTO {schema}.\"{table}\" AS t
                (_pk, _source, _stream, _cursor, _extracted_at, _deleted, _violations, data, _raw)
             SELECT DISTINCT ON (_pk) _pk, $1::text, $2::text, _cursor, $3::text, _deleted, _violations::jsonb,
                    COALESCE(data::jsonb, 'null'::jsonb), _raw
             FROM {STAGE} ORDER BY _pk, seq DESC
             ON CONFLICT (_pk) DO UPDATE SET
                _cursor = EXCLUDED._cursor,
                _extracted_at = EXCLUDED._extracted_at,
                _deleted = EXCLUDED._deleted,
                _violations = EXCLUDED._violations,
                data = EXCLUDED.data,
                _raw = EXCLUDED._raw"
        );
        let seen = self
            .snapshots
            .get(&table)
            .map(|seen| format!("INSERT INTO pg_temp.\"{seen}\" (k) SELECT _pk FROM {STAGE}"));
        let conn = self.conn.get_mut();
        let buf = &self.buf;
        self.rt
            .block_on(async {
                conn.execute(format!("TRUNCATE {STAGE}").as_str()).await?;
                Self::copy_in(
                    conn,
                    STAGE,
                    "seq, _pk, _cursor, _deleted, _violations, data, _raw",
                    buf,
                )
                .await?;
                if let Some(seen) = &seen {
                    conn.execute(seen.as_str()).await?;
                }
                sqlx::query(&upsert)
                    .bind(source)
                    .bind(stream)
                    .bind(extracted_at)
                    .execute(&mut *conn)
                    .await
            })
            .map_err(pg(format!("writing table {table}")))?;
        Ok(())
    }

    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError> {
        self.begin()?;
        let sql = format!(
            "INSERT INTO {}._tributary_state (source, stream, state, updated_at)
             VALUES ($1, $2, $3, clock_timestamp())
             ON CONFLICT (source, stream) DO UPDATE
             SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
            self.schema
        );
        let conn = self.conn.get_mut();
        self.rt
            .block_on(
                sqlx::query(&sql)
                    .bind(source)
                    .bind(stream)
                    .bind(state)
                    .execute(conn),
            )
            .map_err(pg(format!("staging the state of {source}.{stream}")))?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DestinationError> {
        if self.in_txn {
            // Whatever COMMIT answers, the transaction is over.
            self.in_txn = false;
            self.exec("COMMIT", "commit")?;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if self.in_txn {
            let _ = self.exec("ROLLBACK", "rollback");
            self.in_txn = false;
        }
        // Tables created in the rolled-back transaction are gone too.
        self.tables.clear();
        // Seen-key tables created in the rolled-back transaction are gone; a snapshot
        // cannot survive a rollback anyway (its records were dropped).
        for (_, seen) in std::mem::take(&mut self.snapshots) {
            let _ = self.exec(
                &format!("DROP TABLE IF EXISTS pg_temp.\"{seen}\""),
                "dropping a snapshot",
            );
        }
    }

    fn save_schemas(
        &mut self,
        source: &str,
        schemas: &[(&str, &serde_json::Value)],
    ) -> Result<(), DestinationError> {
        let prefix = super::table_prefix(source);
        let sql = format!(
            "INSERT INTO {}._tributary_schemas (source, stream, schema) VALUES ($1, $2, $3)
             ON CONFLICT (source, stream) DO UPDATE SET schema = EXCLUDED.schema",
            self.schema
        );
        self.begin()?;
        for (stream, schema) in schemas {
            let conn = self.conn.get_mut();
            self.rt
                .block_on(
                    sqlx::query(&sql)
                        .bind(&prefix)
                        .bind(*stream)
                        .bind(schema.to_string())
                        .execute(conn),
                )
                .map_err(pg(format!("keeping the schema of {source}.{stream}")))?;
        }
        self.commit()
    }

    fn schemas(&self) -> Result<super::SchemaMap, DestinationError> {
        let sql = format!(
            "SELECT source, stream, schema FROM {}._tributary_schemas",
            self.schema
        );
        let rows = {
            let mut conn = self.conn.borrow_mut();
            self.rt
                .block_on(sqlx::query(&sql).fetch_all(&mut *conn))
                .map_err(pg("reading schemas"))?
        };
        let mut out = super::SchemaMap::new();
        for row in rows {
            let (source, stream, text): (String, String, String) = (
                row.try_get(0).map_err(pg("reading schemas"))?,
                row.try_get(1).map_err(pg("reading schemas"))?,
                row.try_get(2).map_err(pg("reading schemas"))?,
            );
            // A schema that no longer parses only costs the declared-field list.
            if let Ok(schema) = serde_json::from_str(&text) {
                out.insert((source, stream), schema);
            }
        }
        Ok(out)
    }

    fn load_state(&self) -> Result<StateMap, DestinationError> {
        let sql = format!(
            "SELECT source, stream, state FROM {}._tributary_state ORDER BY source, stream",
            self.schema
        );
        let rows = {
            let mut conn = self.conn.borrow_mut();
            self.rt
                .block_on(sqlx::query(&sql).fetch_all(&mut *conn))
                .map_err(pg("reading state"))?
        };
        let mut out = StateMap::new();
        for row in rows {
            let (source, stream, state): (String, String, String) = (
                row.try_get(0).map_err(pg("reading state"))?,
                row.try_get(1).map_err(pg("reading state"))?,
                row.try_get(2).map_err(pg("reading state"))?,
            );
            let value = super::parse_state(&source, &stream, &state)?;
            out.entry(source).or_default().insert(stream, value);
        }
        Ok(out)
    }

    fn reset_state(
        &mut self,
        source: Option<&str>,
        stream: Option<&str>,
    ) -> Result<usize, DestinationError> {
        let schema = self.schema.clone();
        let select = format!(
            "SELECT source, stream FROM {schema}._tributary_state WHERE $1::text IS NULL OR source = $1"
        );
        let delete =
            format!("DELETE FROM {schema}._tributary_state WHERE source = $1 AND stream = $2");
        let conn = self.conn.get_mut();
        self.rt
            .block_on(async {
                let keys: Vec<(String, String)> = sqlx::query_as(&select)
                    .bind(source)
                    .fetch_all(&mut *conn)
                    .await?;
                let mut n = 0;
                for (src, key) in keys {
                    if stream.is_none_or(|s| state_key_is_of(&key, s)) {
                        n += sqlx::query(&delete)
                            .bind(&src)
                            .bind(&key)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected() as usize;
                    }
                }
                Ok(n)
            })
            .map_err(pg("resetting state"))
    }

    fn begin_snapshot(&mut self, source: &str, stream: &str) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        self.begin()?;
        if let Some(old) = self.snapshots.remove(&table) {
            self.exec(
                &format!("DROP TABLE IF EXISTS pg_temp.\"{old}\""),
                "restarting a snapshot",
            )?;
        }
        self.next_snapshot += 1;
        let seen = format!("tributary_seen_{}", self.next_snapshot);
        // No key constraint: duplicates are harmless to the anti-join, and COPY can then
        // fill the table directly. Temporary, so a killed run leaves nothing behind.
        self.exec(
            &format!("CREATE TEMP TABLE \"{seen}\" (k text NOT NULL)"),
            &format!("opening a snapshot of {table}"),
        )?;
        self.snapshots.insert(table, seen);
        Ok(())
    }

    fn snapshot_keys(
        &mut self,
        source: &str,
        stream: &str,
        keys: &KeyBatch,
    ) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        let Some(seen) = self.snapshots.get(&table).cloned() else {
            return Ok(());
        };
        self.begin()?;
        self.stage_keys(&seen, keys)
    }

    fn finish_snapshot(
        &mut self,
        source: &str,
        stream: &str,
        noticed_at: &str,
        marked: Option<&mut dyn FnMut(MarkedRow)>,
    ) -> Result<u64, DestinationError> {
        self.mark_unseen(source, stream, noticed_at, marked)
    }

    fn abandon_snapshot(&mut self, source: &str, stream: &str) {
        if let Some(seen) = self.snapshots.remove(&table_name(source, stream)) {
            let _ = self.exec(
                &format!("DROP TABLE IF EXISTS pg_temp.\"{seen}\""),
                "abandoning a snapshot",
            );
        }
    }

    fn define_client_360(&mut self, sources: &Client360Sources) -> Result<bool, DestinationError> {
        let schema = self.schema.clone();
        let present: HashSet<String> = {
            let conn = self.conn.get_mut();
            let names: Vec<String> = self
                .rt
                .block_on(
                    sqlx::query_scalar(
                        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                    )
                    .bind(schema.trim_matches('"'))
                    .fetch_all(&mut *conn),
                )
                .map_err(pg("listing tables"))?;
            names.into_iter().collect()
        };
        let sql = views::client_360_sql(Dialect::Postgres, sources, &|t| present.contains(t));
        self.begin()?;
        // The view's tables are named without a schema: resolved here, once, for good.
        self.exec(
            &format!("SET LOCAL search_path TO {schema}"),
            "defining client_360",
        )?;
        self.exec(
            &format!("DROP VIEW IF EXISTS {schema}.{CLIENT_360}"),
            "defining client_360",
        )?;
        self.exec(&sql, "defining client_360")?;
        self.commit()?;
        Ok(true)
    }

    fn read_view(&mut self, name: &str) -> Result<Option<ViewRows>, DestinationError> {
        let schema = self.schema.clone();
        let conn = self.conn.get_mut();
        let columns: Vec<String> = self
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns
                     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                )
                .bind(schema.trim_matches('"'))
                .bind(name)
                .fetch_all(&mut *conn),
            )
            .map_err(pg(format!("reading view {name}")))?;
        if columns.is_empty() {
            return Ok(None);
        }
        let rows = self
            .rt
            .block_on(
                sqlx::query(&format!("SELECT * FROM {schema}.\"{name}\"")).fetch_all(&mut *conn),
            )
            .map_err(pg(format!("reading view {name}")))?;
        let value = |row: &sqlx::postgres::PgRow, i: usize| -> serde_json::Value {
            use sqlx::{Column, TypeInfo};
            let kind = row.columns()[i].type_info().name().to_string();
            let v = match kind.as_str() {
                "INT8" => row
                    .try_get::<Option<i64>, _>(i)
                    .ok()
                    .flatten()
                    .map(Into::into),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)
                    .ok()
                    .flatten()
                    .map(Into::into),
                "FLOAT8" => row
                    .try_get::<Option<f64>, _>(i)
                    .ok()
                    .flatten()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number),
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)
                    .ok()
                    .flatten()
                    .map(Into::into),
                _ => row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .map(Into::into),
            };
            v.unwrap_or(serde_json::Value::Null)
        };
        let rows = rows
            .iter()
            .map(|row| (0..columns.len()).map(|i| value(row, i)).collect())
            .collect();
        Ok(Some(ViewRows { columns, rows }))
    }

    fn streams(&self) -> Result<Vec<(String, String)>, DestinationError> {
        let mut conn = self.conn.borrow_mut();
        let names: Vec<String> = self
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .bind(self.schema.trim_matches('"'))
                .fetch_all(&mut *conn),
            )
            .map_err(pg("listing tables"))?;
        Ok(super::stream_tables(&names))
    }

    fn for_each_row(
        &self,
        source: &str,
        stream: &str,
        each: &mut dyn FnMut(super::Row<'_>),
    ) -> Result<(), DestinationError> {
        /// Rows per page: memory stays bounded whatever the table's size.
        const PAGE: i64 = 10_000;
        let table = table_name(source, stream);
        let schema = &self.schema;
        let context = format!("reading {table}");
        let mut conn = self.conn.borrow_mut();
        let exists: bool = self
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                     WHERE table_schema = $1 AND table_name = $2)",
                )
                .bind(schema.trim_matches('"'))
                .bind(&table)
                .fetch_one(&mut *conn),
            )
            .map_err(pg(context.clone()))?;
        if !exists {
            return Ok(());
        }
        // Keyset pages by key; what jsonb refused is handed out as its original text.
        let sql = format!(
            "SELECT _pk, _cursor, _deleted, _violations::text,
                    COALESCE(convert_from(_raw, 'UTF8'), data::text)
             FROM {schema}.\"{table}\" WHERE _pk > $1 ORDER BY _pk LIMIT {PAGE}"
        );
        let mut after = String::new();
        loop {
            let rows = self
                .rt
                .block_on(sqlx::query(&sql).bind(&after).fetch_all(&mut *conn))
                .map_err(pg(context.clone()))?;
            for r in &rows {
                let pk: String = r.try_get(0).map_err(pg(context.clone()))?;
                let cursor: Option<String> = r.try_get(1).map_err(pg(context.clone()))?;
                let deleted: bool = r.try_get(2).map_err(pg(context.clone()))?;
                let violations: Option<String> = r.try_get(3).map_err(pg(context.clone()))?;
                let data: String = r.try_get(4).map_err(pg(context.clone()))?;
                each(super::Row {
                    pk: &pk,
                    cursor: cursor.as_deref(),
                    deleted,
                    violations: violations.as_deref(),
                    data: &data,
                });
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => {
                    after = last.try_get(0).map_err(pg(context.clone()))?;
                }
                _ => return Ok(()),
            }
        }
    }
}
