//! The credentials store: secrets a plugin rotated (refresh tokens), persisted atomically
//! and merged over the manifest's config on later runs.
//!
//! One JSON file, `{"<source>": {"<key>": "<value>"}}`, mode 0600. Every update is a
//! read-modify-write under a lock, written to a temporary file, fsynced and renamed over
//! the old one, then the directory is fsynced: a crash leaves either the old or the new
//! file, never a torn one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

type Store = BTreeMap<String, BTreeMap<String, String>>;

/// Errors of the credentials store; they never include secret values.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read or written.
    #[error("credentials store {path}: {error}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not the JSON shape we write.
    #[error("credentials store {path} is corrupt: {message}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// serde's message (positions only).
        message: String,
    },
}

/// The credentials store at one path.
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    /// Serialises updates; holds what this process persisted, by source, so a long
    /// process (`watch`) can read with the values it rotated since it planned.
    lock: Mutex<Store>,
}

impl Credentials {
    /// The store at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        Credentials {
            path,
            lock: Mutex::new(Store::new()),
        }
    }

    /// The values this process persisted for `source` (empty if none): what a later
    /// read must use over the config planned at start, e.g. a rotated refresh token.
    pub fn updated(&self, source: &str) -> BTreeMap<String, String> {
        self.lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
            .unwrap_or_default()
    }

    /// Stored values for `source`.
    pub fn get(&self, source: &str) -> Result<BTreeMap<String, String>, CredentialsError> {
        Ok(self.read()?.remove(source).unwrap_or_default())
    }

    fn read(&self) -> Result<Store, CredentialsError> {
        self.tighten_mode();
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Corrupt {
                path: self.path.clone(),
                message: format!("line {}, column {}", e.line(), e.column()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::new()),
            Err(error) => Err(CredentialsError::Io {
                path: self.path.clone(),
                error,
            }),
        }
    }

    /// A store others can read (copied in with mode 0644, say) is made private at once
    /// rather than at the next rotation.
    fn tighten_mode(&self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let Ok(meta) = fs::metadata(&self.path) else {
                return;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                match fs::set_permissions(&self.path, fs::Permissions::from_mode(0o600)) {
                    Ok(()) => tracing::warn!(
                        path = %self.path.display(),
                        "the credentials store was readable by others (mode {mode:o}); tightened it to 0600"
                    ),
                    Err(e) => tracing::warn!(
                        path = %self.path.display(),
                        "the credentials store has mode {mode:o} and could not be tightened to 0600: {e}"
                    ),
                }
            }
        }
    }

    /// Merges `values` into `source`'s entry and persists atomically before returning.
    pub fn update(
        &self,
        source: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError> {
        let mut persisted = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.read()?;
        let entry = store.entry(source.to_string()).or_default();
        for (k, v) in values {
            entry.insert(k.clone(), v.clone());
        }
        let json = serde_json::to_vec_pretty(&store).map_err(|e| CredentialsError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&self.path, &json).map_err(|error| CredentialsError::Io {
            path: self.path.clone(),
            error,
        })?;
        persisted
            .entry(source.to_string())
            .or_default()
            .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: temp file (0600) + fsync + rename + fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_merges_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/credentials.json");
        let store = Credentials::new(path.clone());
        let mut v = BTreeMap::new();
        v.insert("refresh_token".to_string(), "r1".to_string());
        store.update("qbo", &v).unwrap();
        v.insert("refresh_token".to_string(), "r2".to_string());
        v.insert("access_token".to_string(), "a2".to_string());
        store.update("qbo", &v).unwrap();
        let got = store.get("qbo").unwrap();
        assert_eq!(got["refresh_token"], "r2");
        assert_eq!(got["access_token"], "a2");
        assert!(store.get("other").unwrap().is_empty());
        // What this process persisted, for a long process's later reads.
        assert_eq!(store.updated("qbo"), got);
        assert!(Credentials::new(path.clone()).updated("qbo").is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn corrupt_store_is_reported_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        fs::write(&path, "{\"qbo\": {\"refresh_token\": \"SECRET\"").unwrap();
        let err = Credentials::new(path).get("qbo").unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}
