//! The embedded SQLite warehouse: a table per stream, upsert by primary key, and the state
//! table in the same file, committed in the same transaction as the records it covers.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use tributary_sdk::host::{KeyBatch, RecordBatch};

use super::{
    io_err, legacy_table_name, state_key_is_of, table_name, table_prefix, Destination,
    DestinationError, MarkedRow, Row, SchemaMap, StateMap, ViewRows,
};
use crate::views::{self, Client360Sources, Dialect, CLIENT_360};

/// The SQLite warehouse.
pub struct SqliteDestination {
    conn: Connection,
    in_txn: bool,
    tables: HashSet<String>,
    /// Open snapshots: data table → the temporary table of keys seen.
    snapshots: HashMap<String, String>,
}

const STATE_DDL: &str = "CREATE TABLE IF NOT EXISTS _tributary_state (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, stream)
)";

/// The schema each stream was last discovered with (see [`Destination::save_schemas`]).
const SCHEMAS_DDL: &str = "CREATE TABLE IF NOT EXISTS _tributary_schemas (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    schema TEXT NOT NULL,
    PRIMARY KEY (source, stream)
)";

impl SqliteDestination {
    /// Opens (creating if needed) the warehouse file.
    pub fn open(path: &Path) -> Result<Self, DestinationError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(io_err(format!("cannot create {}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        // WAL keeps readers unblocked while we write. synchronous=NORMAL in WAL mode never
        // loses a committed transaction to a process crash (kill -9); on power loss the
        // newest transactions may roll back, but records and state roll back together.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        conn.execute_batch(STATE_DDL)?;
        // Seen-key tables of snapshots are TEMP: private to this connection, gone with
        // it, so a run killed mid-snapshot leaves nothing that could mark a row later.
        conn.pragma_update(None, "temp_store", "FILE")?;
        Ok(SqliteDestination {
            conn,
            in_txn: false,
            tables: HashSet::new(),
            snapshots: HashMap::new(),
        })
    }

    fn table_exists(&self, table: &str) -> Result<bool, DestinationError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Renames a table written under the old `<source>_<stream>` scheme when it holds
    /// exactly this stream's rows, so an existing warehouse keeps its data and state.
    fn migrate_legacy(
        &mut self,
        source: &str,
        stream: &str,
        table: &str,
    ) -> Result<(), DestinationError> {
        let legacy = legacy_table_name(source, stream);
        if legacy == table || self.table_exists(table)? || !self.table_exists(&legacy)? {
            return Ok(());
        }
        let foreign: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM \"{legacy}\" WHERE _source <> ?1 OR _stream <> ?2"),
            params![source, stream],
            |r| r.get(0),
        )?;
        if foreign > 0 {
            tracing::warn!(
                legacy = %legacy,
                table,
                "the old table {legacy} also holds rows of another stream (names used to collide); left in place. Re-read this stream with `tributary run --full-refresh --source {source} --stream {stream}`"
            );
            return Ok(());
        }
        self.conn
            .execute_batch(&format!("ALTER TABLE \"{legacy}\" RENAME TO \"{table}\""))?;
        tracing::info!(from = %legacy, to = table, "renamed a table to the new naming scheme");
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DestinationError> {
        if !self.in_txn {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_txn = true;
        }
        Ok(())
    }

    fn ensure_table(
        &mut self,
        source: &str,
        stream: &str,
        table: &str,
    ) -> Result<(), DestinationError> {
        if self.tables.contains(table) {
            return Ok(());
        }
        self.migrate_legacy(source, stream, table)?;
        // WITHOUT ROWID: the primary key is the only index, so an upsert touches one b-tree.
        self.conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (
                _pk TEXT PRIMARY KEY NOT NULL,
                _source TEXT NOT NULL,
                _stream TEXT NOT NULL,
                _cursor TEXT,
                _extracted_at TEXT NOT NULL,
                _deleted INTEGER NOT NULL DEFAULT 0,
                _violations TEXT,
                data TEXT NOT NULL
            ) WITHOUT ROWID"
        ))?;
        // Warehouses written before schema validation lack the column.
        let has_violations: bool = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '_violations'"
            ),
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has_violations {
            self.conn.execute_batch(&format!(
                "ALTER TABLE \"{table}\" ADD COLUMN _violations TEXT"
            ))?;
        }
        self.tables.insert(table.to_string());
        Ok(())
    }
}

impl SqliteDestination {
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
        self.migrate_legacy(source, stream, &table)?;
        let update = format!(
            "UPDATE \"{table}\" SET _deleted = 1, _extracted_at = ?1
             WHERE _deleted = 0 AND NOT EXISTS (SELECT 1 FROM temp.\"{seen}\" s WHERE s.k = \"{table}\"._pk)"
        );
        let marked = match (self.table_exists(&table)?, listed) {
            (false, _) => 0,
            (true, None) => self.conn.execute(&update, [noticed_at])? as u64,
            (true, Some(each)) => {
                let mut stmt = self
                    .conn
                    .prepare(&format!("{update} RETURNING _pk, _cursor, data"))?;
                let mut rows = stmt.query([noticed_at])?;
                let mut n = 0u64;
                while let Some(r) = rows.next()? {
                    each(MarkedRow {
                        pk: r.get(0)?,
                        cursor: r.get(1)?,
                        data: r.get(2)?,
                    });
                    n += 1;
                }
                n
            }
        };
        self.conn
            .execute_batch(&format!("DROP TABLE IF EXISTS temp.\"{seen}\""))?;
        Ok(marked)
    }
}

impl Destination for SqliteDestination {
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
        self.ensure_table(source, stream, &table)?;
        if let Some(seen) = self.snapshots.get(&table) {
            let mut stmt = self.conn.prepare_cached(&format!(
                "INSERT OR IGNORE INTO temp.\"{seen}\" (k) VALUES (?1)"
            ))?;
            for r in batch.iter() {
                stmt.execute([r.pk])?;
            }
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT INTO \"{table}\" (_pk, _source, _stream, _cursor, _extracted_at, _deleted, _violations, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(_pk) DO UPDATE SET
                _cursor = excluded._cursor,
                _extracted_at = excluded._extracted_at,
                _deleted = excluded._deleted,
                _violations = excluded._violations,
                data = excluded.data"
        ))?;
        let mut flagged = violations.iter().peekable();
        for (i, r) in batch.iter().enumerate() {
            let flag = flagged.next_if(|(at, _)| *at == i).map(|(_, v)| v.as_str());
            stmt.execute(params![
                r.pk,
                source,
                stream,
                r.cursor,
                extracted_at,
                r.deleted,
                flag,
                r.data
            ])?;
        }
        Ok(())
    }

    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError> {
        self.begin()?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.conn
            .prepare_cached(
                "INSERT INTO _tributary_state (source, stream, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(source, stream) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )?
            .execute(params![source, stream, state, now])?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DestinationError> {
        if self.in_txn {
            self.conn.execute_batch("COMMIT")?;
            self.in_txn = false;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if self.in_txn {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.in_txn = false;
        }
        // Tables created in the rolled-back transaction are gone too.
        self.tables.clear();
        // Seen-key tables created in the rolled-back transaction are gone; a snapshot
        // cannot survive a rollback anyway (its records were dropped).
        for (_, seen) in self.snapshots.drain() {
            let _ = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS temp.\"{seen}\""));
        }
    }

    fn load_state(&self) -> Result<StateMap, DestinationError> {
        let mut out = StateMap::new();
        let mut stmt = self.conn.prepare(
            "SELECT source, stream, state FROM _tributary_state ORDER BY source, stream",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (source, stream, state) = row?;
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
        let keys: Vec<(String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT source, stream FROM _tributary_state WHERE ?1 IS NULL OR source = ?1",
            )?;
            let rows = stmt.query_map(params![source], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut n = 0;
        for (src, key) in keys {
            if stream.is_none_or(|s| state_key_is_of(&key, s)) {
                n += self.conn.execute(
                    "DELETE FROM _tributary_state WHERE source = ?1 AND stream = ?2",
                    params![src, key],
                )?;
            }
        }
        Ok(n)
    }

    fn begin_snapshot(&mut self, source: &str, stream: &str) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        self.begin()?;
        let seen = format!("seen:{table}");
        self.conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.\"{seen}\";
             CREATE TEMP TABLE \"{seen}\" (k TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
        ))?;
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
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO temp.\"{seen}\" (k) VALUES (?1)"
        ))?;
        for k in keys.iter() {
            stmt.execute([k])?;
        }
        Ok(())
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
            let _ = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS temp.\"{seen}\""));
        }
    }

    fn define_client_360(&mut self, sources: &Client360Sources) -> Result<bool, DestinationError> {
        let mut present = HashSet::new();
        for t in sources.tables() {
            if self.table_exists(&t)? {
                present.insert(t);
            }
        }
        let sql = views::client_360_sql(Dialect::Sqlite, sources, &|t| present.contains(t));
        self.begin()?;
        self.conn
            .execute_batch(&format!("DROP VIEW IF EXISTS {CLIENT_360};\n{sql}"))?;
        self.commit()?;
        Ok(true)
    }

    fn read_view(&mut self, name: &str) -> Result<Option<ViewRows>, DestinationError> {
        let defined = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_schema WHERE type = 'view' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !defined {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(&format!("SELECT * FROM \"{name}\""))?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let rows = stmt
            .query_map([], |row| {
                (0..width)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Null => serde_json::Value::Null,
                            ValueRef::Integer(n) => n.into(),
                            ValueRef::Real(x) => serde_json::Number::from_f64(x)
                                .map_or(serde_json::Value::Null, serde_json::Value::Number),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned().into()
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ViewRows { columns, rows }))
    }

    fn save_schemas(
        &mut self,
        source: &str,
        schemas: &[(&str, &serde_json::Value)],
    ) -> Result<(), DestinationError> {
        let prefix = table_prefix(source);
        self.begin()?;
        self.conn.execute_batch(SCHEMAS_DDL)?;
        {
            let mut stmt = self.conn.prepare_cached(
                "INSERT INTO _tributary_schemas (source, stream, schema) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source, stream) DO UPDATE SET schema = excluded.schema",
            )?;
            for (stream, schema) in schemas {
                stmt.execute(params![prefix, stream, schema.to_string()])?;
            }
        }
        self.commit()
    }

    fn schemas(&self) -> Result<SchemaMap, DestinationError> {
        if !self.table_exists("_tributary_schemas")? {
            return Ok(SchemaMap::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT source, stream, schema FROM _tributary_schemas")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = SchemaMap::new();
        for row in rows {
            let (source, stream, text) = row?;
            // A schema that no longer parses only costs the declared-field list.
            if let Ok(schema) = serde_json::from_str(&text) {
                out.insert((source, stream), schema);
            }
        }
        Ok(out)
    }

    fn streams(&self) -> Result<Vec<(String, String)>, DestinationError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(super::stream_tables(&names))
    }

    fn for_each_row(
        &self,
        source: &str,
        stream: &str,
        each: &mut dyn FnMut(Row<'_>),
    ) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        if !self.table_exists(&table)? {
            return Ok(());
        }
        // Tables written before schema validation have no `_violations` column.
        let flagged: bool = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '_violations'"
            ),
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        let violations = if flagged { "_violations" } else { "NULL" };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT _pk, _cursor, _deleted, {violations}, data FROM \"{table}\""
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let pk = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let cursor = r
                .get_ref(1)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            let deleted = r.get::<_, bool>(2)?;
            let violations = r
                .get_ref(3)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            let data = r.get_ref(4)?.as_str().map_err(rusqlite::Error::from)?;
            each(Row {
                pk,
                cursor,
                deleted,
                violations,
                data,
            });
        }
        Ok(())
    }

    fn newest_cursor(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<String>, DestinationError> {
        let table = table_name(source, stream);
        if !self.table_exists(&table)? {
            return Ok(None);
        }
        // julianday() reads RFC 3339 with offsets, so `-08:00` and `Z` compare as
        // instants; cursors it cannot read (sequences) fall back to text order.
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT _cursor FROM \"{table}\" WHERE _deleted = 0 AND _cursor IS NOT NULL
                     ORDER BY julianday(_cursor) IS NULL, julianday(_cursor) DESC, _cursor DESC
                     LIMIT 1"
                ),
                [],
                |r| r.get(0),
            )
            .optional()?)
    }
}

impl SqliteDestination {
    /// The committed state of one stream (used by tests).
    #[allow(dead_code)]
    pub fn state_of(&self, source: &str, stream: &str) -> Result<Option<String>, DestinationError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state FROM _tributary_state WHERE source = ?1 AND stream = ?2",
                params![source, stream],
                |r| r.get(0),
            )
            .optional()?)
    }
}
