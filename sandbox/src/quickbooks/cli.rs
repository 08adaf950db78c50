//! `tributary-sandbox quickbooks`: the emulator as a standalone server.

use std::time::Duration;

use super::config::{Counts, EmulatorConfig, Limits};
use super::server::{app, Shared};
use super::webhooks::{WebhookConfig, WebhookShape};
use crate::mutate::MutateArgs;

/// Command-line options of `tributary-sandbox quickbooks`.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8601)]
    pub port: u16,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of invoices to generate (other entities keep their defaults).
    #[arg(long)]
    pub invoices: Option<usize>,
    /// Number of customers to generate.
    #[arg(long)]
    pub customers: Option<usize>,
    /// Serve without the production limits (500/min, 10/s, 10 in flight).
    #[arg(long)]
    pub no_limits: bool,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Company id (realmId).
    #[arg(long)]
    pub realm_id: Option<String>,
    /// POST a signed webhook for every change to this receiver
    /// (`http://127.x.y.z:port/path`; loopback only).
    #[arg(long, value_name = "URL", requires = "webhook_verifier_token")]
    pub webhook_url: Option<String>,
    /// Verifier token that signs webhooks (`intuit-signature`).
    #[arg(
        long,
        env = "TRIBUTARY_SANDBOX_WEBHOOK_VERIFIER_TOKEN",
        hide_env_values = true
    )]
    pub webhook_verifier_token: Option<String>,
    /// Webhook payload shape.
    #[arg(long, value_enum, default_value_t = WebhookShape::Legacy)]
    pub webhook_shape: WebhookShape,
    /// Send each webhook payload again this many times, byte for byte (as Intuit's
    /// retries do; receivers must de-duplicate).
    #[arg(long, default_value_t = 0)]
    pub webhook_resends: u32,
    /// Timed data changes.
    #[command(flatten)]
    pub mutate: MutateArgs,
}

/// Runs the emulator until Ctrl-C, printing a ready-to-paste connector config.
pub async fn run_cli(args: CliArgs) -> anyhow::Result<()> {
    let mut config = EmulatorConfig {
        seed: args.seed,
        counts: Counts::default(),
        limits: if args.no_limits {
            Limits::off()
        } else {
            Limits::production()
        },
        access_token_ttl: Duration::from_secs(args.token_ttl),
        port: args.port,
        ..EmulatorConfig::default()
    };
    if let Some(n) = args.invoices {
        config.counts.invoices = n;
    }
    if let Some(n) = args.customers {
        config.counts.customers = n;
    }
    if let Some(r) = args.realm_id {
        config.realm_id = r;
    }
    if let (Some(url), Some(token)) = (args.webhook_url, args.webhook_verifier_token) {
        config.webhook = Some(
            WebhookConfig::new(url, token)
                .shape(args.webhook_shape)
                .resends(args.webhook_resends),
        );
    }
    config.mutate = args.mutate.config();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    let addr = listener.local_addr()?;
    let shared = std::sync::Arc::new(Shared::new(config.clone())?);
    shared.spawn_background();
    println!("QuickBooks emulator listening on http://{addr}");
    println!("Connector config (the refresh token rotates on first use; the host persists it):");
    println!("[sources.quickbooks.config]");
    println!("realm_id = \"{}\"", config.realm_id);
    println!("client_id = \"{}\"", config.client_id);
    println!("client_secret = \"{}\"", config.client_secret);
    println!("refresh_token = \"{}\"", config.refresh_token);
    println!("base_url = \"http://{addr}\"");
    println!("token_url = \"http://{addr}/oauth2/v1/tokens/bearer\"");
    if let Some(w) = &config.webhook {
        println!(
            "Webhooks: {:?} payloads to {} (signed with the given verifier token)",
            w.shape, w.url
        );
    }
    if let Some(m) = &config.mutate {
        println!(
            "Changing data every {} ms, at most {} times",
            m.every.as_millis(),
            m.max
        );
    }
    println!("Mutate data: curl -X POST http://{addr}/emulator/mutations -H 'content-type: application/json' -d '{{\"op\":\"create\",\"entity\":\"Invoice\",\"count\":5}}'");
    axum::serve(listener, app(shared))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
