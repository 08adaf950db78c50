//! Real-time figures of `tributary watch` (not a test), through the release binary.
//!
//! 1. Latency, change → WebSocket subscriber, p50/p99: a QuickBooks emulator invoice is
//!    updated (`/emulator/mutations`) and the clock stops when its event arrives on
//!    `/events`. Once with the emulator's signed webhooks and the source's interval at
//!    60 s (only the webhook explains a fetch), once polled every 1 s, without webhooks.
//! 2. Throughput: a SQLite `service_history` table of `--rows` rows is updated in bulk,
//!    `--rounds` times; events/s reaching each of `--subscribers` WebSocket subscribers,
//!    and reaching one subscriber behind the JetStream sink (NATS at `--nats`), with the
//!    watch process's peak RSS (VmHWM).
//!
//! Every loop is bounded in count and time; everything is on loopback.
//!
//! ```text
//! cargo run --release -p tributary-bench --bin watch
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tributary_bench::{build_release, workspace};
use tributary_internal_db::sample::{self, SampleSpec};

const TOKEN: &str = "bench-token";
const VERIFIER: &str = "bench-verifier";

#[derive(Debug, Parser)]
#[command(about = "Latency and throughput of tributary watch")]
struct Args {
    /// Changes timed per latency mode.
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// service_history rows changed per throughput round.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Bulk-update rounds per throughput run.
    #[arg(long, default_value_t = 2)]
    rounds: u64,
    /// WebSocket subscribers in the throughput run.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// NATS with JetStream, for the sink run (skipped when unreachable).
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// Skip building the release binaries (they are current).
    #[arg(long)]
    no_build: bool,
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn release(bin: &str) -> PathBuf {
    workspace().join("target/release").join(bin)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `watch` on `manifest`; returns once it listens.
fn start_watch(manifest: &Path) -> Result<Proc> {
    let mut child = Command::new(release("tributary"))
        .arg("--manifest")
        .arg(manifest)
        .arg("watch")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("tributary watch")?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("listening on http://") {
                let _ = tx.send(());
            } else if line.contains("ERROR") {
                eprintln!("watch: {line}");
            }
        }
    });
    let proc = Proc(child);
    rx.recv_timeout(Duration::from_secs(120))
        .map_err(|_| anyhow!("watch did not start listening within 120 s"))?;
    Ok(proc)
}

/// One plain HTTP/1.1 request on loopback; (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `/health` shows a completed cycle of every source.
fn wait_synced(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((_, body)) = http(addr, "GET", "/health", "") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let sources = v["sources"].as_array().cloned().unwrap_or_default();
                if !sources.is_empty() && sources.iter().all(|s| !s["last_success"].is_null()) {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("the first cycle did not complete within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The watch process's peak RSS, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn header(dir: &Path, port: u16) -> String {
    format!(
        "[host]\nplugin_dir = \"{}\"\ncredentials = \"{}\"\n\n[destination]\nkind = \"sqlite\"\npath = \"{}\"\n\n\
         [watch]\nlisten = \"127.0.0.1:{port}\"\nevents_token = \"{TOKEN}\"\nsubscriber_lag = 100000\n",
        workspace().join("target/release").display(),
        dir.join("credentials.json").display(),
        dir.join("warehouse.db").display(),
    )
}

/// Connects to `/events` with the token; `query` as given.
async fn subscribe(
    addr: &str,
    query: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let mut request = format!("ws://{addr}/events{query}").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| anyhow!("subscribe timed out"))??;
    Ok(ws)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The emulator's connector settings, read from its banner.
struct Emulator {
    _proc: Proc,
    addr: String,
    config: String,
}

fn start_emulator(webhook_to: Option<u16>) -> Result<Emulator> {
    let mut cmd = Command::new(release("tributary-sandbox"));
    cmd.args(["quickbooks", "--port", "0", "--no-limits"]);
    if let Some(port) = webhook_to {
        cmd.arg("--webhook-url")
            .arg(format!("http://127.0.0.1:{port}/webhooks/quickbooks"))
            .args(["--webhook-shape", "cloudevents"])
            .env("TRIBUTARY_SANDBOX_WEBHOOK_VERIFIER_TOKEN", VERIFIER);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("tributary-sandbox")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut config = String::new();
        let mut addr = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("QuickBooks emulator listening on http://") {
                addr = Some(a.trim().to_string());
            }
            let key = line.split(" = ").next().unwrap_or("");
            if [
                "realm_id",
                "client_id",
                "client_secret",
                "refresh_token",
                "base_url",
            ]
            .contains(&key)
            {
                config.push_str(&line);
                config.push('\n');
            }
            if key == "token_url" {
                config.push_str(&line);
                config.push('\n');
                let _ = tx.send((addr.clone(), config.clone()));
            }
        }
    });
    let (addr, config) = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("the emulator did not print its config within 60 s"))?;
    Ok(Emulator {
        _proc: proc,
        addr: addr.ok_or_else(|| anyhow!("no emulator address"))?,
        config,
    })
}

/// Latencies (ms) of `samples` invoice updates, with webhooks or polled every second.
async fn latency(dir: &Path, webhook: bool, samples: usize) -> Result<Vec<f64>> {
    let port = free_port()?;
    let emulator = start_emulator(webhook.then_some(port))?;
    let mut manifest = header(dir, port);
    let interval = if webhook { "60s" } else { "1s" };
    manifest.push_str(&format!(
        "\n[sources.qb]\nplugin = \"quickbooks\"\nstreams = [\"invoices\"]\ninterval = \"{interval}\"\n\n[sources.qb.config]\n{}",
        emulator.config
    ));
    if webhook {
        manifest.push_str(&format!(
            "\n[watch.webhooks.qb]\nverifier_token = \"{VERIFIER}\"\n"
        ));
    }
    let path = dir.join("connectors.toml");
    std::fs::write(&path, manifest)?;
    let _watch = start_watch(&path)?;
    let addr = format!("127.0.0.1:{port}");
    wait_synced(&addr, Duration::from_secs(120))?;

    // Arrival instants by primary key, stamped as each frame is read.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut ws = subscribe(&addr, "?stream=invoices").await?;
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let at = Instant::now();
            if let Ok(text) = m.to_text() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                    if let Some(pk) = v["pk"].as_str() {
                        let _ = tx.send((pk.to_string(), at));
                    }
                }
            }
        }
    });
    let mut out = Vec::new();
    let mut id = 0u32;
    let wait = if webhook { 10 } else { 12 };
    for i in 0..samples {
        // Spread the changes over the poll's phase (and let a webhook's fetch finish).
        tokio::time::sleep(Duration::from_millis(150 + (i as u64 * 379) % 1000)).await;
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        let pk = loop {
            id += 1;
            if id > 10_000 {
                bail!("no invoice to update");
            }
            let body = format!(r#"{{"op":"update","entity":"Invoice","id":"{id}"}}"#);
            let (_, answer) = http(&emulator.addr, "POST", "/emulator/mutations", &body)?;
            if answer.contains("true") {
                break id.to_string();
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((got, at))) if got == pk => {
                    out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => bail!("invoice {pk}: no event within {wait} s"),
            }
        }
    }
    Ok(out)
}

/// What one throughput run measured.
struct Throughput {
    /// Per round: events per second, first to last arrival, the slowest subscriber's.
    rates: Vec<f64>,
    lagged: u64,
    /// Peak RSS of watch when the first cycle (100k rows, no subscriber yet) completed.
    synced_rss_mib: f64,
    rss_mib: f64,
}

/// Bulk-updates `rows` rows `rounds` times, measuring arrival at `subscribers`.
async fn throughput(
    dir: &Path,
    db: &Path,
    args: &Args,
    subscribers: usize,
    nats: bool,
) -> Result<Throughput> {
    let port = free_port()?;
    let mut manifest = header(dir, port);
    manifest.push_str(&format!(
        "interval = \"1s\"\n\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n\n\
         [sources.internal.config]\nurl = \"sqlite:{}\"\n",
        db.display()
    ));
    if nats {
        manifest.push_str(&format!(
            "\n[sinks.nats]\nurl = \"nats://{}\"\nstream = \"TRIBUTARY_BENCH\"\nsubject_prefix = \"tributary_bench\"\n",
            args.nats
        ));
    }
    let path = dir.join("connectors.toml");
    std::fs::write(&path, manifest)?;
    let watch = start_watch(&path)?;
    let addr = format!("127.0.0.1:{port}");
    wait_synced(&addr, Duration::from_secs(300))?;
    let synced_rss_mib = peak_rss_mib(watch.0.id());

    // Per subscriber: change events seen, and when the latest arrived; and when the
    // round's first arrived anywhere. Times are nanoseconds since `base`, in atomics, so
    // 100 clients counting a million messages a second do not queue on a lock: the
    // clients share the two cores with watch and must cost as little as they can.
    let base = Instant::now();
    let counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let lagged = Arc::new(AtomicU64::new(0));
    for i in 0..subscribers {
        let mut ws = subscribe(&addr, "").await?;
        let (counts, last, first, lagged) =
            (counts.clone(), last.clone(), first.clone(), lagged.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Ok(text) = m.to_text() else { continue };
                // No parsing: the client must not be what is measured.
                if text.starts_with(r#"{"type":"change""#) {
                    let at = base.elapsed().as_nanos() as u64;
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    last[i].store(at, Ordering::Relaxed);
                    if first.load(Ordering::Relaxed) == u64::MAX {
                        first.fetch_min(at, Ordering::Relaxed);
                    }
                } else if text.starts_with(r#"{"type":"lagged""#) {
                    lagged.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut rates = Vec::new();
    let conn = rusqlite::Connection::open(db)?;
    for round in 1..=args.rounds {
        first.store(u64::MAX, Ordering::Relaxed);
        let at = chrono_like_now(round);
        conn.execute("UPDATE service_history SET updated_at = ?1", [&at])?;
        let want = args.rows * round;
        let deadline = Instant::now() + Duration::from_secs(180);
        while counts.iter().any(|c| c.load(Ordering::Relaxed) < want)
            && lagged.load(Ordering::Relaxed) == 0
        {
            if Instant::now() >= deadline {
                bail!("round {round}: not every subscriber had {want} events within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = first.load(Ordering::Relaxed);
        let end = last.iter().map(|l| l.load(Ordering::Relaxed)).max();
        if let (true, Some(end)) = (start != u64::MAX, end) {
            let secs = (end.saturating_sub(start) as f64 / 1e9).max(1e-3);
            rates.push(args.rows as f64 / secs);
        }
    }
    Ok(Throughput {
        rates,
        lagged: lagged.load(Ordering::Relaxed),
        synced_rss_mib,
        rss_mib: peak_rss_mib(watch.0.id()),
    })
}

/// An `updated_at` later than the sample's (which ends in 2026) and than every earlier
/// call's, so each round is a change to every row, whichever run reads it.
fn chrono_like_now(_round: u64) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("2027-01-01T{:02}:{:02}:00.000000Z", n / 60, n % 60)
}

/// The peak RSS of a throughput run, against the 200 MB target when it has one, and
/// the peak reached by the end of its first cycle (the same run's reference).
fn memory_rows(what: &str, run: &Throughput, target: bool) {
    let mb = run.rss_mib * 1.048_576;
    row(
        &format!("peak RSS of watch, {what}"),
        format!("{:.1} MiB", run.rss_mib),
        if target { "< 200 MB" } else { "(none given)" },
        target.then_some(mb < 200.0),
    );
    row(
        "  peak RSS by the end of the first cycle",
        format!("{:.1} MiB", run.synced_rss_mib),
        "",
        None,
    );
}

fn row(name: &str, value: String, target: &str, pass: Option<bool>) {
    let verdict = match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "-",
    };
    println!("{name:<44} {value:>16}  {target:<22} {verdict}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.no_build {
        build_release(&[
            "tributary",
            "tributary-internal-db",
            "tributary-quickbooks",
            "tributary-sandbox",
        ])?;
    }
    let scratch = tempfile::tempdir()?;
    let mut results = Vec::new();

    for (name, webhook) in [
        ("webhook (interval 60 s)", true),
        ("polled (interval 1 s)", false),
    ] {
        let dir = scratch
            .path()
            .join(if webhook { "webhook" } else { "polled" });
        std::fs::create_dir_all(&dir)?;
        let mut ms = latency(&dir, webhook, args.samples).await?;
        ms.sort_by(f64::total_cmp);
        eprintln!("latency {name}: {} samples", ms.len());
        results.push((name, webhook, percentile(&ms, 50.0), percentile(&ms, 99.0)));
    }

    let db = scratch.path().join("load.db");
    let clients = (args.rows / 1000).max(1);
    sample::generate(
        &format!("sqlite:{}", db.display()),
        &SampleSpec {
            clients: clients as u32,
            seed: 42,
            service_history_per_client: (args.rows / clients) as u32,
            satisfaction_scores_per_client: 0,
            communication_engagement_per_client: 0,
            contracts_per_client: 0,
        },
    )
    .await?;
    let dir = scratch.path().join("ws");
    std::fs::create_dir_all(&dir)?;
    let ws = throughput(&dir, &db, &args, args.subscribers, false).await?;
    let nats_up = TcpStream::connect_timeout(
        &args.nats.parse().context("--nats host:port")?,
        Duration::from_secs(2),
    )
    .is_ok();
    let js = if nats_up {
        let dir = scratch.path().join("nats");
        std::fs::create_dir_all(&dir)?;
        Some(throughput(&dir, &db, &args, 1, true).await?)
    } else {
        None
    };

    println!();
    println!(
        "tributary watch, release; {} latency samples per mode, {} rows × {} rounds; {} cores, shared machine",
        args.samples,
        args.rows,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<44} {:>16}  {:<22} verdict",
        "measure", "value", "target"
    );
    for (name, webhook, p50, p99) in &results {
        let limit = if *webhook { 500.0 } else { 1500.0 };
        row(
            &format!("latency p50, {name}"),
            format!("{p50:.0} ms"),
            "",
            None,
        );
        row(
            &format!("latency p99, {name}"),
            format!("{p99:.0} ms"),
            &format!("< {limit:.0} ms"),
            Some(*p99 < limit),
        );
    }
    let min = |rates: &[f64]| rates.iter().copied().fold(f64::INFINITY, f64::min);
    row(
        &format!("events/s to each of {} subscribers (min)", args.subscribers),
        format!("{:.0}", min(&ws.rates)),
        ">= 20000",
        Some(min(&ws.rates) >= 20_000.0 && ws.lagged == 0),
    );
    row(
        "  deliveries/s, all subscribers",
        format!("{:.0}", min(&ws.rates) * args.subscribers as f64),
        "",
        None,
    );
    row(
        "  subscribers dropped (lagged)",
        ws.lagged.to_string(),
        "0",
        Some(ws.lagged == 0),
    );
    memory_rows(&format!("{} subscribers", args.subscribers), &ws, true);
    match js {
        Some(js) => {
            row(
                "events/s through JetStream (min)",
                format!("{:.0}", min(&js.rates)),
                "(none given)",
                None,
            );
            memory_rows("JetStream", &js, false);
        }
        None => row(
            "events/s through JetStream",
            "skipped".into(),
            &format!("no NATS at {}", args.nats),
            None,
        ),
    }
    Ok(())
}
