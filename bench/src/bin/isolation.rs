//! What process isolation costs, not a test: the internal-db sync of N `service_history`
//! rows (default 1,000,000) into the SQLite warehouse with the plugin in process and with
//! `isolation = "process"`, alternating rounds in the same run so drift on a shared
//! machine hits both alike. Prints the best rows/s of each, their ratio, and the peak RSS
//! of the host (and of the plugin process, which the host's figure does not include).
//!
//! ```text
//! cargo run --release -p tributary-bench --bin isolation -- --rows 1000000 --rounds 3
//! ```

#[path = "../source.rs"]
mod source;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use tributary_bench::{build_release, workspace};

#[derive(Parser)]
struct Args {
    /// service_history rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u32,
    /// Rounds of each configuration (the best of each is compared).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Working directory (default: target/bench-isolation).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One timed sync.
struct Sync {
    secs: f64,
    host_rss: String,
    plugin_rss: Option<String>,
}

fn sync(dir: &Path, db: &Path, isolation: &str) -> Result<Sync> {
    let manifest = dir.join(format!("bench-{isolation}.toml"));
    let warehouse = dir.join(format!("warehouse-{isolation}.db"));
    let _ = std::fs::remove_file(&warehouse);
    std::fs::write(
        &manifest,
        format!(
            "[host]\nplugin_dir = \"{}\"\n[destination]\nkind = \"sqlite\"\npath = \"{}\"\n[sources.internal]\nplugin = \"internal-db\"\nisolation = \"{isolation}\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
            workspace().join("target/release").display(),
            warehouse.display(),
            db.display()
        ),
    )?;
    let started = Instant::now();
    // Info for the runner only: the plugin process reports its peak RSS at info; the
    // same filter for both configurations.
    let output = Command::new(workspace().join("target/release/tributary"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("run")
        .env("RUST_LOG", "warn,tributary::runner=info")
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("tributary failed ({isolation}):\n{stdout}\n{stderr}");
    }
    let host_rss = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak memory (RSS): "))
        .unwrap_or("?")
        .to_string();
    // Each call (spec, discover, read) is a process of its own; the read is the largest.
    let plugin_rss = stderr
        .lines()
        .filter_map(|l| l.split("plugin process peak memory (RSS): ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .reduce(f64::max)
        .map(|mib| format!("{mib:.1} MiB"));
    Ok(Sync {
        secs,
        host_rss,
        plugin_rss,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    build_release(&["tributary", "tributary-internal-db"])?;
    let dir = args
        .dir
        .unwrap_or_else(|| workspace().join("target/bench-isolation"));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("source.db");
    let rows = source::service_history_source(&db, args.rows)? as f64;
    println!("generated {rows} service_history rows");

    let mut best: [Option<Sync>; 2] = [None, None];
    for round in 1..=args.rounds {
        for (i, isolation) in ["in-process", "process"].into_iter().enumerate() {
            let s = sync(&dir, &db, isolation)?;
            println!(
                "round {round} {isolation:<10} {:>10.0} rows/s  host RSS {}{}",
                rows / s.secs,
                s.host_rss,
                s.plugin_rss
                    .as_deref()
                    .map(|r| format!("  plugin process RSS {r}"))
                    .unwrap_or_default()
            );
            if best[i].as_ref().is_none_or(|b| s.secs < b.secs) {
                best[i] = Some(s);
            }
        }
    }
    let [Some(inside), Some(outside)] = best else {
        bail!("no rounds run");
    };
    println!(
        "in process:           {:>10.0} rows/s  peak RSS {}",
        rows / inside.secs,
        inside.host_rss
    );
    println!(
        "isolation = process:  {:>10.0} rows/s  peak RSS host {} + plugin process {}",
        rows / outside.secs,
        outside.host_rss,
        outside.plugin_rss.as_deref().unwrap_or("?")
    );
    let cost = (outside.secs / inside.secs - 1.0) * 100.0;
    println!(
        "process isolation: {:.1}% {} than in process (best of {} rounds each; target: at most 15% slower)",
        cost.abs(),
        if cost >= 0.0 { "slower" } else { "faster" },
        args.rounds
    );
    Ok(())
}
