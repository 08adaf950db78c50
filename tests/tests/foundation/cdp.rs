//! A lean headless-Chromium driver for the end-to-end tests: the DevTools protocol over
//! one WebSocket (no WebDriver). Chromium runs with a throw-away profile, listens on
//! loopback only and is killed when the [`Chromium`] is dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long Chromium may take to start, and one protocol call to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The Chromium executable: `TRIBUTARY_TEST_CHROMIUM`, else the usual names on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRIBUTARY_TEST_CHROMIUM") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// A headless Chromium with one page attached. Fields drop in order: the socket, then
/// the process (killed), then its profile directory.
pub struct Chromium {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// The flattened session of the page `open` created.
    session: Option<String>,
    _process: KillOnDrop,
    _profile: tempfile::TempDir,
}

/// A child process killed (and reaped) when dropped, whatever fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chromium {
    /// Starts `program` headless and connects to its DevTools WebSocket, which it
    /// announces on stderr (`--remote-debugging-port=0` picks a free loopback port).
    pub fn launch(program: &std::path::Path) -> Result<Chromium, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("profile dir: {e}"))?;
        let child = Command::new(program)
            .args([
                "--headless",
                // Containers (and root) have no user namespaces for Chromium's sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut process = KillOnDrop(child);
        let stderr = process.0.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        // Keeps reading after the announcement, so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| "Chromium did not announce its DevTools address".to_string())?;
        Ok(Chromium {
            ws: connect(&url)?,
            next_id: 0,
            session: None,
            _process: process,
            _profile: profile,
        })
    }

    /// Opens `url` in a new page and attaches to it; later calls go to that page.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        let target = self.call("Target.createTarget", json!({ "url": url }))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or("no targetId")?
            .to_string();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        let session = attached["sessionId"].as_str().ok_or("no sessionId")?;
        self.session = Some(session.to_string());
        Ok(())
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let out = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = out.get("exceptionDetails") {
            return Err(format!("{expression}: {e}"));
        }
        Ok(out["result"]["value"].clone())
    }

    /// Evaluates `expression` every 100 ms until `done` accepts its value; the last
    /// value seen is in the error after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression)?;
            if done(&value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(format!("{what}: not within {timeout:?}; last seen {value}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One protocol call: sends it, then reads (skipping events) until its answer.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .map_err(|e| format!("{method}: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        while Instant::now() < deadline {
            let frame = self.ws.read().map_err(|e| format!("{method}: {e}"))?;
            let Ok(text) = frame.to_text() else { continue };
            let Ok(answer) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if answer["id"] != json!(id) {
                continue; // an event, or an answer to nothing we wait for
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
        Err(format!("{method}: no answer within {CALL_TIMEOUT:?}"))
    }
}

/// The browser endpoint's WebSocket, every read bounded by the call timeout.
fn connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected DevTools address {url}"))?;
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let (ws, _) = tungstenite::client(url, stream).map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}
