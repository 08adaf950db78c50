//! SuperOps throughput and budget benchmark (not a test).
//!
//! ```text
//! cargo run --release -p tributary-bench --bin superops
//! ```
//!
//! 1. **Throughput**: 100,000 tickets from the emulator with its limits off, pages of 100,
//!    concurrent page fetches, read in-process through the same glue a plugin uses.
//!    The emulator runs in a child process (this binary re-executed with `--serve`), so
//!    the peak RSS printed (VmHWM) is the connector's alone.
//! 2. **Budget**: the emulator throttles at 800 requests per sliding minute, the connector's
//!    budget is 800 per minute, and the run needs about 1,200 requests (30,000 tickets in pages of
//!    25): the first 800 go at once, the rest wait for the window to slide, so it takes a
//!    little over a minute and must finish with zero `rate_limit_exceeded`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tributary_bench::vm_hwm_kb;

use clap::Parser;
use serde_json::json;
use tributary_sdk::host::{HostHandler, InProcess, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ControlMessage, LogLevel, ReadRequest, StreamStatus,
    SyncMode, Window,
};
use tributary_superops::SuperOps;

#[derive(Debug, Parser)]
struct Args {
    /// Tickets in the throughput run.
    #[arg(long, default_value_t = 100_000)]
    tickets: usize,
    /// Concurrent page fetches in the throughput run.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Skip the one-minute budget run.
    #[arg(long)]
    skip_budget: bool,
    /// Internal: serve the emulator (arguments after this are passed to it).
    #[arg(long, hide = true, num_args = 0.., allow_hyphen_values = true)]
    serve: Option<Vec<String>>,
}

/// The emulator's own options, parsed in the child process.
#[derive(Debug, Parser)]
struct ServeCli {
    #[command(flatten)]
    args: tributary_sandbox::superops::CliArgs,
}

/// Counts records and throttling log lines; keeps nothing, like a fast destination.
#[derive(Default)]
struct Counting {
    records: AtomicU64,
    throttled_logs: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

impl HostHandler for Counting {
    fn records(&self, _stream: &str, batch: RecordBatch) -> Result<(), String> {
        // Touch every record so the data is really produced.
        let bytes: usize = batch.iter().map(|r| r.data.len() + r.pk.len()).sum();
        std::hint::black_box(bytes);
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
            if let Ok(mut f) = self.failures.lock() {
                f.push(format!("{stream}: {error}"));
            }
        }
    }
    fn log(&self, _level: LogLevel, _target: &str, message: &str) {
        if message.contains("rate limit exceeded") {
            self.throttled_logs.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn log_level(&self) -> LogLevel {
        LogLevel::Warn
    }
}

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the emulator in a child process and reads its URL from the first stdout line.
fn serve(args: &[&str]) -> anyhow::Result<Served> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| anyhow::anyhow!("emulator said {line:?}"))?
        .to_string();
    Ok(Served { child, url })
}

fn run(
    url: &str,
    config_extra: serde_json::Value,
    limit: Option<u64>,
) -> anyhow::Result<(u64, f64, Arc<Counting>)> {
    let mut config = json!({
        "api_url": url,
        "subdomain": "acme-msp",
        "api_token": "sandbox-token-0123456789abcdef",
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), config_extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    let request = ReadRequest {
        config,
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: "tickets".into(),
                sync_mode: SyncMode::FullRefresh,
            }],
        },
        state: BTreeMap::new(),
        window: Window {
            limit,
            ..Window::default()
        },
    };
    let handler = Arc::new(Counting::default());
    let t0 = Instant::now();
    InProcess::<SuperOps>::read(&request, handler.clone())
        .map_err(|e| anyhow::anyhow!("read failed: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((handler.records.load(Ordering::Relaxed), secs, handler))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(serve_args) = args.serve {
        let cli =
            ServeCli::try_parse_from(std::iter::once("serve".to_string()).chain(serve_args))?.args;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(tributary_sandbox::superops::run_cli(cli));
    }

    println!(
        "== throughput: {} tickets, pages of 100, concurrency {}, emulator limits off",
        args.tickets, args.concurrency
    );
    let tickets = args.tickets.to_string();
    let emu = serve(&["--tickets", &tickets, "--rate-limit", "0"])?;
    // Warm the emulator's sorted index so the first page is not timed as a sort.
    run(&emu.url, json!({"requests_per_minute": 0}), Some(1))?;
    let rss_before = vm_hwm_kb();
    let (n, secs, _) = run(
        &emu.url,
        json!({"requests_per_minute": 0, "concurrency": args.concurrency, "page_size": 100}),
        None,
    )?;
    println!(
        "tickets: {n} records in {secs:.2} s = {:.0} records/s; peak RSS (VmHWM) {:.1} MB (before the timed run {:.1} MB)",
        n as f64 / secs,
        vm_hwm_kb() as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    drop(emu);

    if !args.skip_budget {
        println!("== budget: emulator throttles above 800 requests/min; connector budget 800/min; 30,000 tickets in pages of 25 (1,200+ requests)");
        // In-process this time: RSS does not matter here, and the emulator's own counters
        // (throttled responses, peak requests in any 60 s window) are the evidence.
        let emu = tributary_sandbox::superops::Emulator::start(
            tributary_sandbox::superops::EmulatorConfig {
                size: tributary_sandbox::superops::TenantSize {
                    tickets: 30_000,
                    ..Default::default()
                },
                rate_limit: Some(tributary_sandbox::superops::RateLimit::per_minute(800)),
                ..Default::default()
            },
        )?;
        let (n, secs, h) = run(
            &emu.url(),
            json!({"requests_per_minute": 800, "concurrency": 4, "page_size": 25}),
            None,
        )?;
        let failures = h.failures.lock().map(|f| f.len()).unwrap_or_default();
        let stats = emu.stats();
        println!(
            "tickets: {n} records in {secs:.1} s; {} requests; peak in any 60 s window {} (limit 800); rate_limit_exceeded answered by the server: {}, seen by the connector: {}; stream failures: {failures}",
            stats.accepted,
            stats.peak_in_window,
            stats.throttled,
            h.throttled_logs.load(Ordering::Relaxed),
        );
        anyhow::ensure!(
            stats.throttled == 0 && stats.peak_in_window <= 800,
            "the budget was exceeded"
        );
    }
    Ok(())
}
