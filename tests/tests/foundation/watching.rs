//! What the `watch` tests share: a running `watch` (its address, health and metrics),
//! `tail` subscribers, plain HTTP on loopback, and emulators the test starts itself (so
//! it can change their data and read their request counters). Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{target_dir, Scratch};

/// A running `watch`, killed if the test fails before stopping it.
pub struct Watch {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    /// Starts `watch` with the scratch manifest and waits (bounded) for its address.
    pub fn start(scratch: &Scratch) -> Watch {
        let mut child = scratch
            .command(&["watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("watch starts");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Drains stderr for the whole run (a full pipe would block watch) and keeps it
        // for failure messages.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "watch did not announce its address within 120 s:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
        };
        Watch { child, addr, log }
    }

    /// What watch logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// `GET /health` as JSON (200 and 503 both carry it).
    pub fn health(&self) -> Value {
        let (_, body) = http(&self.addr, "GET", "/health", &[], b"");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Waits until every source has completed a cycle since `after` (its `last_success`
    /// is later), up to `timeout`.
    pub fn wait_cycles_after(&self, after: chrono::DateTime<chrono::Utc>, timeout: Duration) {
        wait_for(
            timeout,
            || {
                format!(
                    "a completed cycle of every source after {after}:\n{}\n{}",
                    self.health(),
                    self.log()
                )
            },
            || {
                let health = self.health();
                let sources = health["sources"].as_array()?;
                let done = !sources.is_empty()
                    && sources.iter().all(|s| {
                        s["last_success"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .is_some_and(|t| t > after)
                    });
                done.then_some(())
            },
        );
    }

    /// Waits until every source has completed a whole cycle that began after this call:
    /// the first completion may belong to a cycle already running, the second cannot.
    pub fn wait_full_cycle(&self, timeout: Duration) {
        let now = chrono::Utc::now();
        self.wait_cycles_after(now, timeout);
        let after_one = chrono::Utc::now();
        self.wait_cycles_after(after_one, timeout);
    }

    /// The value of one metric sample of `GET /metrics` (`name{labels}` exactly as
    /// printed), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = http(&self.addr, "GET", "/metrics", &[], b"");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGINT and waits (bounded) for the exit: (exit code, time it took).
    pub fn interrupt(mut self) -> (Option<i32>, Duration) {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let code = self.wait_exit(Duration::from_secs(10));
        (code, sent.elapsed())
    }

    /// Waits for watch to exit on its own, up to `timeout`; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "watch did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Polls `check` every 50 ms until it returns something, up to `timeout`; panics with
/// `what()` otherwise.
pub fn wait_for<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("not within {timeout:?}: {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tail` printing the first `count` events matching `filters`, as JSON values.
pub fn tail(addr: &str, token: &str, filters: &[&str], count: usize) -> mpsc::Receiver<Value> {
    let mut child = std::process::Command::new(target_dir().join("tributary"))
        .args([
            "tail",
            "--url",
            &format!("ws://{addr}"),
            "--count",
            &count.to_string(),
        ])
        .args(filters)
        .env("TRIBUTARY_EVENTS_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tail starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
        // The test is done with it (or it ended): never leave it running.
        let _ = child.kill();
        let _ = child.wait();
    });
    rx
}

/// The first event of `events` that `matches`, within `timeout`; panics with `what`.
pub fn next_matching(
    events: &mpsc::Receiver<Value>,
    timeout: Duration,
    what: &str,
    mut matches: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if matches(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("{what}: no such event within {timeout:?} ({e})"),
        }
    }
}

/// One HTTP/1.0 request on loopback (1.0: the answer is never chunked), bounded by 10 s;
/// (status, body). Status 0 when the server could not be reached.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let Ok(socket) = addr.parse::<std::net::SocketAddr>() else {
        panic!("not an address: {addr}");
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(5))
    else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An emulator the test started (`tributary-sandbox connect <plugin>`, as the host does
/// for `[sandbox]`), so the test can steer it and read its counters. Stops on drop.
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The connector settings that point at it.
    pub config: Value,
    /// Its base URL (`/emulator/...` routes).
    pub control: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts the emulator of `plugin` (`quickbooks` or `superops`) with the sample MSP of
    /// `clients` clients and `extra` options (`--mutate-every`, `--latency-ms`).
    pub fn start(plugin: &str, clients: u32, extra: &[&str]) -> Emulator {
        let mut child = std::process::Command::new(target_dir().join("tributary-sandbox"))
            .args([
                "connect",
                plugin,
                "--seed",
                "7",
                "--clients",
                &clients.to_string(),
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tributary-sandbox starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the emulator announces its settings within 120 s");
        let announced: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("unreadable settings {line:?}: {e}"));
        let config = announced["config"].clone();
        // QuickBooks announces its control URL; SuperOps serves them beside `/msp`.
        let control = announced["control"]
            .as_str()
            .or_else(|| config["api_url"].as_str()?.strip_suffix("/msp"))
            .expect("the emulator's base URL")
            .to_string();
        Emulator {
            child,
            stdin,
            config,
            control,
        }
    }

    /// POSTs JSON to one of its control routes; the JSON answer (Null if none).
    pub fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = http(
            &self.control,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {answer}"
        );
        serde_json::from_str(&answer).unwrap_or(Value::Null)
    }

    /// `GET /emulator/stats`.
    pub fn stats(&self) -> Value {
        let (status, body) = http(&self.control, "GET", "/emulator/stats", &[], b"");
        assert_eq!(status, 200, "stats: {body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    /// Its settings as the body of a `[sources.X.config]` table.
    pub fn config_toml(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.config.as_object().expect("settings are an object") {
            out.push_str(&format!("{k} = {}\n", toml_value(v)));
        }
        out
    }
}

/// A JSON value as TOML (JSON strings and numbers are TOML literals as they stand).
fn toml_value(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `data` of each row of a warehouse table, by `_pk`, with `_deleted`.
pub fn rows(
    conn: &rusqlite::Connection,
    table: &str,
) -> std::collections::BTreeMap<String, (Value, bool)> {
    let mut stmt = conn
        .prepare(&format!("SELECT _pk, data, _deleted FROM \"{table}\""))
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })
    .expect("query")
    .map(|r| {
        let (pk, data, deleted) = r.expect("row");
        (
            pk,
            (serde_json::from_str(&data).expect("data is JSON"), deleted),
        )
    })
    .collect()
}
