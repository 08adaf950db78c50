//! Throughput and memory of the internal-db connector's read path (not a test).
//!
//! Generates N `service_history` rows in a temporary SQLite file, then reads them through
//! `InProcess<InternalDb>` (the same glue a loaded plugin uses, minus `dlopen`) into
//! (1) a handler that only counts and (2) a handler that writes JSONL, and, for the
//! ceiling, times `sqlite3 -json` dumping the same table. Prints rows/s and the peak RSS
//! of each phase (VmHWM, reset between phases through /proc/self/clear_refs).
//!
//! ```text
//! cargo run --release -p tributary-bench --bin internal_db -- --rows 1000000
//! cargo run --release -p tributary-bench --bin internal_db -- --db /tmp/bench.db  # keep/reuse the DB
//! ```
//!
//! With `--db`, a second run skips generation, so the read phases' peak RSS is not
//! inflated by memory the allocator kept from generating.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use tributary_internal_db::sample::{self, SampleSpec};
use tributary_internal_db::InternalDb;
use tributary_sdk::host::{HostHandler, InProcess, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ControlMessage, LogLevel, ReadRequest, StreamStatus,
    SyncMode,
};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Benchmark the internal-db connector read path")]
pub struct Args {
    /// service_history rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Rows per query page (the connector's `page_size`).
    #[arg(long, default_value_t = 10_000)]
    pub page_size: u32,
    /// Connections (the connector's `pool_size`; 1 reads pages sequentially).
    #[arg(long, default_value_t = 4)]
    pub pool_size: u32,
    /// Pages fetched concurrently (the connector's `parallel_pages`, capped by pool_size).
    #[arg(long, default_value_t = 1)]
    pub parallel_pages: u32,
    /// Use (and keep) this SQLite file; generated only when it does not exist.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Directory for the temporary database and JSONL output (default: the OS temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Skip the `sqlite3 -json` ceiling measurement.
    #[arg(long)]
    pub no_ceiling: bool,
}

/// One measured phase.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Rows handled.
    pub rows: u64,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Peak RSS during the phase, in MiB (None when /proc is unavailable).
    pub peak_rss_mib: Option<f64>,
}

impl Measurement {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs.max(1e-9)
    }

    fn print(&self) {
        let rss = self
            .peak_rss_mib
            .map_or_else(|| "?".to_string(), |m| format!("{m:.1} MiB"));
        println!(
            "{:<34} {:>10} rows {:>8.3} s {:>12.0} rows/s   peak RSS {rss}",
            self.name,
            self.rows,
            self.secs,
            self.rows_per_sec()
        );
    }
}

/// Peak resident set size of this process in MiB (VmHWM).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets VmHWM to the current RSS so the next phase's peak is its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `f` as a phase: resets the RSS peak, times it, records the peak.
pub fn measure(name: &str, f: impl FnOnce() -> anyhow::Result<u64>) -> anyhow::Result<Measurement> {
    reset_peak_rss();
    let started = Instant::now();
    let rows = f()?;
    Ok(Measurement {
        name: name.to_string(),
        rows,
        secs: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
    })
}

/// The sample spec giving `rows` service_history rows and nothing else but clients.
pub fn spec_for(rows: u64) -> SampleSpec {
    let clients = (rows / 1000).clamp(1, 10_000);
    SampleSpec {
        clients: clients as u32,
        seed: 42,
        service_history_per_client: (rows / clients) as u32,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
    }
}

/// Generates the benchmark database at `path`; returns service_history rows.
pub fn generate(path: &Path, rows: u64) -> anyhow::Result<u64> {
    let url = format!("sqlite:{}", path.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let counts = rt.block_on(sample::generate(&url, &spec_for(rows)))?;
    Ok(counts.get("service_history").copied().unwrap_or(0))
}

/// A read of the whole service_history stream (full refresh).
pub fn read_request(db: &Path, page_size: u32, pool_size: u32, parallel_pages: u32) -> ReadRequest {
    ReadRequest {
        config: json!({
            "url": format!("sqlite:{}", db.display()),
            "page_size": page_size,
            "pool_size": pool_size,
            "parallel_pages": parallel_pages,
        }),
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

/// Counts records; the cheapest possible host.
#[derive(Debug, Default)]
pub struct CountingHandler {
    records: AtomicU64,
    failed: Mutex<Option<String>>,
}

impl HostHandler for CountingHandler {
    fn records(&self, _stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn state(&self, _stream: &str, _state: &str) -> Result<(), String> {
        Ok(())
    }
    fn control(&self, _message: ControlMessage) -> Result<(), String> {
        Ok(())
    }
    fn stream_status(&self, stream: &str, status: StreamStatus) {
        if let StreamStatus::Incomplete { error } = status {
            if let Ok(mut f) = self.failed.lock() {
                *f = Some(format!("{stream}: {error}"));
            }
        }
    }
    fn log(&self, _level: LogLevel, _target: &str, _message: &str) {}
}

/// Writes each record's JSON as one line to a file.
pub struct JsonlHandler {
    out: Mutex<BufWriter<File>>,
    counter: CountingHandler,
}

impl JsonlHandler {
    /// A handler writing to `path`.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        Ok(JsonlHandler {
            out: Mutex::new(BufWriter::with_capacity(1 << 20, File::create(path)?)),
            counter: CountingHandler::default(),
        })
    }

    fn flush(&self) -> anyhow::Result<()> {
        let mut out = self.out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(())
    }
}

impl HostHandler for JsonlHandler {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        let mut out = self.out.lock().map_err(|_| "poisoned".to_string())?;
        for r in batch.iter() {
            out.write_all(r.data.as_bytes())
                .map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        drop(out);
        self.counter.records(stream, batch)
    }
    fn state(&self, _stream: &str, _state: &str) -> Result<(), String> {
        Ok(())
    }
    fn control(&self, _message: ControlMessage) -> Result<(), String> {
        Ok(())
    }
    fn stream_status(&self, stream: &str, status: StreamStatus) {
        self.counter.stream_status(stream, status);
    }
    fn log(&self, _level: LogLevel, _target: &str, _message: &str) {}
}

/// Reads service_history through `InProcess<InternalDb>` into `handler`.
pub fn read_in_process(
    db: &Path,
    page_size: u32,
    pool_size: u32,
    parallel_pages: u32,
    handler: Arc<dyn HostHandler>,
    counter: &CountingHandler,
) -> anyhow::Result<u64> {
    InProcess::<InternalDb>::read(
        &read_request(db, page_size, pool_size, parallel_pages),
        handler,
    )
    .map_err(|e| anyhow::anyhow!("read failed: {e}"))?;
    if let Some(failure) = counter.failed.lock().ok().and_then(|f| f.clone()) {
        bail!("stream incomplete: {failure}");
    }
    Ok(counter.records.load(Ordering::Relaxed))
}

/// `sqlite3 -json` dumping the table to a file: the practical SQLite→JSON ceiling.
pub fn sqlite3_ceiling(db: &Path, out: &Path) -> anyhow::Result<u64> {
    let status = Command::new("sqlite3")
        .arg("-json")
        .arg(db)
        .arg("SELECT * FROM service_history")
        .stdout(File::create(out)?)
        .status()
        .context("running sqlite3")?;
    if !status.success() {
        bail!("sqlite3 failed: {status}");
    }
    // The dump is one JSON array with one object per line.
    let text = std::fs::read_to_string(out)?;
    Ok(text.lines().filter(|l| l.contains("\"id\"")).count() as u64)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = work.join(format!(
        "tributary-bench-internal-db-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch)?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| scratch.join("internal.db"));
    let result = run(&args, &db, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|_| ())
}

/// Runs every phase, printing each line as it completes; returns the measurements.
pub fn run(args: &Args, db: &Path, scratch: &Path) -> anyhow::Result<Vec<Measurement>> {
    println!(
        "internal-db read benchmark: {} service_history rows, page_size {}",
        args.rows, args.page_size
    );
    let mut results = Vec::new();
    if db.exists() {
        println!("using existing {}", db.display());
    } else {
        let m = measure("generate (sample::generate)", || generate(db, args.rows))?;
        m.print();
        results.push(m);
    }

    let counting = Arc::new(CountingHandler::default());
    let m = measure("read -> count (in-process)", || {
        read_in_process(
            db,
            args.page_size,
            args.pool_size,
            args.parallel_pages,
            counting.clone(),
            &counting,
        )
    })?;
    m.print();
    results.push(m);

    let jsonl_path = scratch.join("service_history.jsonl");
    let jsonl = Arc::new(JsonlHandler::create(&jsonl_path)?);
    let m = measure("read -> JSONL file (in-process)", || {
        let n = read_in_process(
            db,
            args.page_size,
            args.pool_size,
            args.parallel_pages,
            jsonl.clone(),
            &jsonl.counter,
        )?;
        jsonl.flush()?;
        Ok(n)
    })?;
    m.print();
    let jsonl_rate = m.rows_per_sec();
    results.push(m);

    if !args.no_ceiling {
        let out = scratch.join("sqlite3.json");
        match measure("sqlite3 -json > file (ceiling)", || {
            sqlite3_ceiling(db, &out)
        }) {
            Ok(m) => {
                // sqlite3 runs as a child process: its RSS is not ours.
                let m = Measurement {
                    peak_rss_mib: None,
                    ..m
                };
                m.print();
                println!(
                    "JSONL / sqlite3 -json ratio: {:.2} (target >= 0.6)",
                    jsonl_rate / m.rows_per_sec()
                );
                results.push(m);
            }
            Err(e) => println!("sqlite3 ceiling skipped: {e:#}"),
        }
    }
    Ok(results)
}
