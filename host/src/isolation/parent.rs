//! The host's side of a plugin process: start it, send the call, feed what comes back to
//! the run's [`HostHandler`], and turn its death into an error that names the cause.
//!
//! Three threads per call: this one reads the plugin's frames, a watchdog enforces the
//! call timeout and passes cancellation on, and one drains the plugin's stderr (panic
//! messages, the allocator's out-of-memory line) into the log.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tributary_sdk::host::{HostHandler, KeyBatch, RecordBatch};
use tributary_sdk::{ConnectorError, ErrorKind, LogLevel};

use super::wire::{self, FrameBuf, FromChild, Method, ToChild};
use super::ProcessLimits;

/// How often the watchdog looks at the clock and the cancel flag.
const TICK: Duration = Duration::from_millis(50);
/// How long a cancelled plugin may take to wind down before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// Lines of the plugin's stderr kept for the error message.
const STDERR_TAIL: usize = 8;
/// Longest stderr line kept (a runaway line must not grow the host).
const STDERR_LINE: usize = 2000;
/// `waiting_since` while the host itself is busy with a frame.
const NOT_WAITING: u64 = u64::MAX;

/// Why the watchdog killed the plugin process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    Timeout,
    Cancelled,
}

/// Calls `method` of the library at `library` in a new plugin process started from
/// `program` (the `tributary` binary), with `argument` as its JSON input. Returns the
/// call's JSON result.
pub fn call(
    program: &Path,
    library: &Path,
    limits: &ProcessLimits,
    method: Method,
    argument: String,
    handler: Arc<dyn HostHandler>,
) -> Result<String, ConnectorError> {
    let mut command = Command::new(program);
    command
        .arg("plugin-host")
        .arg(library)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(mb) = limits.memory_limit_mb {
        command.arg("--memory-limit-mb").arg(mb.to_string());
    }
    let mut child = command.spawn().map_err(|e| {
        ConnectorError::system(format!(
            "cannot start the plugin process ({}): {e}",
            program.display()
        ))
    })?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ConnectorError::system("the plugin process has no pipes"));
    };
    let to_child = Arc::new(ToChildPipe {
        stdin: Mutex::new(Some((FrameBuf::default(), stdin))),
    });
    let started = Instant::now();
    let session = Arc::new(Session {
        started,
        waiting_since: AtomicU64::new(0),
        reaped: Mutex::new(false),
        killed: Mutex::new(None),
        cancel_sent: AtomicBool::new(false),
    });
    let stderr_tail = spawn_stderr_reader(stderr, handler.clone());
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = {
        let (session, to_child, handler) = (session.clone(), to_child.clone(), handler.clone());
        let timeout = limits.call_timeout;
        std::thread::Builder::new()
            .name("plugin-watchdog".to_string())
            .spawn(move || watch(pid, &session, &to_child, &*handler, timeout, &done_rx))
    };
    if let Err(e) = watchdog {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ConnectorError::system(format!(
            "cannot start the plugin watchdog: {e}"
        )));
    }

    let sent = to_child.send(&ToChild::Call {
        method,
        log_level: handler.log_level(),
        argument,
    });
    let answer = match sent {
        Ok(()) => relay(
            BufReader::with_capacity(1 << 18, stdout),
            &session,
            &to_child,
            &*handler,
        ),
        Err(e) => Relayed::Broken(format!("cannot send the call: {e}")),
    };
    // Closing stdin tells the plugin process to exit; the watchdog still bounds the wait.
    to_child.close();
    session.wait_from_now();
    let status = child.wait();
    *session.reaped.lock().unwrap_or_else(|p| p.into_inner()) = true;
    let _ = done_tx.send(());
    let status = status.map_err(|e| ConnectorError::system(format!("plugin process: {e}")))?;

    match answer {
        Relayed::Done(result) => result,
        Relayed::Ended | Relayed::Broken(_) => {
            let tail = stderr_tail.finish();
            let killed = *session.killed.lock().unwrap_or_else(|p| p.into_inner());
            let cause = match (&answer, killed) {
                (_, Some(kill)) => killed_cause(kill, limits),
                (Relayed::Broken(why), None) if status.success() => why.clone(),
                _ => exit_cause(status, &tail, limits),
            };
            Err(ConnectorError::new(
                ErrorKind::System,
                format!(
                    "plugin process (isolation = \"process\") failed {}: {cause}",
                    method.during()
                ),
            ))
        }
    }
}

/// The watchdog's view of one call.
struct Session {
    started: Instant,
    /// Milliseconds since `started` at which the host began waiting for the plugin, or
    /// [`NOT_WAITING`] while the host handles a frame (backpressure is not the plugin's
    /// silence).
    waiting_since: AtomicU64,
    /// The process was reaped: its pid may be reused, never signal it again.
    reaped: Mutex<bool>,
    killed: Mutex<Option<Kill>>,
    cancel_sent: AtomicBool,
}

impl Session {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NOT_WAITING - 1)
    }
    fn wait_from_now(&self) {
        self.waiting_since.store(self.now_ms(), Ordering::Relaxed);
    }
    fn busy(&self) {
        self.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
    }
    fn kill(&self, pid: Pid, why: Kill) {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if !*reaped {
            self.killed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(why);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// The pipe to the plugin process, shared by the reader (control replies, cancels after
/// a refused frame) and the watchdog (cancels).
struct ToChildPipe {
    stdin: Mutex<Option<(FrameBuf, ChildStdin)>>,
}

impl ToChildPipe {
    fn send(&self, msg: &ToChild) -> std::io::Result<()> {
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let Some((frame, stdin)) = guard.as_mut() else {
            return Ok(());
        };
        frame.send_to_child(msg, stdin)?;
        stdin.flush()
    }
    fn close(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

fn watch(
    pid: Pid,
    session: &Session,
    to_child: &ToChildPipe,
    handler: &dyn HostHandler,
    timeout: Duration,
    done: &mpsc::Receiver<()>,
) {
    let mut cancelled_at: Option<Instant> = None;
    loop {
        match done.recv_timeout(TICK) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if cancelled_at.is_none() && handler.is_cancelled() {
            cancelled_at = Some(Instant::now());
            if !session.cancel_sent.swap(true, Ordering::SeqCst) {
                let _ = to_child.send(&ToChild::Cancel {
                    reason: "cancelled".to_string(),
                });
            }
        }
        if cancelled_at.is_some_and(|t| t.elapsed() > CANCEL_GRACE) {
            session.kill(pid, Kill::Cancelled);
            return;
        }
        let since = session.waiting_since.load(Ordering::Relaxed);
        if since != NOT_WAITING && session.now_ms().saturating_sub(since) > millis(timeout) {
            session.kill(pid, Kill::Timeout);
            return;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How the plugin's output ended.
enum Relayed {
    /// The call returned.
    Done(Result<String, ConnectorError>),
    /// The pipe closed without an answer (the process died).
    Ended,
    /// The pipe carried something that is not this protocol.
    Broken(String),
}

/// Feeds every frame to `handler` until the call's answer or the end of the pipe.
fn relay(
    mut stdout: impl std::io::Read,
    session: &Session,
    to_child: &ToChildPipe,
    handler: &dyn HostHandler,
) -> Relayed {
    let mut buf = Vec::new();
    // The first refusal stops the plugin, as an `Err` from the handler does in process.
    let refuse = |result: Result<(), String>| {
        if let Err(reason) = result {
            if !session.cancel_sent.swap(true, Ordering::SeqCst) {
                let _ = to_child.send(&ToChild::Cancel { reason });
            }
        }
    };
    loop {
        session.wait_from_now();
        let frame = wire::read_from_child(&mut stdout, &mut buf);
        session.busy();
        let msg = match frame {
            Ok(Some(msg)) => msg,
            Ok(None) => return Relayed::Ended,
            Err(wire::WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Relayed::Ended
            }
            Err(e) => return Relayed::Broken(format!("the plugin process sent {e}")),
        };
        match msg {
            FromChild::Records { stream, records } => {
                refuse(handler.records(&stream, RecordBatch::from_records(records)));
            }
            FromChild::State { stream, state } => refuse(handler.state(&stream, &state)),
            FromChild::Keys { stream, keys } => {
                refuse(handler.keys(&stream, KeyBatch::from_keys(keys)));
            }
            FromChild::Snapshot { stream, event } => refuse(
                serde_json::from_str(&event)
                    .map_err(|e| format!("snapshot event not understood: {e}"))
                    .and_then(|event| handler.snapshot(&stream, event)),
            ),
            FromChild::Control(message) => {
                let reply = serde_json::from_str(&message)
                    .map_err(|e| format!("control message not understood: {e}"))
                    .and_then(|m| handler.control(m));
                let _ = to_child.send(&ToChild::ControlReply(reply));
            }
            FromChild::Status { stream, status } => match serde_json::from_str(&status) {
                Ok(status) => handler.stream_status(&stream, status),
                Err(e) => refuse(Err(format!("stream status not understood: {e}"))),
            },
            FromChild::Log {
                level,
                target,
                message,
            } => handler.log(level, &target, &message),
            FromChild::Done(result) => return Relayed::Done(result),
        }
    }
}

/// The last lines of the plugin's stderr, while a thread forwards them to the log.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    finished: mpsc::Receiver<()>,
}

impl StderrTail {
    /// The lines, once the pipe has been read to its end (bounded: a grandchild may keep
    /// it open).
    fn finish(self) -> Vec<String> {
        let _ = self.finished.recv_timeout(Duration::from_secs(2));
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn spawn_stderr_reader(
    stderr: std::process::ChildStderr,
    handler: Arc<dyn HostHandler>,
) -> StderrTail {
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, finished) = mpsc::channel();
    let kept = lines.clone();
    // Weak: a grandchild holding stderr open must not keep the run's handler alive.
    let handler = Arc::downgrade(&handler);
    let spawned = std::thread::Builder::new()
        .name("plugin-stderr".to_string())
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line);
                let text: String = text.trim_end().chars().take(STDERR_LINE).collect();
                line.clear();
                if text.is_empty() {
                    continue;
                }
                if let Some(handler) = handler.upgrade() {
                    handler.log(LogLevel::Warn, "plugin-process", &text);
                }
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == STDERR_TAIL {
                    kept.pop_front();
                }
                kept.push_back(text);
            }
            let _ = tx.send(());
        });
    if spawned.is_err() {
        tracing::warn!("cannot start a thread for the plugin's stderr; it is dropped");
    }
    StderrTail { lines, finished }
}

fn killed_cause(kill: Kill, limits: &ProcessLimits) -> String {
    match kill {
        Kill::Timeout => format!(
            "no answer for {}s (call_timeout_secs); the plugin process was killed (hung or in an endless loop)",
            limits.call_timeout.as_secs()
        ),
        Kill::Cancelled => format!(
            "cancelled, and the plugin process did not stop within {}s; it was killed",
            CANCEL_GRACE.as_secs()
        ),
    }
}

/// Names why the process ended without answering.
fn exit_cause(status: ExitStatus, stderr: &[String], limits: &ProcessLimits) -> String {
    if status.code() == Some(super::oom::EXIT_OUT_OF_MEMORY) {
        return match limits.memory_limit_mb {
            Some(mb) => memory_limit_cause(mb),
            None => "the plugin process ran out of memory".to_string(),
        };
    }
    // Fallback, for a death the plugin process could not name itself (an allocator that
    // does not set `ENOMEM`, a plugin that aborts on its own after a failed allocation):
    // the allocator's last words.
    let out_of_memory = stderr.iter().any(|l| {
        l.contains("memory allocation of")
            || l.contains("out of memory")
            || l.contains("Cannot allocate memory")
    });
    if let (true, Some(mb)) = (out_of_memory, limits.memory_limit_mb) {
        return memory_limit_cause(mb);
    }
    let last = stderr
        .last()
        .map(|l| format!(" (last output: {l})"))
        .unwrap_or_default();
    match (status.signal(), status.code()) {
        (Some(sig), _) => {
            let name = Signal::try_from(sig)
                .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string());
            format!(
                "the plugin process crashed: killed by {name} ({}){last}",
                signal_meaning(sig)
            )
        }
        (None, Some(code)) => {
            format!("the plugin process exited with code {code} without answering{last}")
        }
        (None, None) => format!("the plugin process ended without answering{last}"),
    }
}

fn memory_limit_cause(mb: u64) -> String {
    format!(
        "the plugin process exceeded its memory limit of {mb} MB (memory_limit_mb) and was stopped"
    )
}

fn signal_meaning(sig: i32) -> &'static str {
    match Signal::try_from(sig) {
        Ok(Signal::SIGSEGV) => "segmentation fault",
        Ok(Signal::SIGABRT) => "aborted",
        Ok(Signal::SIGBUS) => "bus error",
        Ok(Signal::SIGILL) => "illegal instruction",
        Ok(Signal::SIGFPE) => "arithmetic fault",
        Ok(Signal::SIGKILL) => "killed",
        Ok(Signal::SIGTERM) => "terminated",
        _ => "terminated by a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(mb: Option<u64>) -> ProcessLimits {
        ProcessLimits {
            call_timeout: Duration::from_secs(7),
            memory_limit_mb: mb,
        }
    }

    #[test]
    fn a_death_is_named_by_its_cause() {
        let segv = ExitStatus::from_raw(libc::SIGSEGV);
        let msg = exit_cause(segv, &[], &limits(None));
        assert!(
            msg.contains("SIGSEGV") && msg.contains("segmentation fault"),
            "{msg}"
        );
        let abort = ExitStatus::from_raw(libc::SIGABRT);
        let oom = ["memory allocation of 1048576 bytes failed".to_string()];
        let msg = exit_cause(abort, &oom, &limits(Some(256)));
        assert!(msg.contains("memory limit of 256 MB"), "{msg}");
        let msg = exit_cause(abort, &oom[..0], &limits(Some(256)));
        assert!(msg.contains("SIGABRT"), "{msg}");
        let code = ExitStatus::from_raw(3 << 8);
        let msg = exit_cause(code, &["boom".to_string()], &limits(None));
        assert!(msg.contains("code 3") && msg.contains("boom"), "{msg}");
        // The plugin process's own verdict needs no stderr.
        let own = ExitStatus::from_raw(crate::isolation::oom::EXIT_OUT_OF_MEMORY << 8);
        let msg = exit_cause(own, &[], &limits(Some(128)));
        assert!(msg.contains("memory limit of 128 MB"), "{msg}");
        let msg = killed_cause(Kill::Timeout, &limits(None));
        assert!(
            msg.contains("7s") && msg.contains("call_timeout_secs"),
            "{msg}"
        );
    }
}
