//! Finds and loads plugin libraries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tributary_sdk::host::{self, LoadError, Plugin};

/// Every library found in a plugin directory: the ones that loaded, by plugin name, and
/// one line per library that did not.
#[derive(Debug, Default)]
pub struct Registry {
    /// Loaded plugins by `info().name`.
    pub plugins: BTreeMap<String, Plugin>,
    /// Libraries refused, each with a one-line reason naming the file.
    pub refused: Vec<(PathBuf, String)>,
}

fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so") | Some("dylib") | Some("dll")
    )
}

impl Registry {
    /// Loads every library in `dir` (not recursive). A library that fails to load is
    /// recorded in `refused`; the others still load.
    pub fn scan(dir: &Path) -> std::io::Result<Registry> {
        let mut registry = Registry::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_library(p))
            .collect();
        paths.sort();
        for path in paths {
            match host::load(&path) {
                Ok(plugin) => registry.add(plugin),
                Err(e) => registry.refused.push((path, e.to_string())),
            }
        }
        Ok(registry)
    }

    fn add(&mut self, plugin: Plugin) {
        let name = plugin.info().name.clone();
        if let Some(existing) = self.plugins.get(&name) {
            self.refused.push((
                plugin.path().to_owned(),
                format!(
                    "{}: plugin {name} is also provided by {}; keeping the first",
                    plugin.path().display(),
                    existing.path().display()
                ),
            ));
        } else {
            self.plugins.insert(name, plugin);
        }
    }
}

/// Why a pinned plugin could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The file could not be read for hashing.
    #[error("{path}: cannot read pinned plugin: {source}")]
    Read {
        /// The library.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The hash does not match the manifest.
    #[error("{path}: sha256 is {actual}, the manifest pins {expected}")]
    Hash {
        /// The library.
        path: PathBuf,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the file.
        actual: String,
    },
    /// The library did not load.
    #[error("{0}")]
    Load(#[from] LoadError),
    /// It loaded but is another plugin.
    #[error("{path}: is plugin {actual}, the manifest expects {expected}")]
    WrongPlugin {
        /// The library.
        path: PathBuf,
        /// Name in the manifest.
        expected: String,
        /// Name the library reports.
        actual: String,
    },
}

/// Loads the library at `path`, after checking its sha256 when one is given.
pub fn load_pinned(
    path: &Path,
    sha256: Option<&str>,
    expected_name: &str,
) -> Result<Plugin, PinError> {
    if let Some(expected) = sha256 {
        let bytes = std::fs::read(path).map_err(|source| PinError::Read {
            path: path.to_owned(),
            source,
        })?;
        let actual: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(PinError::Hash {
                path: path.to_owned(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    let plugin = host::load(path)?;
    if plugin.info().name != expected_name {
        return Err(PinError::WrongPlugin {
            path: path.to_owned(),
            expected: expected_name.to_string(),
            actual: plugin.info().name.clone(),
        });
    }
    Ok(plugin)
}
