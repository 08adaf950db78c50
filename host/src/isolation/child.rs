//! `tributary plugin-host <lib>`: the plugin process. Loads one library, answers the one
//! call the host sends on stdin, and sends everything the plugin emits back on stdout.
//!
//! It dies with the host: the kernel kills it when its parent goes (`PR_SET_PDEATHSIG`),
//! and a closed stdin ends it too.

use std::io::{BufWriter, Stdout, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use tributary_sdk::host::{self, HostHandler, KeyBatch, RecordBatch};
use tributary_sdk::{
    ConnectorError, ControlMessage, LogLevel, ReadRequest, SnapshotEvent, StreamStatus,
};

use super::wire::{self, FrameBuf, FromChild, Method, ToChild};

/// Arguments of the hidden `plugin-host` subcommand (the host starts it; people don't).
#[derive(Debug, clap::Args)]
pub struct PluginHostArgs {
    /// The plugin library to load.
    pub library: PathBuf,
    /// Limit this process's address space to this many MiB (`RLIMIT_AS`).
    #[arg(long)]
    pub memory_limit_mb: Option<u64>,
}

/// Runs the plugin process to completion.
pub fn plugin_host(args: &PluginHostArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: &PluginHostArgs) -> Result<(), String> {
    die_with_parent();
    if let Some(mb) = args.memory_limit_mb {
        limit_address_space(mb)?;
        super::oom::arm()?;
    }
    let mut stdin = std::io::stdin();
    let mut buf = Vec::new();
    let (method, log_level, argument) = match wire::read_from_host(&mut stdin, &mut buf) {
        Ok(Some(ToChild::Call {
            method,
            log_level,
            argument,
        })) => (method, log_level, argument),
        Ok(Some(other)) => return Err(format!("expected a call first, got {other:?}")),
        Ok(None) => return Err("the host closed the pipe before calling".to_string()),
        Err(e) => return Err(e.to_string()),
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    let to_host = Arc::new(ToHost {
        out: Mutex::new((
            FrameBuf::default(),
            BufWriter::with_capacity(1 << 18, std::io::stdout()),
        )),
        log_level,
        cancelled: AtomicBool::new(false),
        reason: Mutex::new(None),
        replies: Mutex::new(reply_rx),
    });
    {
        // Ctrl-C reaches the whole process group: stop as the host does, by cancelling.
        let to_host = to_host.clone();
        let _ = ctrlc::set_handler(move || to_host.cancel("cancelled"));
    }
    {
        let to_host = to_host.clone();
        std::thread::Builder::new()
            .name("plugin-host-stdin".to_string())
            .spawn(move || {
                let mut buf = Vec::new();
                let mut stdin = stdin.lock();
                loop {
                    match wire::read_from_host(&mut stdin, &mut buf) {
                        Ok(Some(ToChild::Cancel { reason })) => to_host.cancel(&reason),
                        Ok(Some(ToChild::ControlReply(reply))) => {
                            let _ = reply_tx.send(reply);
                        }
                        Ok(Some(ToChild::Call { .. })) => {
                            to_host.cancel("the host sent a second call");
                        }
                        // The host is gone (or closed the pipe after our answer): nobody
                        // is left to receive anything, so stop at once.
                        Ok(None) | Err(_) => std::process::exit(1),
                    }
                }
            })
            .map_err(|e| format!("cannot start the stdin thread: {e}"))?;
    }
    let handler: Arc<dyn HostHandler> = to_host.clone();
    let result = host::load(&args.library)
        .map_err(|e| ConnectorError::system(e.to_string()))
        .and_then(|plugin| call(&plugin, method, &argument, handler));
    if log_level >= LogLevel::Info {
        if let Some(peak) = peak_rss() {
            to_host.log(
                LogLevel::Info,
                "tributary::isolation",
                &format!("plugin process peak memory (RSS): {peak}"),
            );
        }
    }
    to_host
        .send(&FromChild::Done(result))
        .map_err(|e| format!("cannot answer the host: {e}"))
}

fn call(
    plugin: &host::Plugin,
    method: Method,
    argument: &str,
    handler: Arc<dyn HostHandler>,
) -> Result<String, ConnectorError> {
    let parse = |what: &'static str| {
        move |e: serde_json::Error| ConnectorError::system(format!("{what} is not valid JSON: {e}"))
    };
    match method {
        Method::Spec => plugin.spec().map(|v| json(&v)),
        Method::Check => {
            let config = serde_json::from_str(argument).map_err(parse("config"))?;
            plugin.check(&config, handler).map(|()| String::new())
        }
        Method::Discover => {
            let config = serde_json::from_str(argument).map_err(parse("config"))?;
            plugin.discover(&config, handler).map(|c| json(&c))
        }
        Method::Read => {
            let request: ReadRequest =
                serde_json::from_str(argument).map_err(parse("read request"))?;
            plugin.read(&request, handler).map(|()| String::new())
        }
        Method::Describe => super::describe::answer(plugin),
    }
}

/// JSON text of a protocol value (these types always serialize).
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// This process's peak resident set (`VmHWM`), e.g. `41.2 MiB`: the host's own figure
/// does not include its plugin processes.
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(format!("{:.1} MiB", kib / 1024.0))
}

/// Asks the kernel to kill this process when the host goes.
#[cfg(target_os = "linux")]
fn die_with_parent() {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent() {}

fn limit_address_space(mb: u64) -> Result<(), String> {
    let bytes = mb.saturating_mul(1024 * 1024);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes)
        .map_err(|e| format!("cannot set the memory limit of {mb} MiB: {e}"))
}

/// The plugin's host, seen from inside the plugin process: every call becomes a frame.
struct ToHost {
    out: Mutex<(FrameBuf, BufWriter<Stdout>)>,
    log_level: LogLevel,
    cancelled: AtomicBool,
    /// Why the host asked to stop; returned from every later call.
    reason: Mutex<Option<String>>,
    replies: Mutex<Receiver<Result<(), String>>>,
}

impl ToHost {
    fn cancel(&self, reason: &str) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| reason.to_string());
        self.cancelled.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> Result<(), String> {
        if !self.cancelled.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "cancelled".to_string()))
    }

    fn write(
        &self,
        encode: impl FnOnce(&mut FrameBuf, &mut BufWriter<Stdout>) -> std::io::Result<()>,
    ) -> Result<(), String> {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (frame, out) = &mut *guard;
        encode(frame, out)
            .and_then(|()| out.flush())
            .map_err(|e| format!("the host stopped listening: {e}"))
    }

    fn send(&self, msg: &FromChild) -> Result<(), String> {
        self.write(|frame, out| frame.send_to_host(msg, out))
    }
}

impl HostHandler for ToHost {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.stopped()?;
        self.write(|frame, out| frame.send_records(stream, &batch, out))
    }

    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        self.stopped()?;
        self.send(&FromChild::State {
            stream: stream.to_string(),
            state: state.to_string(),
        })
    }

    fn control(&self, message: ControlMessage) -> Result<(), String> {
        let text = json(&message);
        // One control message in flight at a time: the reply is for the one we sent.
        let replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        self.send(&FromChild::Control(text))?;
        replies
            .recv()
            .map_err(|_| "the host stopped listening".to_string())?
    }

    fn stream_status(&self, stream: &str, status: StreamStatus) {
        let _ = self.send(&FromChild::Status {
            stream: stream.to_string(),
            status: json(&status),
        });
    }

    fn log(&self, level: LogLevel, target: &str, message: &str) {
        let _ = self.send(&FromChild::Log {
            level,
            target: target.to_string(),
            message: message.to_string(),
        });
    }

    fn log_level(&self) -> LogLevel {
        self.log_level
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        self.stopped()?;
        self.write(|frame, out| frame.send_keys(stream, &keys, out))
    }

    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        self.stopped()?;
        self.send(&FromChild::Snapshot {
            stream: stream.to_string(),
            event: json(&event),
        })
    }
}
