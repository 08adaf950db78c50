//! `tributary-sandbox superops`: serve the emulator until Ctrl-C.

use std::time::Duration;

use super::data::TenantSize;
use super::server::{self, EmulatorConfig, RateLimit};
use crate::mutate::MutateArgs;

/// Command-line options of `tributary-sandbox superops`.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed of the generated tenant.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of tickets to generate.
    #[arg(long, default_value_t = 300)]
    pub tickets: usize,
    /// Number of clients to generate.
    #[arg(long, default_value_t = 12)]
    pub clients: usize,
    /// The tenant subdomain clients must send as `CustomerSubDomain`.
    #[arg(long, default_value = "acme-msp")]
    pub subdomain: String,
    /// The API token clients must send as `Authorization: Bearer`.
    #[arg(long, default_value = "sandbox-token-0123456789abcdef")]
    pub token: String,
    /// Requests allowed per rate window before `rate_limit_exceeded` (0 = limits off).
    #[arg(long, default_value_t = 800)]
    pub rate_limit: u32,
    /// Length of the rate window in seconds.
    #[arg(long, default_value_t = 60)]
    pub rate_window_seconds: u64,
    /// Send `totalCount` as a string.
    #[arg(long)]
    pub total_count_as_string: bool,
    /// Fractional digits of ticket timestamps (0, 3 or 6).
    #[arg(long, default_value_t = 0)]
    pub ticket_fraction_digits: u8,
    /// Timed data changes.
    #[command(flatten)]
    pub mutate: MutateArgs,
}

impl CliArgs {
    /// The emulator configuration these options describe.
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            port: self.port,
            seed: self.seed,
            size: TenantSize {
                tickets: self.tickets,
                clients: self.clients,
                ..TenantSize::default()
            },
            subdomain: self.subdomain.clone(),
            token: self.token.clone(),
            rate_limit: (self.rate_limit > 0).then(|| RateLimit {
                max_requests: self.rate_limit,
                window: Duration::from_secs(self.rate_window_seconds.max(1)),
            }),
            total_count_as_string: self.total_count_as_string,
            ticket_fraction_digits: self.ticket_fraction_digits,
            refuse_created_after: false,
            latency: Duration::ZERO,
            mutate: self.mutate.config(),
        }
    }
}

/// Runs the emulator until Ctrl-C. Prints the endpoint on stdout first, so scripts can
/// read it.
pub async fn run_cli(args: CliArgs) -> anyhow::Result<()> {
    let config = args.config();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    let addr = listener.local_addr()?;
    println!(
        "superops emulator listening on http://{addr}/msp (CustomerSubDomain: {}, token: {})",
        config.subdomain, config.token
    );
    tokio::select! {
        r = server::serve(listener, &config) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
