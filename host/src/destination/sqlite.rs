//! The embedded SQLite warehouse: a table per stream, upsert by primary key, and the state
//! table in the same file, committed in the same transaction as the records it covers.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use tributary_sdk::host::RecordBatch;

use super::{io_err, table_name, Destination, DestinationError, StateMap};

/// The SQLite warehouse.
pub struct SqliteDestination {
    conn: Connection,
    in_txn: bool,
    tables: HashSet<String>,
}

const STATE_DDL: &str = "CREATE TABLE IF NOT EXISTS _tributary_state (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
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
        Ok(SqliteDestination {
            conn,
            in_txn: false,
            tables: HashSet::new(),
        })
    }

    fn begin(&mut self) -> Result<(), DestinationError> {
        if !self.in_txn {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_txn = true;
        }
        Ok(())
    }

    fn ensure_table(&mut self, table: &str) -> Result<(), DestinationError> {
        if self.tables.contains(table) {
            return Ok(());
        }
        // WITHOUT ROWID: the primary key is the only index, so an upsert touches one b-tree.
        self.conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (
                _pk TEXT PRIMARY KEY NOT NULL,
                _source TEXT NOT NULL,
                _stream TEXT NOT NULL,
                _cursor TEXT,
                _extracted_at TEXT NOT NULL,
                _deleted INTEGER NOT NULL DEFAULT 0,
                data TEXT NOT NULL
            ) WITHOUT ROWID"
        ))?;
        self.tables.insert(table.to_string());
        Ok(())
    }
}

impl Destination for SqliteDestination {
    fn write(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        extracted_at: &str,
    ) -> Result<(), DestinationError> {
        let table = table_name(source, stream);
        self.begin()?;
        self.ensure_table(&table)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT INTO \"{table}\" (_pk, _source, _stream, _cursor, _extracted_at, _deleted, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(_pk) DO UPDATE SET
                _cursor = excluded._cursor,
                _extracted_at = excluded._extracted_at,
                _deleted = excluded._deleted,
                data = excluded.data"
        ))?;
        for r in batch.iter() {
            stmt.execute(params![
                r.pk,
                source,
                stream,
                r.cursor,
                extracted_at,
                r.deleted,
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
            let value = serde_json::from_str(&state).map_err(|e| DestinationError::BadState {
                source_name: source.clone(),
                stream: stream.clone(),
                message: e.to_string(),
            })?;
            out.entry(source).or_default().insert(stream, value);
        }
        Ok(out)
    }

    fn reset_state(
        &mut self,
        source: Option<&str>,
        stream: Option<&str>,
    ) -> Result<usize, DestinationError> {
        let n = self.conn.execute(
            "DELETE FROM _tributary_state WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR stream = ?2)",
            params![source, stream],
        )?;
        Ok(n)
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
