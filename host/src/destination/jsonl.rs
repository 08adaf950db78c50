//! JSONL files: one append-only file per stream, plus `_state.json` beside them.
//!
//! Each line is `{"_source":…,"_stream":…,"_pk":…,"_cursor":…,"_extracted_at":…,
//! "_deleted":…,"data":{…}}`. A commit flushes and fsyncs every data file, then atomically
//! replaces `_state.json` with the stream states **and the byte length of each data file**.
//! On open, any bytes past the committed length (written after the last commit by a run
//! that crashed) are truncated away, so a resumed run appends each record exactly once.
//! Consumers that want the newest version of a record take the last line per `_pk`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tributary_sdk::host::RecordBatch;

use super::{io_err, table_name, Destination, DestinationError, StateMap};
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
}

pub(super) struct OpenFile {
    pub(super) writer: BufWriter<File>,
    /// Bytes written so far (committed + staged).
    len: u64,
}

/// The JSONL destination.
pub struct JsonlDestination {
    dir: PathBuf,
    committed: StateFile,
    staged: StateFile,
    pub(super) files: BTreeMap<String, OpenFile>,
    line: Vec<u8>,
}

impl JsonlDestination {
    /// Opens the directory, discarding data written after the last commit.
    pub fn open(dir: &Path) -> Result<Self, DestinationError> {
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let state_path = dir.join(STATE_FILE);
        let committed: StateFile = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DestinationError::Io {
                context: format!("{} is corrupt", state_path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(io_err(format!("cannot read {}", state_path.display()))(e)),
        };
        // Roll every data file back to its committed length.
        let entries =
            fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("cannot list {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
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
        })
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
                },
            );
        }
        self.files
            .get_mut(name)
            .ok_or_else(|| io_err(name.to_string())(std::io::ErrorKind::NotFound.into()))
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Destination for JsonlDestination {
    fn write(
        &mut self,
        source: &str,
        stream: &str,
        batch: &RecordBatch,
        extracted_at: &str,
    ) -> Result<(), DestinationError> {
        let name = format!("{}.jsonl", table_name(source, stream));
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
        for r in batch.iter() {
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
                b",\"_deleted\":true,\"data\":"
            } else {
                b",\"_deleted\":false,\"data\":"
            });
            line.extend_from_slice(r.data.as_bytes());
            line.extend_from_slice(b"}\n");
            if let Err(e) = file.writer.write_all(&line) {
                result = Err(io_err(format!("cannot write {name}"))(e));
                break;
            }
            file.len += line.len() as u64;
        }
        let len = file.len;
        self.line = line;
        result?;
        self.staged.files.insert(name, len);
        Ok(())
    }

    fn stage_state(
        &mut self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), DestinationError> {
        let value = serde_json::from_str(state).map_err(|e| DestinationError::BadState {
            source_name: source.to_string(),
            stream: stream.to_string(),
            message: e.to_string(),
        })?;
        self.staged
            .state
            .entry(source.to_string())
            .or_default()
            .insert(stream.to_string(), value);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DestinationError> {
        // Data first, durably; only then the state that points past it.
        for (name, f) in self.files.iter_mut() {
            f.writer
                .flush()
                .and_then(|_| f.writer.get_ref().sync_data())
                .map_err(io_err(format!("cannot flush {name}")))?;
        }
        if self.staged.files == self.committed.files && self.staged.state == self.committed.state {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&self.staged).map_err(|e| DestinationError::Io {
            context: "cannot serialize state".to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let path = self.dir.join(STATE_FILE);
        write_atomic(&path, &bytes).map_err(io_err(format!("cannot write {}", path.display())))?;
        self.committed = self.staged.clone();
        Ok(())
    }

    fn rollback(&mut self) {
        // Staged lines may sit in buffers or even on disk; they are past the committed
        // length and get truncated at the next open. Forget the staged state.
        self.staged = self.committed.clone();
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
            streams.retain(|name, _| stream.is_some_and(|s| s != name));
            removed += before - streams.len();
        }
        self.staged.state.retain(|_, streams| !streams.is_empty());
        self.commit()?;
        Ok(removed)
    }
}
