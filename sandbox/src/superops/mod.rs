//! superops emulator (being written).

/// Command-line options of `tributary-sandbox superops`.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Runs the emulator until Ctrl-C.
pub async fn run_cli(_args: CliArgs) -> anyhow::Result<()> {
    anyhow::bail!("the superops emulator is not written yet")
}
