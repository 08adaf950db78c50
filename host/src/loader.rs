//! Finds plugin libraries, and loads into the host only the ones it may trust.
//!
//! When a source of the manifest is isolated (`isolation = "process"`), any library in
//! the plugin directory may be the untrusted one, and opening it in the host would run
//! its load-time code there. The scan then has each library described by a plugin
//! process ([`crate::isolation::describe`]) and loads into the host only the plugins an
//! in-process source uses. Without an isolated source every library is loaded, as
//! before: nothing is isolated, so nothing is gained by a plugin process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tributary_sdk::host::{self, LoadError, Plugin};
use tributary_sdk::{ConnectorError, ConnectorInfo};

use crate::isolation::describe::{describe, describe_all, Description};

/// A plugin library, loaded in the host or only described by a plugin process.
#[derive(Debug, Clone)]
pub enum Library {
    /// Loaded into the host process.
    Loaded(Plugin),
    /// Described by a plugin process; never loaded into the host.
    Described(Arc<Description>),
    /// The plugin an isolated source names, which no library answered for while some
    /// library could not be described (it crashed or hung while loading): the source
    /// fails with `cause` when called, and the other sources run.
    Unavailable(Arc<Unavailable>),
}

/// See [`Library::Unavailable`].
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    /// The library that most likely is the plugin, else the plugin directory.
    pub path: PathBuf,
    /// The name the manifest asks for (nothing else is known).
    pub info: ConnectorInfo,
    /// Why it is unavailable, naming the libraries that could not be described.
    pub cause: String,
}

impl Library {
    /// The library file.
    pub fn path(&self) -> &Path {
        match self {
            Library::Loaded(p) => p.path(),
            Library::Described(d) => &d.path,
            Library::Unavailable(u) => &u.path,
        }
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &ConnectorInfo {
        match self {
            Library::Loaded(p) => p.info(),
            Library::Described(d) => &d.info,
            Library::Unavailable(u) => &u.info,
        }
    }

    /// The plugin loaded in the host, if it is.
    pub fn loaded(&self) -> Option<&Plugin> {
        match self {
            Library::Loaded(p) => Some(p),
            _ => None,
        }
    }

    /// The config schema: asked of the plugin in the host, or as its plugin process
    /// described it.
    pub fn spec(&self) -> Result<serde_json::Value, ConnectorError> {
        match self {
            Library::Loaded(p) => p.spec(),
            Library::Described(d) => d.spec.clone(),
            Library::Unavailable(u) => Err(ConnectorError::system(u.cause.clone())),
        }
    }
}

/// How a scan learns which plugin each library is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanMode {
    /// Load every library into the host (no source is isolated: every library is
    /// trusted, and this costs nothing more than before isolation existed).
    LoadAll,
    /// Describe every library in a plugin process started from `program` (the
    /// `tributary` binary), and load into the host only the plugins named in
    /// `in_process`.
    Describe {
        /// The binary with the hidden `plugin-host` subcommand.
        program: PathBuf,
        /// Plugins an in-process source uses.
        in_process: BTreeSet<String>,
    },
}

/// Every library found in a plugin directory: the plugins, by name, and one line per
/// library refused.
#[derive(Debug, Default)]
pub struct Registry {
    /// Plugins by `info().name`.
    pub plugins: BTreeMap<String, Library>,
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
    /// Finds every library in `dir` (not recursive) and learns what it is as `mode`
    /// says. A library refused is recorded in `refused`; the others are still used.
    pub fn scan(dir: &Path, mode: &ScanMode) -> std::io::Result<Registry> {
        let mut registry = Registry::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_library(p))
            .collect();
        paths.sort();
        let mut candidates = Vec::new();
        for path in paths {
            match check_structure(&path) {
                Ok(()) => candidates.push(path),
                Err(reason) => {
                    let line = format!("{}: {reason}", path.display());
                    registry.refused.push((path, line));
                }
            }
        }
        match mode {
            ScanMode::LoadAll => {
                for path in candidates {
                    match host::load(&path) {
                        Ok(plugin) => registry.add(Library::Loaded(plugin)),
                        Err(e) => registry.refused.push((path, e.to_string())),
                    }
                }
            }
            ScanMode::Describe {
                program,
                in_process,
            } => {
                let described = describe_all(program, &candidates);
                for (path, described) in candidates.into_iter().zip(described) {
                    match described {
                        Err(reason) => registry.refused.push((path, reason)),
                        Ok(d) if registry.duplicate(&d.info.name, &path) => {}
                        // Trusted: an in-process source runs it in the host anyway.
                        Ok(d) if in_process.contains(&d.info.name) => match host::load(&path) {
                            Ok(plugin) => registry.add(Library::Loaded(plugin)),
                            Err(e) => registry.refused.push((path, e.to_string())),
                        },
                        Ok(d) => registry.add(Library::Described(Arc::new(d))),
                    }
                }
            }
        }
        Ok(registry)
    }

    /// Records `path` as refused when `name` is taken already.
    fn duplicate(&mut self, name: &str, path: &Path) -> bool {
        let Some(existing) = self.plugins.get(name) else {
            return false;
        };
        let line = format!(
            "{}: plugin {name} is also provided by {}; keeping the first",
            path.display(),
            existing.path().display()
        );
        self.refused.push((path.to_owned(), line));
        true
    }

    fn add(&mut self, library: Library) {
        let name = library.info().name.clone();
        if !self.duplicate(&name, library.path()) {
            self.plugins.insert(name, library);
        }
    }

    /// For an isolated source whose plugin `name` no library answered for: the plugin
    /// unavailable, when some library could not be described (it may have been that
    /// plugin); `None` when every library was described (the name is simply unknown).
    pub fn unavailable(&self, name: &str, dir: &Path) -> Option<Unavailable> {
        if self.refused.is_empty() {
            return None;
        }
        // A library named after the plugin (`libvendor_crm.so` for `vendor-crm`) is the
        // likely one; otherwise every refused library is a suspect.
        let stem = name.replace('-', "_");
        let named: Vec<&(PathBuf, String)> = self
            .refused
            .iter()
            .filter(|(p, _)| {
                p.file_stem()
                    .is_some_and(|s| s.to_string_lossy().contains(&stem))
            })
            .collect();
        let suspects: Vec<&(PathBuf, String)> = if named.is_empty() {
            self.refused.iter().collect()
        } else {
            named
        };
        let path = match suspects.as_slice() {
            [(path, _)] => path.clone(),
            _ => dir.to_owned(),
        };
        let reasons: Vec<&str> = suspects.iter().map(|(_, r)| r.as_str()).collect();
        Some(Unavailable {
            path,
            info: ConnectorInfo::new(name, "?", "unavailable: its library could not be loaded"),
            cause: format!(
                "plugin `{name}` is unavailable: no library in {} answered for it, and {} could not be loaded: {}",
                dir.display(),
                if reasons.len() == 1 { "this one" } else { "these" },
                reasons.join("; ")
            ),
        })
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
    /// Its plugin process could not describe it (refused, crashed or hung while
    /// loading); the reason names the file.
    #[error("{0}")]
    Describe(String),
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

/// The library at `path`, after checking its sha256 when one is given: loaded into the
/// host, or, with `describe_with` (the `tributary` binary, for an isolated source), only
/// described by a plugin process.
pub fn load_pinned(
    path: &Path,
    sha256: Option<&str>,
    expected_name: &str,
    describe_with: Option<&Path>,
) -> Result<Library, PinError> {
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
    let library = match describe_with {
        Some(program) => Library::Described(Arc::new(
            describe(program, path).map_err(PinError::Describe)?,
        )),
        None => Library::Loaded(host::load(path)?),
    };
    if library.info().name != expected_name {
        return Err(PinError::WrongPlugin {
            path: path.to_owned(),
            expected: expected_name.to_string(),
            actual: library.info().name.clone(),
        });
    }
    Ok(library)
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
    fn a_plugin_no_library_answered_for_is_unavailable_only_beside_a_refused_library() {
        let dir = Path::new("/plugins");
        let mut registry = Registry::default();
        assert_eq!(
            registry.unavailable("vendor-crm", dir),
            None,
            "simply unknown"
        );
        for (file, why) in [
            ("libother.so", "not a Tributary plugin"),
            ("libvendor_crm.so", "killed by SIGSEGV while loading"),
        ] {
            let path = dir.join(file);
            let line = format!("{}: {why}", path.display());
            registry.refused.push((path, line));
        }
        let named = registry
            .unavailable("vendor-crm", dir)
            .expect("unavailable");
        assert_eq!(
            named.path,
            dir.join("libvendor_crm.so"),
            "the library named after it"
        );
        assert!(
            named.cause.contains("plugin `vendor-crm` is unavailable"),
            "{}",
            named.cause
        );
        assert!(
            named.cause.contains("SIGSEGV") && !named.cause.contains("libother"),
            "{}",
            named.cause
        );
        let anyone = registry.unavailable("acme", dir).expect("unavailable");
        assert_eq!(anyone.path, dir, "no single suspect");
        assert!(anyone.cause.contains("libother") && anyone.cause.contains("libvendor_crm"));
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
