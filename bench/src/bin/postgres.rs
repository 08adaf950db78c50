//! Benchmark of the PostgreSQL destination (issue 9), not a test:
//!
//! 1. generates N `service_history` rows (default 1,000,000) in a SQLite source file;
//! 2. runs the real `tributary` binary (release) into a fresh schema of a loopback
//!    PostgreSQL, reading its rows/s and peak RSS;
//! 3. the ceiling, in the same run: the rows tributary wrote, exported once to CSV, then
//!    loaded by `psql \copy` into an equivalent table (same columns, primary key, jsonb);
//! 4. prints both and their ratio (target: tributary ≥ 0.3× the ceiling).
//!
//! The server is `TRIBUTARY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); it must be on this machine.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin postgres -- --rows 1000000
//! ```

#[path = "../source.rs"]
mod source;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tributary_bench::{build_release, run_tributary, workspace};

#[derive(Parser)]
struct Args {
    /// service_history rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u32,
    /// Working directory (default: target/bench-postgres).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs `psql <url> -v ON_ERROR_STOP=1 -qc <command>`, returning its wall time.
fn psql(url: &str, command: &str) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let url = std::env::var("TRIBUTARY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let authority = url.split("://").nth(1).unwrap_or_default();
    let host = authority
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    if !(host.starts_with("127.0.0.1")
        || host.starts_with("localhost")
        || host.starts_with("[::1]"))
    {
        bail!("the benchmark only runs against a loopback server (got host {host})");
    }
    build_release(&["tributary", "tributary-internal-db"])?;
    let dir = args
        .dir
        .unwrap_or_else(|| workspace().join("target/bench-postgres"));
    std::fs::create_dir_all(&dir)?;

    // The source: the same 1M internal rows as the pipeline benchmark.
    let db = dir.join("source.db");
    let t = Instant::now();
    let rows = source::service_history_source(&db, args.rows)?;
    println!(
        "generated {rows} service_history rows in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let schema = format!("bench_{}", std::process::id());
    let result = measure(&dir, &db, &url, &schema, rows);
    let _ = psql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    result
}

fn measure(dir: &Path, db: &Path, url: &str, schema: &str, rows: u64) -> Result<()> {
    // tributary, with the URL from the environment as a manifest would have it.
    std::env::set_var("TRIBUTARY_BENCH_WAREHOUSE_URL", url);
    let manifest = dir.join("bench-postgres.toml");
    std::fs::write(
        &manifest,
        format!(
            "[host]\nplugin_dir = \"{}\"\n[destination]\nkind = \"postgres\"\nurl = \"${{TRIBUTARY_BENCH_WAREHOUSE_URL}}\"\nschema = \"{schema}\"\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
            workspace().join("target/release").display(),
            db.display()
        ),
    )?;
    let run = run_tributary(&manifest, &[])?;
    let tributary = rows as f64 / run.secs;

    // The ceiling: the same rows, as they landed, loaded by psql \copy.
    let csv = dir.join("rows.csv");
    let columns =
        "_pk, _source, _stream, _cursor, _extracted_at, _deleted, _violations, data, _raw";
    psql(
        url,
        &format!(
            "\\copy (SELECT {columns} FROM {schema}.internal__service_history) TO '{}' CSV",
            csv.display()
        ),
    )?;
    psql(
        url,
        &format!(
            "CREATE TABLE {schema}.ceiling (_pk text PRIMARY KEY, _source text NOT NULL, _stream text NOT NULL,
               _cursor text, _extracted_at text NOT NULL, _deleted boolean NOT NULL DEFAULT false,
               _violations jsonb, data jsonb NOT NULL, _raw bytea)"
        ),
    )?;
    let secs = psql(
        url,
        &format!(
            "\\copy {schema}.ceiling ({columns}) FROM '{}' CSV",
            csv.display()
        ),
    )?;
    let ceiling = rows as f64 / secs;
    let _ = std::fs::remove_file(&csv);

    println!("psql \\copy ceiling:            {ceiling:>10.0} rows/s");
    println!(
        "tributary → PostgreSQL:        {tributary:>10.0} rows/s  ({:.2}× ceiling, target ≥ 0.30×)  peak RSS {}",
        tributary / ceiling,
        run.rss
    );
    Ok(())
}
