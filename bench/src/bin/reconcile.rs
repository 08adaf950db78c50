//! Reconciliation benchmark (issue 7), not a test: how long the real release binary and
//! `.so` take to find hard-deleted rows in a large internal table, and how much memory.
//!
//! 1. generates N `service_history` rows (default 1,000,000) in a SQLite source;
//! 2. syncs them into the SQLite warehouse (untimed);
//! 3. hard-deletes D rows (default 1,000) spread over the table;
//! 4. times the ceiling: `sqlite3` listing every id of the source into a temporary table
//!    and doing the anti-join update against the warehouse (rolled back);
//! 5. times the connector alone: the same listing through `InProcess<InternalDb>` into a
//!    handler that only counts keys (no destination);
//! 6. times `tributary run` (reconcile_every = "always"): the incremental read finds
//!    nothing, the pass lists every id, the host marks the D vanished rows; reads its
//!    peak RSS and checks the report says D deleted.
//!
//! Steps 4–6 run `--rounds` times (the marks are undone between rounds) and the best
//! round is reported with the others, because a shared machine is noisy. Optionally
//! (`--full-refresh`) also times `tributary run --full-refresh`, where the read itself is
//! the listing.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin reconcile -- --rows 1000000 --deleted 1000
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
use tributary_sdk::host::{HostHandler, InProcess, KeyBatch, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ControlMessage, LogLevel, ReadRequest, StreamStatus,
    SyncMode,
};

#[derive(Parser)]
#[command(about = "Benchmark a key reconciliation of a large internal table")]
struct Args {
    /// service_history rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u32,
    /// Rows to hard-delete before the timed run.
    #[arg(long, default_value_t = 1_000)]
    deleted: u32,
    /// Working directory (default: target/bench-reconcile).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also time a `--full-refresh` run (the read is the listing).
    #[arg(long)]
    full_refresh: bool,
    /// Timed rounds (ceiling, connector alone, tributary run); the best is summarised.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// One round's timings.
struct Round {
    ceiling: f64,
    connector: f64,
    host: HostRun,
}

/// Counts keys and records, keeps nothing.
#[derive(Default)]
struct Counter {
    keys: AtomicU64,
    records: AtomicU64,
}

impl HostHandler for Counter {
    fn records(&self, _stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
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
    fn keys(&self, _: &str, keys: KeyBatch) -> Result<(), String> {
        self.keys.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// What one `tributary run` took.
struct HostRun {
    secs: f64,
    rss: String,
    deleted: u64,
    records: u64,
}

fn run_host(dir: &Path, manifest: &Path, extra: &[&str]) -> Result<HostRun> {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let report_arg = report.to_str().unwrap_or_default();
    let mut all = vec!["--report", report_arg];
    all.extend_from_slice(extra);
    let run = run_tributary(manifest, &all)?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let stream = report["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["stream"] == "service_history"))
        .context("the report has service_history")?;
    Ok(HostRun {
        secs: run.secs,
        rss: run.rss,
        deleted: stream["deleted"].as_u64().unwrap_or(0),
        records: stream["records"].as_u64().unwrap_or(0),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    build_release(&["tributary", "tributary-internal-db"])?;
    let dir = args
        .dir
        .unwrap_or_else(|| workspace().join("target/bench-reconcile"));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("source.db");
    let warehouse = dir.join("warehouse.db");
    for f in [&db, &warehouse] {
        let _ = std::fs::remove_file(f);
        for suffix in ["-wal", "-shm"] {
            let mut p = f.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
    let url = format!("sqlite:{}", db.display());
    let rt = tokio::runtime::Runtime::new()?;

    let per_client = 500;
    let spec = SampleSpec {
        service_history_per_client: per_client,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
        ..SampleSpec::with_clients(args.rows.div_ceil(per_client), 42)
    };
    let t = Instant::now();
    let counts = rt
        .block_on(sample::generate(&url, &spec))
        .context("generating sample data")?;
    let rows = counts.get("service_history").copied().unwrap_or(0);
    println!(
        "generated {rows} service_history rows in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let manifest = dir.join("bench-reconcile.toml");
    std::fs::write(
        &manifest,
        format!(
            "[host]\nplugin_dir = \"{}\"\ncredentials = \"{}\"\n[destination]\nkind = \"sqlite\"\npath = \"{}\"\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"{url}\"\nreconcile_every = \"always\"\n",
            workspace().join("target/release").display(),
            dir.join("credentials.json").display(),
            warehouse.display(),
        ),
    )?;
    let first = run_host(&dir, &manifest, &[])?;
    println!(
        "first sync (untimed part of the setup): {} records in {:.1}s, peak RSS {}",
        first.records, first.secs, first.rss
    );

    // Delete D rows spread evenly over the ids.
    let step = (rows / u64::from(args.deleted.max(1))).max(1);
    let gone: Vec<i64> = (0..u64::from(args.deleted))
        .map(|k| (k * step + step / 2 + 1) as i64)
        .filter(|id| (*id as u64) <= rows)
        .collect();
    let n = rt.block_on(sample::delete(&url, "service_history", &gone))?;
    println!("hard-deleted {n} rows");

    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        if round > 1 {
            // Undo the marks, so the next round has the same work to do.
            rusqlite::Connection::open(&warehouse)?.execute(
                "UPDATE internal__service_history SET _deleted = 0 WHERE _deleted = 1",
                [],
            )?;
        }
        let r = measure(&dir, &manifest, &warehouse, &db, &url, rows - n, n)?;
        println!(
            "round {round}: ceiling {:.2}s, connector alone {:.2}s, tributary run {:.2}s (peak RSS {})",
            r.ceiling, r.connector, r.host.secs, r.host.rss
        );
        rounds.push(r);
    }
    let best = |f: fn(&Round) -> f64| rounds.iter().map(f).fold(f64::MAX, f64::min);
    let (ceiling, connector) = (best(|r| r.ceiling), best(|r| r.connector));
    let timed = rounds
        .iter()
        .min_by(|a, b| a.host.secs.total_cmp(&b.host.secs))
        .map(|r| &r.host)
        .context("at least one round")?;
    let keys = rows - n;
    println!(
        "\nreconciliation of {keys} live keys, {n} deleted (best of {} rounds):",
        rounds.len()
    );
    println!(
        "  sqlite3 ceiling (list ids + anti-join):  {ceiling:>6.2}s  {:>10.0} keys/s",
        keys as f64 / ceiling
    );
    println!(
        "  connector alone (listing into counter): {connector:>6.2}s  {:>10.0} keys/s",
        keys as f64 / connector
    );
    println!(
        "  tributary run (release .so → SQLite):   {:>6.2}s  {:>10.0} keys/s  ({:.2}× ceiling time)  peak RSS {}  deleted {}",
        timed.secs,
        keys as f64 / timed.secs,
        timed.secs / ceiling,
        timed.rss,
        timed.deleted
    );
    let worst_rss: Option<f64> = rounds
        .iter()
        .filter_map(|r| r.host.rss.split_whitespace().next()?.parse::<f64>().ok())
        .reduce(f64::max);
    println!(
        "  targets: wall < 3 s: {}; peak RSS < 150 MB (worst round): {}",
        if timed.secs < 3.0 { "met" } else { "MISSED" },
        match worst_rss {
            Some(m) if m * 1.048_576 < 150.0 => "met",
            Some(_) => "MISSED",
            None => "unknown",
        }
    );

    if args.full_refresh {
        let full = run_host(&dir, &manifest, &["--full-refresh"])?;
        println!(
            "  tributary run --full-refresh (read = listing): {:.2}s, {} records, peak RSS {}, deleted {}",
            full.secs, full.records, full.rss, full.deleted
        );
    }
    Ok(())
}

/// One round: the sqlite3 ceiling, the connector alone, then the timed `tributary run`
/// (which must mark exactly `deleted` rows).
fn measure(
    dir: &Path,
    manifest: &Path,
    warehouse: &Path,
    db: &Path,
    url: &str,
    live: u64,
    deleted: u64,
) -> Result<Round> {
    // Ceiling: sqlite3 lists the source's ids into a temporary table and marks the
    // warehouse rows that are missing, as the host does, then rolls back.
    let t = Instant::now();
    let out = Command::new("sqlite3")
        .arg(warehouse)
        .arg(format!(
            "ATTACH '{}' AS src; BEGIN; \
             CREATE TEMP TABLE seen (k TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID; \
             INSERT INTO seen SELECT CAST(id AS TEXT) FROM src.service_history ORDER BY id; \
             UPDATE internal__service_history SET _deleted = 1, _extracted_at = 'now' \
             WHERE _deleted = 0 AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.k = internal__service_history._pk); \
             SELECT changes(); ROLLBACK;",
            db.display()
        ))
        .output()
        .context("running sqlite3 (apt-get install sqlite3)")?;
    let ceiling = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let marked = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if marked != deleted.to_string() {
        bail!("the sqlite3 ceiling marked {marked} rows, expected {deleted}");
    }

    // The connector alone: the incremental read (nothing new) and the listing, into a
    // counter, with the state the first sync committed.
    let state: String = rusqlite::Connection::open(warehouse)?.query_row(
        "SELECT state FROM _tributary_state WHERE source = 'internal' AND stream = 'service_history'",
        [],
        |r| r.get(0),
    )?;
    let request = ReadRequest {
        config: serde_json::json!({ "url": url, "reconcile_every": "always" }),
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: "service_history".into(),
                sync_mode: SyncMode::Incremental,
            }],
        },
        state: [("service_history".to_string(), serde_json::from_str(&state)?)].into(),
        window: Default::default(),
    };
    let counter = Arc::new(Counter::default());
    let t = Instant::now();
    InProcess::<tributary_internal_db::InternalDb>::read(&request, counter.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let connector = t.elapsed().as_secs_f64();
    if counter.records.load(Ordering::Relaxed) != 0 {
        bail!("the incremental read found changes; expected only the listing");
    }
    let listed = counter.keys.load(Ordering::Relaxed);
    if listed != live {
        bail!("the connector listed {listed} keys, expected {live}");
    }

    let host = run_host(dir, manifest, &[])?;
    if host.deleted != deleted {
        bail!("the run marked {} rows, expected {deleted}", host.deleted);
    }
    Ok(Round {
        ceiling,
        connector,
        host,
    })
}
