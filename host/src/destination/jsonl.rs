//! JSONL files: one append-only file per stream, plus `_state.json` beside them.
//!
//! Each line is `{"_source":…,"_stream":…,"_pk":…,"_cursor":…,"_extracted_at":…,
//! "_deleted":…,"data":{…}}`. A commit flushes and fsyncs every data file, then atomically
//! replaces `_state.json` with the stream states **and the byte length of each data file**.
//! On open, any bytes past the committed length (written after the last commit by a run
//! that crashed) are truncated away, so a resumed run appends each record exactly once.
//! Consumers that want the newest version of a record take the last line per `_pk`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tributary_sdk::host::{KeyBatch, RecordBatch};
use tributary_sdk::Record;

use super::{
    io_err, legacy_table_name, state_key_is_of, table_name, table_prefix, Destination,
    DestinationError, MarkedRow, Row, SchemaMap, StateMap,
};
use crate::credentials::write_atomic;

const STATE_FILE: &str = "_state.json";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct StateFile {
    /// source → stream → state
    #[serde(default)]
    state: StateMap,
    /// data file name → committed length in bytes
    #[serde(default)]
    files: BTreeMap<String, u64>,
    /// table prefix → stream → the JSON Schema it was last discovered with
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    schemas: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

pub(super) struct OpenFile {
    pub(super) writer: BufWriter<File>,
    /// Bytes written so far (committed + staged).
    len: u64,
    /// `len` when the stream's latest state checkpoint was staged: the bytes that state
    /// covers. While a stream checkpoints, a commit makes only this much durable, so a
    /// crash never leaves committed lines past the committed state (the rerun would
    /// append them again).
    covered: u64,
    /// Whether the stream staged a state since the file was opened (or last sealed).
    checkpointed: bool,
}

/// The JSONL destination.
pub struct JsonlDestination {
    dir: PathBuf,
    committed: StateFile,
    staged: StateFile,
    pub(super) files: BTreeMap<String, OpenFile>,
    line: Vec<u8>,
    /// Open snapshots: data file name → what it has seen so far.
    snapshots: HashMap<String, Snapshot>,
}

/// An open snapshot of one data file.
enum Snapshot {
    /// The file was empty when the snapshot began, so every line in it at the end was
    /// written during the snapshot: nothing can have vanished, and nothing is tracked.
    FromEmpty,
    /// The keys seen, on disk: a listing of millions of keys must not be held in memory.
    Tracked(SeenStore),
}

/// A private SQLite file beside the data file holding the keys a snapshot has seen and,
/// when it completes, the newest line of every key in the data file; memory stays at
/// SQLite's page cache whatever the number of keys. Removed when the snapshot ends (and
/// at the next open, after a crash).
struct SeenStore {
    conn: rusqlite::Connection,
    path: PathBuf,
}

const SNAPSHOT_SUFFIX: &str = ".snapshot.sqlite";

impl SeenStore {
    fn create(path: PathBuf) -> Result<SeenStore, DestinationError> {
        let _ = fs::remove_file(&path);
        let sql = |e: rusqlite::Error| DestinationError::Io {
            context: format!("cannot create {}", path.display()),
            error: std::io::Error::other(e.to_string()),
        };
        let conn = rusqlite::Connection::open(&path).map_err(sql)?;
        // Scratch data: losing it in a crash loses nothing (the snapshot is redone).
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -8192;
             CREATE TABLE seen (k TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE last (k TEXT PRIMARY KEY, off INTEGER NOT NULL, len INTEGER NOT NULL, del INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .map_err(sql)?;
        Ok(SeenStore { conn, path })
    }

    /// The error constructor for this store's SQLite errors.
    fn errors(&self) -> impl Fn(rusqlite::Error) -> DestinationError {
        let context = format!("snapshot keys in {}", self.path.display());
        move |e| DestinationError::Io {
            context: context.clone(),
            error: std::io::Error::other(e.to_string()),
        }
    }

    fn add<'a>(&mut self, keys: impl Iterator<Item = &'a str>) -> Result<(), DestinationError> {
        let err = self.errors();
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO seen (k) VALUES (?1)")
                .map_err(&err)?;
            for k in keys {
                insert.execute([k]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Reads the data file at `path` and returns (offset, length) of the newest line of
    /// every live key not seen, in file order.
    fn vanished(&mut self, path: &Path) -> Result<Vec<(u64, usize)>, DestinationError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("cannot open {}", path.display()))(e)),
        };
        let what = path.display().to_string();
        let err = self.errors();
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO last (k, off, len, del) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?;
            let mut failed = None;
            for_each_line(
                BufReader::with_capacity(1 << 20, file),
                &what,
                |key, offset, len, deleted| {
                    if failed.is_none() {
                        if let Err(e) = upsert.execute(rusqlite::params![
                            key,
                            offset as i64,
                            len as i64,
                            deleted
                        ]) {
                            failed = Some(e);
                        }
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(err(e));
            }
        }
        tx.commit().map_err(&err)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT off, len FROM last WHERE del = 0
                 AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.k = last.k) ORDER BY off",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as usize))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }
}

impl Drop for SeenStore {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The two fields of a line a snapshot needs to know which keys are live.
#[derive(Deserialize)]
struct LineKey {
    _pk: String,
    _deleted: bool,
}

/// What a delete line copies from the last line of its key.
#[derive(Deserialize)]
struct LineBody<'a> {
    #[serde(borrow)]
    _cursor: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `_source` and `_stream` of a line, to recognise a legacy file's owner.
#[derive(Deserialize)]
struct LineOwner {
    _source: String,
    _stream: String,
}

/// Delete lines written per batch when a snapshot closes.
const DELETE_BATCH: usize = 1000;

impl JsonlDestination {
    /// Opens the directory, discarding data written after the last commit.
    pub fn open(dir: &Path) -> Result<Self, DestinationError> {
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let state_path = dir.join(STATE_FILE);
        let committed: StateFile = match fs::read(&state_path) {
            Ok(bytes) => parse_state_file(&bytes, &state_path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(io_err(format!("cannot read {}", state_path.display()))(e)),
        };
        // Roll every data file back to its committed length.
        let entries =
            fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("cannot list {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(SNAPSHOT_SUFFIX) {
                // A snapshot's scratch keys, left by a run that stopped: it concluded
                // nothing.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if !name.ends_with(".jsonl") {
                continue;
            }
            let committed_len = committed.files.get(&name).copied().unwrap_or(0);
            let path = entry.path();
            let actual = entry
                .metadata()
                .map_err(io_err(format!("cannot stat {}", path.display())))?
                .len();
            if actual > committed_len {
                tracing::warn!(
                    file = %path.display(),
                    discarded_bytes = actual - committed_len,
                    "discarding records written after the last commit (an earlier run stopped early)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(format!("cannot open {}", path.display())))?;
                f.set_len(committed_len)
                    .and_then(|_| f.sync_all())
                    .map_err(io_err(format!("cannot truncate {}", path.display())))?;
            }
        }
        Ok(JsonlDestination {
            dir: dir.to_owned(),
            staged: committed.clone(),
            committed,
            files: BTreeMap::new(),
            line: Vec::with_capacity(4096),
            snapshots: HashMap::new(),
        })
    }

    /// Renames a file written under the old `<source>_<stream>.jsonl` scheme when its
    /// lines belong to this stream. The state file learns the new name before the
    /// rename, so a crash in between loses nothing (an unknown file would be truncated).
    fn migrate_legacy(
        &mut self,
        source: &str,
        stream: &str,
        name: &str,
    ) -> Result<(), DestinationError> {
        let legacy = format!("{}.jsonl", legacy_table_name(source, stream));
        if legacy == name
            || self.files.contains_key(name)
            || self.dir.join(name).exists()
            || !self.committed.files.contains_key(&legacy)
        {
            return Ok(());
        }
        let legacy_path = self.dir.join(&legacy);
        let first = match File::open(&legacy_path) {
            Ok(f) => {
                let mut line = String::new();
                BufReader::new(f)
                    .read_line(&mut line)
                    .map_err(io_err(format!("cannot read {}", legacy_path.display())))?;
                line
            }
            Err(_) => return Ok(()),
        };
        let owned = serde_json::from_str::<LineOwner>(first.trim())
            .is_ok_and(|o| o._source == source && o._stream == stream);
        if !owned && !first.trim().is_empty() {
            tracing::warn!(legacy = %legacy, "the old file {legacy} holds another stream's lines (names used to collide); left in place");
            return Ok(());
        }
        let len = self.committed.files.get(&legacy).copied().unwrap_or(0);
        self.committed.files.insert(name.to_string(), len);
        self.staged.files.insert(name.to_string(), len);
        self.write_state_file(&self.committed.clone())?;
        fs::rename(&legacy_path, self.dir.join(name))
            .map_err(io_err(format!("cannot rename {}", legacy_path.display())))?;
        self.committed.files.remove(&legacy);
        self.staged.files.remove(&legacy);
        self.write_state_file(&self.committed.clone())?;
        tracing::info!(from = %legacy, to = name, "renamed a file to the new naming scheme");
        Ok(())
    }

    fn write_state_file(&self, state: &StateFile) -> Result<(), DestinationError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| DestinationError::Io {
            context: "cannot serialize state".to_string(),
            error: std::io::Error::other(e.to_string()),
        })?;
        let path = self.dir.join(STATE_FILE);
        write_atomic(&path, &bytes).map_err(io_err(format!("cannot write {}", path.display())))
    }

    /// Closes the snapshot of `source.stream` and appends a deleted line for each live
    /// row it did not see, handing each to `marked` when given.
    fn mark_vanished(
        &mut self,
        source: &str,
        stream: &str,
        noticed_at: &str,
        mut marked: Option<&mut dyn FnMut(MarkedRow)>,
    ) -> Result<u64, DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
        let Some(Snapshot::Tracked(mut seen)) = self.snapshots.remove(&name) else {
            return Ok(0);
        };
        self.flush(&name)?;
        let path = self.dir.join(&name);
        let vanished = seen.vanished(&path)?;
        drop(seen);
        let mut reader =
            File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
        let mut count = 0u64;
        for chunk in vanished.chunks(DELETE_BATCH) {
            let mut records = Vec::with_capacity(chunk.len());
            let mut buf = Vec::new();
            for &(offset, len) in chunk {
                buf.resize(len, 0);
                reader
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| reader.read_exact(&mut buf))
                    .map_err(io_err(format!("cannot read {}", path.display())))?;
                let unreadable = |e: serde_json::Error| DestinationError::Io {
                    context: format!("{} has an unreadable line at byte {offset}", path.display()),
                    error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                };
                let key: LineKey = serde_json::from_slice(&buf).map_err(unreadable)?;
                let body: LineBody<'_> = serde_json::from_slice(&buf).map_err(unreadable)?;
                let cursor = body._cursor.map(|c| c.into_owned());
                if let Some(marked) = marked.as_mut() {
                    marked(MarkedRow {
                        pk: key._pk.clone(),
                        cursor: cursor.clone(),
                        data: body.data.get().to_string(),
                    });
                }
                let mut record =
                    Record::from_json(key._pk, body.data.get().to_string()).with_deleted(true);
                record.cursor = cursor;
                records.push(record);
            }
            count += records.len() as u64;
            self.write(
                source,
                stream,
                &RecordBatch::from_records(records),
                noticed_at,
            )?;
        }
        Ok(count)
    }

    /// Flushes the buffered lines of data file `name`, so that reading it sees them.
    fn flush(&mut self, name: &str) -> Result<(), DestinationError> {
        if let Some(f) = self.files.get_mut(name) {
            f.writer
                .flush()
                .map_err(io_err(format!("cannot flush {name}")))?;
        }
        Ok(())
    }

    fn file(&mut self, name: &str) -> Result<&mut OpenFile, DestinationError> {
        if !self.files.contains_key(name) {
            let path = self.dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(format!("cannot open {}", path.display())))?;
            let len = file
                .metadata()
                .map_err(io_err(format!("cannot stat {}", path.display())))?
                .len();
            self.files.insert(
                name.to_string(),
                OpenFile {
                    writer: BufWriter::with_capacity(1 << 20, file),
                    len,
                    covered: len,
                    checkpointed: false,
                },
            );
        }
        self.files
            .get_mut(name)
            .ok_or_else(|| io_err(name.to_string())(std::io::ErrorKind::NotFound.into()))
    }
}

/// Reads `_state.json`: stream states and each data file's committed length. `what` names
/// the file in the error.
fn parse_state_file(bytes: &[u8], what: &str) -> Result<StateFile, DestinationError> {
    serde_json::from_slice(bytes).map_err(|e| DestinationError::Io {
        context: format!("{what} is corrupt"),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// The committed state of a `_state.json` body (for tools and the fuzz target): stream
/// states, and data file → committed length.
pub fn read_state_file(
    bytes: &[u8],
) -> Result<(StateMap, BTreeMap<String, u64>), DestinationError> {
    parse_state_file(bytes, "_state.json").map(|f| (f.state, f.files))
}

/// The newest line of every key in a data file: key → (offset, length, deleted). Every
/// line must be one of ours; `what` names the file in the error.
pub fn scan_last_lines<R: BufRead>(
    reader: R,
    what: &str,
) -> Result<HashMap<String, (u64, usize, bool)>, DestinationError> {
    let mut keys = HashMap::new();
    for_each_line(reader, what, |key, offset, len, deleted| {
        keys.insert(key.to_string(), (offset, len, deleted));
    })?;
    Ok(keys)
}

/// Hands `(key, offset, length, deleted)` of every line of a data file to `each`, in
/// order. Every line must be one of ours; `what` names the file in the error.
fn for_each_line<R: BufRead>(
    mut reader: R,
    what: &str,
    mut each: impl FnMut(&str, u64, usize, bool),
) -> Result<(), DestinationError> {
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(format!("cannot read {what}")))?;
        if n == 0 {
            break;
        }
        let key: LineKey = serde_json::from_slice(&line).map_err(|e| DestinationError::Io {
            context: format!("{what} has an unreadable line at byte {offset}"),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        each(&key._pk, offset, n, key._deleted);
        offset += n as u64;
    }
    Ok(())
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Destination for JsonlDestination {
    fn write_flagged(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        violations: &[(usize, String)],
        extracted_at: &str,
    ) -> Result<(), DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
        self.migrate_legacy(source, stream, &name)?;
        if let Some(Snapshot::Tracked(seen)) = self.snapshots.get_mut(&name) {
            seen.add(batch.iter().map(|r| r.pk))?;
        }
        let mut line = std::mem::take(&mut self.line);
        // The prefix is the same for every record of the batch.
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(b"{\"_source\":");
        push_json_str(&mut prefix, source);
        prefix.extend_from_slice(b",\"_stream\":");
        push_json_str(&mut prefix, stream);
        prefix.extend_from_slice(b",\"_extracted_at\":");
        push_json_str(&mut prefix, extracted_at);
        let file = self.file(&name)?;
        let mut result = Ok(());
        let mut flagged = violations.iter().peekable();
        for (i, r) in batch.iter().enumerate() {
            line.clear();
            line.extend_from_slice(&prefix);
            line.extend_from_slice(b",\"_pk\":");
            push_json_str(&mut line, r.pk);
            line.extend_from_slice(b",\"_cursor\":");
            match r.cursor {
                Some(c) => push_json_str(&mut line, c),
                None => line.extend_from_slice(b"null"),
            }
            line.extend_from_slice(if r.deleted {
                b",\"_deleted\":true"
            } else {
                b",\"_deleted\":false"
            });
            // Only flagged records carry `_violations` (a JSON array of messages).
            if let Some((_, v)) = flagged.next_if(|(at, _)| *at == i) {
                line.extend_from_slice(b",\"_violations\":");
                line.extend_from_slice(v.as_bytes());
            }
            line.extend_from_slice(b",\"data\":");
            line.extend_from_slice(r.data.as_bytes());
            line.extend_from_slice(b"}\n");
            if let Err(e) = file.writer.write_all(&line) {
                result = Err(io_err(format!("cannot write {name}"))(e));
                break;
            }
            file.len += line.len() as u64;
        }
        self.line = line;
        result
    }

    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError> {
        let value = super::parse_state(source, stream, state)?;
        self.staged
            .state
            .entry(source.to_string())
            .or_default()
            .insert(stream.to_string(), value);
        // The state key of a narrowed read is `stream [scope]`; the file is the stream's.
        let plain = stream.split(" [").next().unwrap_or(stream);
        if let Some(f) = self
            .files
            .get_mut(&format!("{}.jsonl", table_name(source, plain)))
        {
            f.covered = f.len;
            f.checkpointed = true;
        }
        Ok(())
    }

    fn seal(&mut self, source: &str) {
        let prefix = format!("{}__", super::table_prefix(source));
        for (name, f) in self.files.iter_mut() {
            if name.starts_with(&prefix) {
                f.checkpointed = false;
            }
        }
    }

    fn commit(&mut self) -> Result<(), DestinationError> {
        // Data first, durably; only then the state that points past it.
        for (name, f) in self.files.iter_mut() {
            f.writer
                .flush()
                .and_then(|_| f.writer.get_ref().sync_data())
                .map_err(io_err(format!("cannot flush {name}")))?;
            let durable = if f.checkpointed { f.covered } else { f.len };
            self.staged.files.insert(name.clone(), durable);
        }
        if self.staged.files == self.committed.files
            && self.staged.state == self.committed.state
            && self.staged.schemas == self.committed.schemas
        {
            return Ok(());
        }
        self.write_state_file(&self.staged)?;
        self.committed = self.staged.clone();
        Ok(())
    }

    fn rollback(&mut self) {
        // Staged lines may sit in buffers or even on disk; they are past the committed
        // length and get truncated at the next open. Forget the staged state.
        self.staged = self.committed.clone();
        self.snapshots.clear();
    }

    fn load_state(&self) -> Result<StateMap, DestinationError> {
        Ok(self.committed.state.clone())
    }

    fn reset_state(
        &mut self,
        source: Option<&str>,
        stream: Option<&str>,
    ) -> Result<usize, DestinationError> {
        let mut removed = 0;
        for (src, streams) in self.staged.state.iter_mut() {
            if source.is_some_and(|s| s != src) {
                continue;
            }
            let before = streams.len();
            streams.retain(|key, _| stream.is_some_and(|s| !state_key_is_of(key, s)));
            removed += before - streams.len();
        }
        self.staged.state.retain(|_, streams| !streams.is_empty());
        self.commit()?;
        Ok(removed)
    }

    fn begin_snapshot(&mut self, source: &str, stream: &str) -> Result<(), DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
        self.migrate_legacy(source, stream, &name)?;
        let empty = match self.files.get(&name) {
            Some(f) => f.len == 0,
            None => fs::metadata(self.dir.join(&name)).map_or(true, |m| m.len() == 0),
        };
        let snapshot = if empty {
            Snapshot::FromEmpty
        } else {
            Snapshot::Tracked(SeenStore::create(
                self.dir.join(format!(".{name}{SNAPSHOT_SUFFIX}")),
            )?)
        };
        self.snapshots.insert(name, snapshot);
        Ok(())
    }

    fn snapshot_keys(
        &mut self,
        source: &str,
        stream: &str,
        keys: &KeyBatch,
    ) -> Result<(), DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
        if let Some(Snapshot::Tracked(seen)) = self.snapshots.get_mut(&name) {
            seen.add(keys.iter())?;
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
        self.mark_vanished(source, stream, noticed_at, marked)
    }

    fn abandon_snapshot(&mut self, source: &str, stream: &str) {
        self.snapshots
            .remove(&format!("{}.jsonl", table_name(source, stream)));
    }

    fn save_schemas(
        &mut self,
        source: &str,
        schemas: &[(&str, &serde_json::Value)],
    ) -> Result<(), DestinationError> {
        let kept = self.staged.schemas.entry(table_prefix(source)).or_default();
        for (stream, schema) in schemas {
            kept.insert(stream.to_string(), (*schema).clone());
        }
        self.commit()
    }

    fn schemas(&self) -> Result<SchemaMap, DestinationError> {
        Ok(self
            .committed
            .schemas
            .iter()
            .flat_map(|(prefix, streams)| {
                streams
                    .iter()
                    .map(move |(stream, schema)| ((prefix.clone(), stream.clone()), schema.clone()))
            })
            .collect())
    }

    fn streams(&self) -> Result<Vec<(String, String)>, DestinationError> {
        let mut out: Vec<(String, String)> = self
            .committed
            .files
            .keys()
            .filter_map(|name| name.strip_suffix(".jsonl")?.split_once("__"))
            .filter(|(prefix, stream)| !prefix.is_empty() && !stream.is_empty())
            .map(|(prefix, stream)| (prefix.to_string(), stream.to_string()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Two passes over the committed part of the file: the newest line of every key
    /// (offsets only, as a snapshot finds them), then those lines in file order.
    fn for_each_row(
        &self,
        source: &str,
        stream: &str,
        each: &mut dyn FnMut(Row<'_>),
    ) -> Result<(), DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
        let Some(&committed) = self.committed.files.get(&name) else {
            return Ok(());
        };
        let path = self.dir.join(&name);
        let what = path.display().to_string();
        let open = || {
            File::open(&path)
                .map(|f| BufReader::with_capacity(1 << 20, f.take(committed)))
                .map_err(io_err(format!("cannot open {what}")))
        };
        let mut wanted: Vec<u64> = scan_last_lines(open()?, &what)?
            .into_values()
            .map(|(offset, _, _)| offset)
            .collect();
        wanted.sort_unstable();
        let mut wanted = wanted.into_iter().peekable();
        let mut reader = open()?;
        let mut line = Vec::new();
        let mut offset = 0u64;
        while wanted.peek().is_some() {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_err(format!("cannot read {what}")))?;
            if n == 0 {
                break;
            }
            if wanted.next_if_eq(&offset).is_some() {
                let row: LineRow<'_> =
                    serde_json::from_slice(&line).map_err(|e| DestinationError::Io {
                        context: format!("{what} has an unreadable line at byte {offset}"),
                        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                    })?;
                each(Row {
                    pk: &row._pk,
                    cursor: row._cursor.as_deref(),
                    deleted: row._deleted,
                    violations: row._violations.map(RawValue::get),
                    data: row.data.get(),
                });
            }
            offset += n as u64;
        }
        Ok(())
    }
}

/// A whole line, borrowed where it can be.
#[derive(Deserialize)]
struct LineRow<'a> {
    #[serde(borrow)]
    _pk: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    _cursor: Option<std::borrow::Cow<'a, str>>,
    _deleted: bool,
    #[serde(borrow, default)]
    _violations: Option<&'a RawValue>,
    #[serde(borrow)]
    data: &'a RawValue,
}
