//! Parallel versus sequential, measured: the quick start's three sources (the `[sandbox]`
//! MSP) with every emulator answering after a set latency, synced
//!
//! 1. each source alone (the slowest of them is the floor a parallel run can reach),
//! 2. all three at once (the default), and
//! 3. all three with `--sequential` (about the sum of the three alone),
//!
//! each into a fresh warehouse, with the wall times and the two ratios printed. The
//! target: parallel within 1.2× of the slowest source alone.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin parallel                   # 50 ms, 200 clients
//! cargo run --release -p tributary-bench --bin parallel -- --latency-ms 100 --clients 400
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use tributary_bench::{build_release, run_tributary, workspace};

#[derive(Parser)]
#[command(about = "Wall time of tributary run: parallel versus sequential under latency")]
struct Args {
    /// Milliseconds every emulator adds to each answer.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Clients of the sample MSP.
    #[arg(long, default_value_t = 200)]
    clients: u32,
    /// Working directory (default: target/bench-parallel).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const SOURCES: [&str; 3] = ["internal", "superops", "quickbooks"];

/// A fresh directory with the quick-start manifest, latency on.
fn project(dir: &Path, name: &str, args: &Args) -> Result<PathBuf> {
    let root = dir.join(name);
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    let shipped = std::fs::read_to_string(workspace().join("connectors.toml"))?;
    let manifest = shipped
        .replace(
            "plugin_dir = \"target/release\"",
            &format!(
                "plugin_dir = \"{}\"",
                workspace().join("target/release").display()
            ),
        )
        .replace(
            "clients = 200 ",
            &format!(
                "clients = {}\nlatency_ms = {} ",
                args.clients, args.latency_ms
            ),
        );
    let path = root.join("connectors.toml");
    std::fs::write(&path, manifest)?;
    Ok(path)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| workspace().join("target/bench-parallel"));
    build_release(&[
        "tributary",
        "tributary-internal-db",
        "tributary-superops",
        "tributary-quickbooks",
        "tributary-sandbox",
    ])?;
    // The sample internal database is created once, outside the timings.
    let warm = project(&dir, "warm", &args)?;
    run_tributary(&warm, &["--source", "internal", "--limit", "1"]).context("warm-up")?;
    let sample = warm.with_file_name("data").join("internal.db");

    let timed = |name: &str, extra: &[&str]| -> Result<f64> {
        let manifest = project(&dir, name, &args)?;
        let data = manifest.with_file_name("data");
        std::fs::create_dir_all(&data)?;
        std::fs::copy(&sample, data.join("internal.db"))?;
        let run = run_tributary(&manifest, extra).with_context(|| name.to_string())?;
        Ok(run.secs)
    };

    println!(
        "latency {} ms per request, {} clients; wall time of `tributary run`, each into a fresh warehouse\n",
        args.latency_ms, args.clients
    );
    let mut alone = Vec::new();
    for source in SOURCES {
        let secs = timed(&format!("alone-{source}"), &["--source", source])?;
        println!("{:<28} {secs:>8.2} s", format!("{source} alone"));
        alone.push(secs);
    }
    let slowest = alone.iter().copied().fold(0.0, f64::max);
    let sum: f64 = alone.iter().sum();
    let parallel = timed("parallel", &[])?;
    let sequential = timed("sequential", &["--sequential"])?;
    println!("{:<28} {parallel:>8.2} s", "all three, parallel");
    println!("{:<28} {sequential:>8.2} s", "all three, --sequential");
    println!();
    println!(
        "parallel   / slowest alone = {:.2}  (target <= 1.20)",
        parallel / slowest
    );
    println!(
        "sequential / sum of alone  = {:.2}  (about 1: one source after another)",
        sequential / sum
    );
    println!("sequential / slowest alone = {:.2}", sequential / slowest);
    Ok(())
}
