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
            if let Err(reason) = check_structure(&path) {
                registry
                    .refused
                    .push((path.clone(), format!("{}: {reason}", path.display())));
                continue;
            }
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
    #[error("{path}: cannot read pinned plugin: {error}")]
    Read {
        /// The library.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
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
    /// The file is not a loadable library (truncated, corrupt, not ELF).
    #[error("{path}: {reason}")]
    Structure {
        /// The library.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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
        let bytes = std::fs::read(path).map_err(|error| PinError::Read {
            path: path.to_owned(),
            error,
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
    check_structure(path).map_err(|reason| PinError::Structure {
        path: path.to_owned(),
        reason,
    })?;
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

/// Refuses a file the dynamic loader must not see: one that is not a 64-bit ELF shared
/// object, or whose loadable segments run past its end. `dlopen` maps segments without
/// checking the file size, and touching a page past the end of a truncated library raises
/// SIGBUS, which would take the whole host down; reading the headers first costs a few
/// kilobytes of I/O.
#[cfg(target_os = "linux")]
pub fn check_structure(path: &Path) -> Result<(), String> {
    use object::elf::{FileHeader64, ET_DYN};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::{Endianness, ReadCache};

    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    let data = ReadCache::new(file);
    let header = FileHeader64::<Endianness>::parse(&data)
        .map_err(|_| format!("not a 64-bit ELF shared library ({len} bytes)"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("not a loadable ELF library: {e}"))?;
    if header.e_type(endian) != ET_DYN {
        return Err("an ELF file, but not a shared library".to_string());
    }
    let segments = header
        .program_headers(endian, &data)
        .map_err(|_| format!("truncated or corrupt library: its program headers run past the end of the file ({len} bytes)"))?;
    // Section headers sit at the very end: a library cut short anywhere loses them. The
    // loader does not need them, but a partial copy is no library to trust.
    let sections_end = header
        .e_shoff(endian)
        .checked_add(u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian)));
    if sections_end.is_none_or(|end| end > len) {
        return Err(format!(
            "truncated or corrupt library: its section headers run past the end of the file ({len} bytes)"
        ));
    }
    for (i, segment) in segments.iter().enumerate() {
        let end = segment
            .p_offset(endian)
            .checked_add(segment.p_filesz(endian));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "truncated or corrupt library: segment {i} needs {} bytes, the file has {len}",
                end.map_or_else(|| "more than 2^64".to_string(), |e| e.to_string())
            ));
        }
    }
    Ok(())
}

/// Other platforms: the loader's own checks only.
#[cfg(not(target_os = "linux"))]
pub fn check_structure(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared library this test process has loaded (libc, the dynamic loader, ...).
    fn some_loaded_library() -> PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .map(PathBuf::from)
            .find(|p| p.to_string_lossy().contains(".so") && p.is_file())
            .expect("a dynamically linked test binary maps at least one .so")
    }

    #[test]
    fn structure_check_refuses_truncated_empty_and_foreign_files() {
        let lib = some_loaded_library();
        check_structure(&lib).expect("a real library passes");
        let bytes = std::fs::read(&lib).expect("read library");
        let dir = tempfile::tempdir().expect("temp dir");
        for cut in [4096, bytes.len() / 3, bytes.len() - 1] {
            let truncated = dir.path().join(format!("libcut{cut}.so"));
            std::fs::write(&truncated, &bytes[..cut]).expect("write");
            let why = check_structure(&truncated).expect_err("a truncated library is refused");
            assert!(why.contains("truncated or corrupt"), "{cut}: {why}");
        }
        let empty = dir.path().join("libempty.so");
        std::fs::write(&empty, b"").expect("write");
        assert!(check_structure(&empty)
            .expect_err("empty")
            .contains("not a 64-bit ELF"));
        let random = dir.path().join("librandom.so");
        let noise: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&random, noise).expect("write");
        assert!(check_structure(&random).is_err());
    }
}
