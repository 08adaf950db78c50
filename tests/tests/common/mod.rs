//! Shared harness for the end-to-end tests: builds the real binary and plugins once,
//! gives each test a scratch directory, runs `tributary` there and reads the results.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod services;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

/// The directory holding the debug binary and plugin libraries.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// Builds the host, every plugin and the sandbox (debug) once per test binary, with the same cargo
/// that runs the tests: `cargo test` alone does not produce the `.so` files. The broken
/// test fixtures are a workspace of their own (so `cargo build --release --workspace`
/// never puts them beside the shipped plugins); built into the same target directory
/// they reuse its compiled dependencies.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(&cargo)
            .current_dir(workspace())
            .args([
                "build",
                "-p",
                "tributary",
                "-p",
                "tributary-internal-db",
                "-p",
                "tributary-quickbooks",
                "-p",
                "tributary-superops",
                "-p",
                "tributary-sandbox",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binary and plugins failed");
        let status = Command::new(&cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--manifest-path",
                "tests/fixtures/Cargo.toml",
                "--target-dir",
            ])
            .arg(fixtures_target())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test fixtures failed");
    });
}

fn fixtures_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Path of a test fixture library, e.g. `fixture_path("panicking_plugin")`.
pub fn fixture_path(crate_suffix: &str) -> PathBuf {
    target_dir().join(format!("libtributary_test_{crate_suffix}.so"))
}

/// Path of a plugin library in the target directory, e.g. `lib_path("internal_db")`.
pub fn lib_path(crate_suffix: &str) -> PathBuf {
    target_dir().join(format!("libtributary_{crate_suffix}.so"))
}

/// A scratch directory for one test, with helpers to run the binary in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

/// What one `tributary` invocation produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything printed, for assertions about messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Scratch {
    pub fn new() -> Self {
        ensure_built();
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `[host]` pointing at the debug plugins and a scratch credentials store, plus a
    /// SQLite destination in the scratch directory.
    pub fn header(&self) -> String {
        format!(
            "[host]\nplugin_dir = \"{}\"\ncredentials = \"{}\"\n\n[destination]\nkind = \"sqlite\"\npath = \"{}\"\n\n",
            target_dir().display(),
            self.path("credentials.json").display(),
            self.path("warehouse.db").display()
        )
    }

    /// Writes `connectors.toml` in the scratch directory.
    pub fn manifest(&self, body: &str) -> PathBuf {
        let p = self.path("connectors.toml");
        std::fs::write(&p, body).expect("write manifest");
        p
    }

    /// The command, ready to run in the scratch directory (no TTY, info logs).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(target_dir().join("tributary"));
        cmd.current_dir(self.dir.path())
            .args(["--manifest", "connectors.toml"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("TRIBUTARY_MANIFEST")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `tributary --manifest connectors.toml <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("tributary runs").into()
    }

    /// `run` with `--report`, returning records per `source.stream` and statuses.
    pub fn sync(&self, args: &[&str]) -> (Run, Report) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let mut full: Vec<&str> = vec!["run", "--report"];
        let report_str = report.to_str().expect("utf-8 path").to_string();
        full.push(&report_str);
        full.extend_from_slice(args);
        let run = self.run(&full);
        (run, Report::read(&report))
    }

    pub fn warehouse(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("warehouse.db")).expect("warehouse opens")
    }
}

/// Per-stream results of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// `source.stream` → (records, status)
    pub streams: BTreeMap<String, (u64, String)>,
    /// `source.stream` → rows deleted (deletion records plus rows a snapshot marked)
    pub deleted: BTreeMap<String, u64>,
}

impl Report {
    /// The report a `run --report <path>` wrote (empty when there is none).
    pub fn read(path: &Path) -> Report {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(Report::from_json)
            .unwrap_or_default()
    }

    fn from_json(v: serde_json::Value) -> Report {
        let mut streams = BTreeMap::new();
        let mut deleted = BTreeMap::new();
        // `{"streams": [...], "quality": {...}}`.
        for r in v["streams"].as_array().into_iter().flatten() {
            let key = format!(
                "{}.{}",
                r["source"].as_str().unwrap_or(""),
                r["stream"].as_str().unwrap_or("")
            );
            deleted.insert(key.clone(), r["deleted"].as_u64().unwrap_or(0));
            streams.insert(
                key,
                (
                    r["records"].as_u64().unwrap_or(0),
                    r["status"].as_str().unwrap_or("").to_string(),
                ),
            );
        }
        Report { streams, deleted }
    }

    /// Rows deleted in `source.stream` by this run.
    pub fn deleted(&self, key: &str) -> u64 {
        self.deleted
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no stream {key} in {self:?}"))
    }

    pub fn records(&self, key: &str) -> u64 {
        self.streams
            .get(key)
            .map_or_else(|| panic!("no stream {key} in {self:?}"), |s| s.0)
    }

    pub fn status(&self, key: &str) -> &str {
        self.streams
            .get(key)
            .map_or_else(|| panic!("no stream {key} in {self:?}"), |s| s.1.as_str())
    }

    pub fn total(&self) -> u64 {
        self.streams.values().map(|s| s.0).sum()
    }

    pub fn all_complete(&self) -> bool {
        !self.streams.is_empty() && self.streams.values().all(|s| s.1 == "complete")
    }
}

/// `SELECT count(*)` on a table.
pub fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .unwrap_or_else(|e| panic!("count {table}: {e}"))
}
