//! `tributary`: loads connector plugins and syncs their streams into a warehouse, as the
//! manifest (`connectors.toml`) says. Only the command line lives here: each subcommand
//! calls one function of the library's [`tributary::app`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use tributary::app::quality::QualityArgs;
use tributary::app::run::RunArgs;
use tributary::app::state::StateCommand;
use tributary::app::{self, Loaded, UsageError};
use tributary::progress;
use tributary::server::tail::TailArgs;

/// The system allocator; in a memory-limited plugin process a failed allocation exits
/// with a code the host reads as "memory limit reached" (see `isolation::oom`).
#[global_allocator]
static ALLOCATOR: tributary::isolation::oom::ExitOnLimit = tributary::isolation::oom::ExitOnLimit;

#[derive(Debug, Parser)]
#[command(
    name = "tributary",
    version,
    about = "Sync SuperOps, QuickBooks and your own database into one warehouse"
)]
struct Cli {
    /// The manifest. Default: ./connectors.toml, else the built-in default manifest.
    #[arg(long, short, global = true, env = "TRIBUTARY_MANIFEST")]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the manifest and resolve its plugins without touching any source.
    Validate,
    /// List the plugins found in the plugin directory.
    Plugins,
    /// Print the config schema of a source's plugin (or of a plugin by name).
    Spec {
        /// Source name in the manifest, or plugin name.
        source: String,
    },
    /// Check that sources can connect and authenticate.
    Check {
        /// Only this source (default: every enabled source).
        source: Option<String>,
    },
    /// Print the streams each source offers.
    Discover {
        /// Only this source (default: every enabled source).
        source: Option<String>,
    },
    /// Sync every enabled source (incrementally, in parallel).
    Run(RunArgs),
    /// Keep every enabled source in incremental sync, each on its own interval, and
    /// publish the committed changes (WebSocket, NATS); runs until Ctrl-C.
    Watch(tributary::app::watch::WatchArgs),
    /// Check one source's connector against the invariants every connector must keep.
    Conformance(tributary::conformance::ConformanceArgs),
    /// Runs one plugin call in this process for a host (`isolation = "process"`).
    #[command(hide = true)]
    PluginHost(tributary::isolation::PluginHostArgs),
    /// Print `client_360`: one row per client across the sources (SQLite or PostgreSQL).
    Clients {
        /// Only this client, by id or name (repeatable).
        #[arg(long = "client")]
        clients: Vec<String>,
        /// JSON (an array of objects with every column) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or reset the saved incremental state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Measure data quality from the warehouse alone (exit 3 if a [quality] limit breaks).
    Quality(QualityArgs),
    /// Create a connector crate (out of tree) from the SDK's template.
    NewConnector {
        /// Plugin name: lowercase letters, digits and `-` (e.g. `acme-widgets`).
        name: String,
        /// Where to create it (default: ./tributary-<name>).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Print the change feed of a running `watch`, one JSON line per event.
    Tail(TailArgs),
}

/// Makes the manifest's directory the working directory, so that every relative path in
/// the manifest, the host's own and those inside a source's `config` (a `sqlite:` URL, a
/// certificate file), means the same file wherever `tributary` is started from. Paths
/// given on the command line are resolved against the caller's directory first.
fn enter_manifest_dir(loaded: &Loaded, command: &mut Command) -> Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Command::Run(args) = command {
        if let Some(report) = &mut args.report {
            *report = cwd.join(&*report);
        }
    }
    std::env::set_current_dir(&loaded.dir).with_context(|| {
        format!(
            "cannot enter the manifest's directory {}",
            loaded.dir.display()
        )
    })
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core),
/// and memory freed in one arena is not reused by another. With a tokio runtime in every
/// plugin plus the host's threads, that fragmentation alone doubled a sync's peak RSS
/// (a 200,000-invoice QuickBooks sync: 110–146 MiB, 54 MiB with two arenas, at the same
/// speed). Two arenas for the whole process, plugins included (they share the C
/// allocator), unless `MALLOC_ARENA_MAX` says otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it runs first thing in `main`,
        // before any other thread exists, and a refusal (return 0) changes nothing.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Command::PluginHost(args) = &cli.command {
        return tributary::isolation::plugin_host(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // On a terminal the progress lines say what happens; logs would
                // bury them. Elsewhere (CI, cron, systemd) the log is the record.
                let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
                tracing_subscriber::EnvFilter::new(if terminal { "warn" } else { "info,sqlx=warn" })
            }),
        )
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Command::Tail(args) = &cli.command {
        // Needs no manifest, and Ctrl-C should simply end it: answered before the
        // handler that turns the first signal into "finish the current batches".
        return exit_code(app::tail::tail(args));
    }

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            // SIGINT, SIGTERM (systemd, Docker, Kubernetes) and SIGHUP all land here.
            eprintln!("stopping: finishing the current batches (signal again to abort)");
        });
    }

    let mut cli = cli;
    let result = if let Command::NewConnector { name, path } = &cli.command {
        // Needs no manifest: it writes a crate, relative to where it is run.
        app::scaffold::new_connector(name, path.as_deref())
    } else {
        run_command(&mut cli, cancel)
    };
    exit_code(result)
}

/// The process's exit code for a command's result: 2 for a usage error, 1 for others.
fn exit_code(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Loads the manifest, enters its directory and runs the command on it.
fn run_command(cli: &mut Cli, cancel: Arc<AtomicBool>) -> Result<ExitCode> {
    app::load_manifest(cli.manifest.as_deref())
        .and_then(|loaded| enter_manifest_dir(&loaded, &mut cli.command).map(|()| loaded))
        .and_then(|loaded| match &cli.command {
            Command::Validate => app::inspect::validate(&loaded),
            Command::Plugins => app::inspect::plugins(&loaded),
            Command::Spec { source } => app::inspect::spec(&loaded, source),
            Command::Check { source } => {
                app::inspect::check(&loaded, source.as_ref(), cancel.clone())
            }
            Command::Discover { source } => {
                app::inspect::discover(&loaded, source.as_ref(), cancel.clone())
            }
            Command::Run(args) => app::run::run(&loaded, args, cancel.clone()),
            Command::Watch(args) => app::watch::watch(&loaded, args, cancel.clone()),
            Command::State { command } => app::state::state(&loaded, command),
            Command::Clients { clients, json } => app::view::clients(&loaded, clients, *json),
            Command::Quality(args) => app::quality::report(&loaded, args),
            Command::Conformance(args) => {
                tributary::conformance::command(&loaded.manifest, &loaded.dir, args)
                    .map_err(|e| app::usage(e.to_string()))
            }
            // Answered in `main` before any manifest is read.
            Command::PluginHost(_) => Err(app::usage("plugin-host is run by the host itself")),
            Command::NewConnector { name, path } => {
                app::scaffold::new_connector(name, path.as_deref())
            }
            // Answered in `main` before any manifest is read.
            Command::Tail(args) => app::tail::tail(args),
        })
}
