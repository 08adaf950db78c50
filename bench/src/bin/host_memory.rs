//! Peak memory of the whole host (not a test): the release `tributary` binary and
//! plugins syncing each connector's biggest stream at two sizes, side by side, so any
//! growth with the data shows. The target is under 150 MB whatever the size.
//!
//! - internal-db: N `service_history` rows in a SQLite file generated beforehand;
//! - quickbooks: every stream of an emulated company of N invoices (its
//!   `transaction_list` report has N rows too), limits off;
//! - superops: every stream of an emulated tenant of N tickets, limits off.
//!
//! The emulators run as separate processes (`tributary-sandbox`), so their in-memory
//! companies do not count; the host's figure is the peak RSS it prints itself.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin host_memory                      # 100k and 1M
//! cargo run --release -p tributary-bench --bin host_memory -- --sizes 10000,100000
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tributary_bench::{build_release, run_tributary, workspace, TributaryRun};
use tributary_internal_db::sample::{self, SampleSpec};

#[derive(Parser)]
#[command(about = "Peak RSS of tributary run per connector at two data sizes")]
struct Args {
    /// Sizes to compare (rows, invoices or tickets).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<u64>,
    /// Connectors to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "internal-db,quickbooks,superops"
    )]
    connectors: Vec<String>,
    /// Working directory (default: target/bench-host-memory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// An emulator child process, stopped when dropped.
struct Emulator {
    child: Child,
    /// What it printed before serving (the endpoint, and for QuickBooks a config block).
    banner: Vec<String>,
}

impl Emulator {
    /// Starts `tributary-sandbox <args>` and reads its banner up to the line containing
    /// `last` (generation of a large company takes a while; the banner comes after it).
    fn start(args: &[&str], last: &str) -> Result<Emulator> {
        let mut child = Command::new(workspace().join("target/release/tributary-sandbox"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tributary-sandbox")?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut banner = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            let done = line.contains(last);
            banner.push(line);
            if done {
                return Ok(Emulator { child, banner });
            }
        }
        bail!("the emulator ended before printing {last:?}: {banner:?}")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(dir: &Path) -> String {
    format!(
        "[host]\nplugin_dir = \"{}\"\ncredentials = \"{}\"\n[destination]\nkind = \"sqlite\"\npath = \"{}\"\n",
        workspace().join("target/release").display(),
        dir.join("credentials.json").display(),
        dir.join("warehouse.db").display()
    )
}

/// Runs one connector at one size in a fresh directory; returns the run and the records
/// of its biggest stream.
fn measure(connector: &str, size: u64, root: &Path) -> Result<(TributaryRun, u64, &'static str)> {
    let dir = root.join(format!("{connector}-{size}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("connectors.toml");
    let (body, _emulator, stream) = match connector {
        "internal-db" => {
            let db = dir.join("source.db");
            let clients = (size / 1000).clamp(1, 10_000);
            let spec = SampleSpec {
                clients: clients as u32,
                seed: 42,
                service_history_per_client: (size / clients) as u32,
                satisfaction_scores_per_client: 0,
                communication_engagement_per_client: 0,
                contracts_per_client: 0,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(sample::generate(&format!("sqlite:{}", db.display()), &spec))?;
            let body = format!(
                "[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
                db.display()
            );
            (body, None, "internal.service_history")
        }
        "quickbooks" => {
            let n = size.to_string();
            let emu = Emulator::start(
                &["quickbooks", "--port", "0", "--no-limits", "--invoices", &n],
                "token_url",
            )?;
            let config: Vec<&str> = emu
                .banner
                .iter()
                .skip_while(|l| !l.starts_with("[sources.quickbooks.config]"))
                .map(String::as_str)
                .collect();
            let body = format!(
                "[sources.quickbooks]\nplugin = \"quickbooks\"\n{}\n",
                config.join("\n")
            );
            (body, Some(emu), "quickbooks.invoices")
        }
        "superops" => {
            let n = size.to_string();
            let emu = Emulator::start(
                &["superops", "--rate-limit", "0", "--tickets", &n],
                "listening on",
            )?;
            let url = emu
                .banner
                .iter()
                .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
                .context("the superops endpoint")?
                .to_string();
            let body = format!(
                "[sources.superops]\nplugin = \"superops\"\n[sources.superops.config]\napi_url = \"{url}\"\nsubdomain = \"acme-msp\"\napi_token = \"sandbox-token-0123456789abcdef\"\nrequests_per_minute = 0\n"
            );
            (body, Some(emu), "superops.tickets")
        }
        other => bail!("unknown connector {other}"),
    };
    std::fs::write(&manifest, format!("{}{body}", header(&dir)))?;
    let report = dir.join("report.json");
    let report_arg = report.to_str().unwrap_or_default();
    let run = run_tributary(&manifest, &["--report", report_arg])?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let (source, name) = stream.split_once('.').unwrap_or((stream, ""));
    let records = report["streams"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["source"] == source && r["stream"] == name)
        })
        .and_then(|r| r["records"].as_u64())
        .unwrap_or(0);
    Ok((run, records, stream))
}

fn main() -> Result<()> {
    let args = Args::parse();
    build_release(&[
        "tributary",
        "tributary-internal-db",
        "tributary-quickbooks",
        "tributary-superops",
        "tributary-sandbox",
    ])?;
    let root = args
        .dir
        .unwrap_or_else(|| workspace().join("target/bench-host-memory"));
    std::fs::create_dir_all(&root)?;
    let mut lines = Vec::new();
    for connector in &args.connectors {
        let mut cells = Vec::new();
        for &size in &args.sizes {
            let (run, records, stream) = measure(connector, size, &root)
                .with_context(|| format!("{connector} at {size}"))?;
            println!(
                "{connector} at {size}: {records} {stream} records, all streams in {:.1}s, peak RSS {}",
                run.secs, run.rss
            );
            cells.push(format!("{:>10} @ {size}", run.rss));
        }
        lines.push(format!("{connector:<12} {}", cells.join("   ")));
    }
    println!("\npeak RSS of tributary run (target: under 150 MB at every size):");
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}
