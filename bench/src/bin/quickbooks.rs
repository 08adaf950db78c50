//! Throughput, memory and budget use of the QuickBooks connector (not a test).
//!
//! Phase 1 extracts N invoices (default 100,000) from the emulator with its limits off,
//! through `InProcess<QuickBooks>` (the plugin glue minus `dlopen`), and prints records/s
//! and the benchmark process's peak RSS (VmHWM). The emulator runs in a child process
//! (this binary re-executed), so its in-memory company does not count against the
//! connector's memory.
//!
//! Phase 2 has the emulator enforce QuickBooks' rate (500 requests/min, 10/s, 10 in
//! flight) and lets the connector read small pages for a fixed time, then prints how much
//! of the allowed budget it used and how many 429s it got. To finish in about a minute
//! the per-minute limit is scaled, same rate: 125 requests per 15-second window, measured
//! over four windows (pass `--window-secs 60 --per-window 500 --windows 2` for the
//! unscaled limit, about two minutes).
//!
//! ```text
//! cargo run --release -p tributary-bench --bin quickbooks
//! ```

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_bench::vm_hwm_kb;

use anyhow::{anyhow, Context};
use clap::Parser;
use serde_json::{json, Value};
use tributary_quickbooks::QuickBooks;
use tributary_sandbox::quickbooks::{Counts, Emulator, EmulatorConfig, Limits};
use tributary_sdk::host::{HostHandler, InProcess, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ControlMessage, LogLevel, ReadRequest, StreamStatus,
    SyncMode,
};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Benchmark the QuickBooks connector against the emulator")]
struct Args {
    /// Invoices in the emulated company (phase 1).
    #[arg(long, default_value_t = 100_000)]
    invoices: usize,
    /// Query page size for phase 1.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Budget phase: length of the emulator's (and connector's) long window, seconds.
    #[arg(long, default_value_t = 15)]
    window_secs: u64,
    /// Budget phase: requests allowed per window (125 per 15 s is 500 per minute).
    #[arg(long, default_value_t = 125)]
    per_window: u32,
    /// Budget phase: windows to measure.
    #[arg(long, default_value_t = 4)]
    windows: u32,
    /// Skip phase 2.
    #[arg(long)]
    no_budget: bool,
    /// Internal: run as the emulator child process.
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// Counts records; cancels the read at a deadline.
struct Counter {
    records: AtomicU64,
    bytes: AtomicU64,
    deadline: Mutex<Option<Instant>>,
    cancelled: AtomicBool,
}

impl HostHandler for Counter {
    fn records(&self, _stream: &str, batch: RecordBatch) -> Result<(), String> {
        let bytes: usize = batch.iter().map(|r| r.data.len()).sum();
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }
    fn state(&self, _stream: &str, _state: &str) -> Result<(), String> {
        Ok(())
    }
    fn control(&self, _message: ControlMessage) -> Result<(), String> {
        Ok(())
    }
    fn stream_status(&self, _stream: &str, _status: StreamStatus) {}
    fn log(&self, level: LogLevel, target: &str, message: &str) {
        if level <= self.log_level() && target.starts_with("tributary") {
            eprintln!("  [{level:?}] {target}: {message}");
        }
    }
    fn log_level(&self) -> LogLevel {
        // QB_BENCH_DEBUG=1 prints every request with its latency.
        if std::env::var_os("QB_BENCH_DEBUG").is_some() {
            LogLevel::Debug
        } else {
            LogLevel::Warn
        }
    }
    fn is_cancelled(&self) -> bool {
        let due = self
            .deadline
            .lock()
            .map(|d| d.is_some_and(|d| Instant::now() >= d))
            .unwrap_or(false);
        if due {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        due
    }
}

/// user + system CPU seconds of a process, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn reset_hwm() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The emulator child: start, print the connector config, serve until stdin closes.
fn child(spec: &str, invoices: usize) -> anyhow::Result<()> {
    let limits = match spec.split(':').collect::<Vec<_>>().as_slice() {
        ["off"] => Limits::off(),
        ["limited", window, per] => Limits {
            per_minute: per.parse()?,
            minute_window: Duration::from_secs(window.parse()?),
            ..Limits::production()
        },
        _ => return Err(anyhow!("bad child spec {spec}")),
    };
    let emu = Emulator::start(EmulatorConfig {
        counts: Counts::invoices_only(invoices),
        limits,
        ..EmulatorConfig::default()
    })?;
    println!("{}", json!({"config": emu.connector_config()}));
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(emu);
    Ok(())
}

struct ChildEmulator {
    process: std::process::Child,
    config: Value,
}

impl ChildEmulator {
    fn start(spec: &str, invoices: usize) -> anyhow::Result<ChildEmulator> {
        let mut process = Command::new(std::env::current_exe()?)
            .args(["--child", spec, "--invoices", &invoices.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the emulator child")?;
        let stdout = process
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no child stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line).context("child said something odd")?;
        Ok(ChildEmulator {
            process,
            config: v["config"].clone(),
        })
    }

    fn stats(&self) -> anyhow::Result<Value> {
        let base = self.config["base_url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let text = reqwest_get(&format!("{base}/emulator/stats")).await?;
            Ok(serde_json::from_str(&text)?)
        })
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.wait();
    }
}

/// A tiny HTTP GET over a raw socket (the bench crate does not depend on reqwest).
async fn reqwest_get(url: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("http only"))?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(body)
}

fn request(config: Value) -> ReadRequest {
    ReadRequest {
        config,
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: "invoices".into(),
                sync_mode: SyncMode::FullRefresh,
            }],
        },
        state: Default::default(),
        window: Default::default(),
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.child {
        return child(spec, args.invoices);
    }
    // Phase 1: throughput.
    println!(
        "phase 1: {} invoices, emulator limits off, page size {}",
        args.invoices, args.page_size
    );
    let emu = ChildEmulator::start("off", args.invoices)?;
    let config = merge(
        emu.config.clone(),
        json!({"page_size": args.page_size, "requests_per_minute": 0, "requests_per_second": 0, "max_concurrency": 0}),
    );
    reset_hwm();
    let rss_before = vm_hwm_kb();
    let counter = Arc::new(Counter {
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        deadline: Mutex::new(None),
        cancelled: AtomicBool::new(false),
    });
    let child_pid = emu.process.id().to_string();
    let (cpu_self, cpu_child) = (cpu_secs("self"), cpu_secs(&child_pid));
    let started = Instant::now();
    InProcess::<QuickBooks>::read(&request(config), counter.clone())
        .map_err(|e| anyhow!("read failed: {e}"))?;
    let elapsed = started.elapsed();
    let (cpu_self, cpu_child) = (
        cpu_secs("self") - cpu_self,
        cpu_secs(&child_pid) - cpu_child,
    );
    let records = counter.records.load(Ordering::Relaxed);
    let mb = counter.bytes.load(Ordering::Relaxed) as f64 / 1e6;
    println!("  records:        {records}");
    println!("  elapsed:        {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput:     {:.0} records/s ({:.1} MB/s of JSON)",
        records as f64 / elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64()
    );
    println!(
        "  peak RSS:       {:.1} MB (VmHWM of this process; {:.1} MB before the read)",
        vm_hwm_kb() as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    println!(
        "  CPU:            connector {cpu_self:.2} s, emulator {cpu_child:.2} s (2 cores shared)"
    );
    if records != args.invoices as u64 {
        return Err(anyhow!("expected {} records, got {records}", args.invoices));
    }
    drop(emu);
    if args.no_budget {
        return Ok(());
    }

    // Phase 2: budget use under the enforced limit.
    let window = Duration::from_secs(args.window_secs);
    let horizon = window * args.windows;
    println!(
        "phase 2: emulator enforces {} requests per {} s (= {:.0}/min), 10/s, 10 in flight; measuring {} windows ({} s)",
        args.per_window,
        args.window_secs,
        f64::from(args.per_window) * 60.0 / args.window_secs as f64,
        args.windows,
        horizon.as_secs()
    );
    let emu = ChildEmulator::start(
        &format!("limited:{}:{}", args.window_secs, args.per_window),
        20_000,
    )?;
    // Small pages, so there are always more requests to make than the budget allows.
    let config = merge(
        emu.config.clone(),
        json!({"page_size": 10, "requests_per_minute": args.per_window, "budget_window_secs": args.window_secs,
        "requests_per_second": 10, "max_concurrency": 10, "retry_after_default_secs": 60}),
    );
    let counter = Arc::new(Counter {
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        deadline: Mutex::new(None),
        cancelled: AtomicBool::new(false),
    });
    // Stop just after the horizon so the last window is complete.
    *counter.deadline.lock().map_err(|_| anyhow!("lock"))? =
        Some(Instant::now() + horizon + Duration::from_secs(2));
    let started = Instant::now();
    let result = InProcess::<QuickBooks>::read(&request(config), counter.clone());
    let elapsed = started.elapsed();
    if let Err(e) = &result {
        if !counter.cancelled.load(Ordering::Relaxed) {
            return Err(anyhow!("read failed: {e}"));
        }
    }
    let stats = emu.stats()?;
    let allowed = u64::from(args.per_window) * u64::from(args.windows);
    let admitted = stats["admitted"].as_u64().unwrap_or(0);
    let max_window = stats["max_admitted_in_window"].as_u64().unwrap_or(0);
    let throttled = stats["throttled"].as_u64().unwrap_or(0);
    // Requests admitted during the horizon (the read ran horizon + 2 s; the emulator's
    // per-window maximum bounds what fell in any one window).
    println!(
        "  elapsed:        {:.1} s, {} records",
        elapsed.as_secs_f64(),
        counter.records.load(Ordering::Relaxed)
    );
    println!(
        "  requests:       {admitted} admitted (allowed over {} windows: {allowed})",
        args.windows
    );
    println!("  utilisation:    {:.1}% of the allowed budget over the run ({admitted} / {:.0} allowed in {:.1} s)", 100.0 * admitted as f64 / (f64::from(args.per_window) * elapsed.as_secs_f64() / args.window_secs as f64), f64::from(args.per_window) * elapsed.as_secs_f64() / args.window_secs as f64, elapsed.as_secs_f64());
    println!(
        "  busiest window: {max_window} of {} allowed ({:.1}%)",
        args.per_window,
        100.0 * max_window as f64 / f64::from(args.per_window)
    );
    println!("  429s:           {throttled}");
    Ok(())
}
