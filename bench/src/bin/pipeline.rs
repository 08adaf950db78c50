//! End-to-end benchmark of the foundation (issue 2), not a test:
//!
//! 1. generates N `service_history` rows (default 1,000,000) in a SQLite file;
//! 2. times `sqlite3 -json` dumping the table to a file: the practical ceiling;
//! 3. runs the real `tributary` binary (release) to JSONL and to the SQLite warehouse,
//!    reading its rows/s and peak RSS;
//! 4. measures what data quality costs: the same runs with `[quality] validate = false`
//!    (no per-record schema check, completeness, duplicate keys), best of a few rounds;
//! 5. measures the plugin boundary: the same connector read through the loaded `.so`
//!    versus compiled in (`InProcess`), both into a handler that only counts.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin pipeline -- --rows 1000000
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tributary_bench::{build_release, run_tributary, workspace};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tributary_internal_db::sample::{self, SampleSpec};
use tributary_sdk::host::{HostHandler, InProcess, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ControlMessage, LogLevel, ReadRequest, StreamStatus,
    SyncMode,
};

#[derive(Parser)]
struct Args {
    /// service_history rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u32,
    /// Working directory (default: a fresh temp dir under target/).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rounds of quality on/off per destination (best of each is compared).
    #[arg(long, default_value_t = 3)]
    quality_rounds: u32,
}

/// Counts records and drops them.
#[derive(Default)]
struct Counter(AtomicU64);

impl HostHandler for Counter {
    fn records(&self, _stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn state(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn control(&self, _: ControlMessage) -> Result<(), String> {
        Ok(())
    }
    fn stream_status(&self, _: &str, _: StreamStatus) {}
    fn log(&self, _: LogLevel, _: &str, _: &str) {}
    fn log_level(&self) -> LogLevel {
        LogLevel::Warn
    }
}

fn request(url: &str) -> ReadRequest {
    ReadRequest {
        config: serde_json::json!({ "url": url }),
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: "service_history".into(),
                sync_mode: SyncMode::FullRefresh,
            }],
        },
        state: Default::default(),
        window: Default::default(),
    }
}

fn run_host(
    dir: &Path,
    kind: &str,
    out: &str,
    db: &Path,
    quality: bool,
) -> Result<(f64, u64, String)> {
    let manifest = dir.join(format!("bench-{kind}.toml"));
    std::fs::write(
        &manifest,
        format!(
            "[quality]\nvalidate = {quality}\n[host]\nplugin_dir = \"{}\"\n[destination]\nkind = \"{kind}\"\npath = \"{}\"\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
            workspace().join("target/release").display(),
            dir.join(out).display(),
            db.display()
        ),
    )?;
    let _ = std::fs::remove_file(dir.join(out));
    let _ = std::fs::remove_dir_all(dir.join(out));
    let run = run_tributary(&manifest, &[])?;
    Ok((run.secs, 0, run.rss))
}

fn main() -> Result<()> {
    let args = Args::parse();
    build_release(&["tributary", "tributary-internal-db"])?;
    let dir = match args.dir {
        Some(d) => d,
        None => workspace().join("target/bench-pipeline"),
    };
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("source.db");
    let url = format!("sqlite:{}", db.display());
    let rows = u64::from(args.rows);
    let rt = tokio::runtime::Runtime::new()?;

    let per_client = 500;
    let clients = args.rows.div_ceil(per_client);
    let spec = SampleSpec {
        service_history_per_client: per_client,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
        ..SampleSpec::with_clients(clients, 42)
    };
    let _ = std::fs::remove_file(&db);
    let t = Instant::now();
    let counts = rt
        .block_on(sample::generate(&url, &spec))
        .context("generating sample data")?;
    let n = counts.get("service_history").copied().unwrap_or(0);
    println!(
        "generated {n} service_history rows in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let rows = n.max(rows.min(n));

    // Ceiling: sqlite3 -json of the same table.
    let dump = dir.join("sqlite3.json");
    let t = Instant::now();
    let out = std::fs::File::create(&dump)?;
    let st = Command::new("sqlite3")
        .args([
            "-json",
            db.to_str().unwrap_or_default(),
            "SELECT * FROM service_history",
        ])
        .stdout(out)
        .status()
        .context("running sqlite3 (apt-get install sqlite3)")?;
    if !st.success() {
        bail!("sqlite3 failed");
    }
    let ceiling = rows as f64 / t.elapsed().as_secs_f64();
    println!("sqlite3 -json ceiling:        {ceiling:>10.0} rows/s");

    let (secs, _, rss) = run_host(&dir, "jsonl", "jsonl-out", &db, true)?;
    let jsonl = rows as f64 / secs;
    println!(
        "tributary → JSONL:            {jsonl:>10.0} rows/s  ({:.2}× ceiling)  peak RSS {rss}",
        jsonl / ceiling
    );
    let (secs, _, rss) = run_host(&dir, "sqlite", "warehouse.db", &db, true)?;
    let sqlite = rows as f64 / secs;
    println!(
        "tributary → SQLite warehouse: {sqlite:>10.0} rows/s  ({:.2}× ceiling)  peak RSS {rss}",
        sqlite / ceiling
    );

    // Data quality on and off, alternating so drift on a shared machine hits both alike.
    for (kind, out) in [("jsonl", "jsonl-out"), ("sqlite", "warehouse.db")] {
        let (mut on, mut off) = (f64::MAX, f64::MAX);
        for _ in 0..args.quality_rounds {
            on = on.min(run_host(&dir, kind, out, &db, true)?.0);
            off = off.min(run_host(&dir, kind, out, &db, false)?.0);
        }
        println!(
            "quality → {kind:<6} on: {:>10.0} rows/s  off: {:>10.0} rows/s  cost {:>5.1}%",
            rows as f64 / on,
            rows as f64 / off,
            (1.0 - off / on) * 100.0
        );
    }

    // The plugin boundary: loaded .so versus compiled in, same counting handler.
    let plugin =
        tributary_sdk::host::load(&workspace().join("target/release/libtributary_internal_db.so"))?;
    let mut best_plugin = f64::MAX;
    let mut best_inproc = f64::MAX;
    for _ in 0..3 {
        let c = Arc::new(Counter::default());
        let t = Instant::now();
        plugin
            .read(&request(&url), c.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        best_plugin = best_plugin.min(t.elapsed().as_secs_f64());
        assert_eq!(c.0.load(Ordering::Relaxed), rows);
        let c = Arc::new(Counter::default());
        let t = Instant::now();
        InProcess::<tributary_internal_db::InternalDb>::read(&request(&url), c.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        best_inproc = best_inproc.min(t.elapsed().as_secs_f64());
        assert_eq!(c.0.load(Ordering::Relaxed), rows);
    }
    println!(
        "connector via .so:            {:>10.0} rows/s\nconnector in-process:         {:>10.0} rows/s\nplugin boundary cost:         {:>9.1}%",
        rows as f64 / best_plugin,
        rows as f64 / best_inproc,
        (best_plugin / best_inproc - 1.0) * 100.0
    );
    Ok(())
}
