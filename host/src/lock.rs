//! Exclusive locks that make one process the only writer of a destination and the only
//! user of a source's credentials: an OS file lock (released by the kernel when the
//! process dies, `kill -9` included) on a small file holding the holder's pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{what} is in use by another tributary process{holder}; wait for it to finish, or pass --wait to queue behind it (lock file {path})")]
    Busy {
        /// What the lock protects, e.g. "destination data/warehouse.db".
        what: String,
        /// ` (pid 123)` when the holder wrote its pid.
        holder: String,
        /// The lock file.
        path: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {what} ({path}): {error}")]
    Io {
        /// What the lock protects.
        what: String,
        /// The lock file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// A held lock; released on drop (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock file.
    #[allow(dead_code)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

/// Takes the exclusive lock at `path` for `what`. With `wait`, blocks until the holder
/// is gone (saying so once); without, fails at once naming the holder's pid.
pub fn acquire(path: &Path, what: &str, wait: bool) -> Result<Lock, LockError> {
    let io = |error| LockError::Io {
        what: what.to_string(),
        path: path.display().to_string(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Never truncate before holding the lock: the holder's pid is in there.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = holder_of(&mut file);
            if !wait {
                return Err(LockError::Busy {
                    what: what.to_string(),
                    holder,
                    path: path.display().to_string(),
                });
            }
            tracing::info!("waiting for {what}: in use by another tributary process{holder}");
            file.lock().map_err(io)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|_| file.flush())
        .map_err(io)?;
    Ok(Lock {
        _file: file,
        path: path.to_owned(),
    })
}

/// The lock file of a destination: `<file>.lock` beside a SQLite file, `.lock` inside a
/// JSONL directory.
pub fn destination_lock_path(kind: &str, path: &Path) -> PathBuf {
    match kind {
        "jsonl" => path.join(".lock"),
        _ => {
            let mut name = path.as_os_str().to_owned();
            name.push(".lock");
            PathBuf::from(name)
        }
    }
}

/// The lock file of one source's entry in the credentials store.
pub fn credentials_lock_path(store: &Path, source: &str) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(format!(".{source}.lock"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.lock");
        let held = acquire(&path, "destination x", false).expect("first lock");
        let err = acquire(&path, "destination x", false).expect_err("second lock");
        let msg = err.to_string();
        assert!(msg.contains("destination x is in use"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        acquire(&path, "destination x", false).expect("free again after drop");
    }
}
