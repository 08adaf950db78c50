//! `[sandbox]`: the built-in emulators behind the sources marked `endpoint = "sandbox"`.
//!
//! For each such source the host runs `tributary-sandbox connect <plugin> --seed S
//! --clients N`, which starts that connector's emulator filled with the sample MSP (the
//! same clients in every source), on a free loopback port, and prints one JSON line
//! `{"config": {...}}`: the settings that point the connector at it, credentials
//! included. They are laid over the source's config. The emulators live as long as the
//! returned [`Sandboxes`]: dropping it closes their standard input, which ends them, and
//! a host that dies closes it too (`kill -9` included).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::plan::Plan;

/// How long an emulator may take to generate its company and start serving.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[error("sandbox for source `{source_name}`: {message}")]
pub struct SandboxError {
    /// The source it was for.
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// The running emulators; dropping this stops them.
#[derive(Debug, Default)]
pub struct Sandboxes {
    children: Vec<(Child, Option<ChildStdin>)>,
    /// Each emulator's own base URL (its `/emulator/...` routes), by source name.
    control: std::collections::BTreeMap<String, String>,
}

impl Sandboxes {
    /// The base URL of the emulator serving `source`, if it announced one.
    pub fn control_url(&self, source: &str) -> Option<&str> {
        self.control.get(source).map(String::as_str)
    }
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        for (child, stdin) in &mut self.children {
            drop(stdin.take()); // end of input: the emulator stops by itself
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the emulators of every sandboxed source of `plan` and lays their settings over
/// the sources' configs. They start side by side (generating a company takes a moment);
/// nothing is started for a plan without sandboxed sources.
pub fn start(plan: &mut Plan) -> Result<Sandboxes, SandboxError> {
    let mut running = Sandboxes::default();
    let Some(sandbox) = plan.sandbox.clone() else {
        return Ok(running);
    };
    // Every emulator first, each announcing its settings on a thread of its own.
    let mut starting = Vec::new();
    for (index, source) in plan.sources.iter().enumerate().filter(|(_, s)| s.sandboxed) {
        let plugin = source.plugin.info().name.clone();
        let fail = |message: String| SandboxError {
            source_name: source.name.clone(),
            message,
        };
        let mut child = Command::new(&sandbox.program)
            .arg("connect")
            .arg(&plugin)
            .arg("--seed")
            .arg(sandbox.seed.to_string())
            .arg("--clients")
            .arg(sandbox.clients.to_string())
            .arg("--latency-ms")
            .arg(sandbox.latency_ms.to_string())
            .args(
                sandbox
                    .mutate_every_ms
                    .map(|ms| ["--mutate-every".to_string(), ms.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", sandbox.program.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.map(|out| BufReader::new(out).read_line(&mut line));
            let _ = tx.send(read.map(|r| r.map(|_| line)));
        });
        let stderr = child.stderr.take();
        running.children.push((child, stdin));
        starting.push((index, plugin, rx, stderr));
    }
    // Then their settings, each within the same deadline (a silent one cannot hang us).
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    for (index, plugin, rx, stderr) in starting {
        let source = &mut plan.sources[index];
        let fail = |message: String| SandboxError {
            source_name: source.name.clone(),
            message,
        };
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match rx.recv_timeout(wait) {
            Ok(Some(Ok(line))) if !line.trim().is_empty() => line,
            Ok(_) => {
                let mut err = String::new();
                if let Some(mut e) = stderr {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(fail(format!(
                    "{} {plugin} ended without its settings: {}",
                    sandbox.program.display(),
                    err.trim()
                )));
            }
            Err(_) => {
                return Err(fail(format!(
                    "the {plugin} emulator did not start within {} s",
                    START_TIMEOUT.as_secs()
                )));
            }
        };
        // The emulator's log is not the host's business; keep its pipe from filling up.
        if let Some(mut e) = stderr {
            std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
        }
        let announced: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|e| fail(format!("unreadable settings from the emulator: {e}")))?;
        let Some(settings) = announced.get("config").and_then(|c| c.as_object()) else {
            return Err(fail("the emulator's settings are not an object".into()));
        };
        if let Some(config) = source.config.as_object_mut() {
            for (k, v) in settings {
                config.insert(k.clone(), v.clone());
            }
        }
        if let Some(control) = announced.get("control").and_then(|c| c.as_str()) {
            running
                .control
                .insert(source.name.clone(), control.to_string());
        }
        tracing::info!(source = %source.name, plugin = %plugin, "sandbox ready");
    }
    Ok(running)
}

/// Points the emulator at `base` (a [`Sandboxes::control_url`]) to send signed QuickBooks
/// webhooks to `target` with `verifier_token`. A plain HTTP/1.1 request: the emulator is
/// on loopback and answers at once.
pub fn set_webhook(base: &str, target: &str, verifier_token: &str) -> Result<(), String> {
    use std::io::Write;
    let addr = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("emulator URL {base} is not http://"))?
        .trim_end_matches('/');
    let body = serde_json::json!({
        "url": target,
        "verifier_token": verifier_token,
        "shape": "cloudevents",
    })
    .to_string();
    let socket = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("emulator address {addr}: {e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the emulator at {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    write!(
        stream,
        "POST /emulator/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("cannot send to the emulator: {e}"))?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    match answer.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        other => Err(format!(
            "the emulator refused the webhook setting (status {})",
            other.unwrap_or("none")
        )),
    }
}
