//! `tributary-sandbox`: run an API emulator on loopback, for trying connectors without an
//! account.
//!
//! ```text
//! cargo run -p tributary-sandbox -- quickbooks --port 8601
//! cargo run -p tributary-sandbox -- superops --port 8602
//! ```

use clap::Parser;
use tributary_sandbox::{connect, quickbooks, superops};

#[derive(Debug, Parser)]
#[command(
    name = "tributary-sandbox",
    version,
    about = "Local emulators of the QuickBooks Online and SuperOps APIs"
)]
enum Command {
    /// Serve the QuickBooks Online Accounting API v3 emulator.
    Quickbooks(quickbooks::CliArgs),
    /// Serve the SuperOps MSP GraphQL emulator.
    Superops(superops::CliArgs),
    /// Serve one connector's emulator filled with the sample MSP and print its settings
    /// as JSON (what `tributary` runs for a manifest's `[sandbox]`).
    Connect(connect::ConnectArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Command::parse() {
        Command::Quickbooks(args) => quickbooks::run_cli(args).await,
        Command::Superops(args) => superops::run_cli(args).await,
        // Blocking: it waits on standard input while the emulator serves on its own thread.
        Command::Connect(args) => tokio::task::spawn_blocking(move || connect::run(args)).await?,
    }
}
