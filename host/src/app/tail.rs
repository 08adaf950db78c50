//! `tail`: the change feed of a running `watch`, one JSON line per message on stdout.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::server::tail::TailArgs;

/// Prints the feed until the server closes it or `--count` change events arrived.
pub fn tail(args: &TailArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stdout = std::io::stdout().lock();
    runtime.block_on(crate::server::tail::tail(args, stdout))?;
    Ok(ExitCode::SUCCESS)
}
