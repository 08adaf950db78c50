//! `tributary-sandbox connect <plugin>`: what the host runs for each source of a manifest
//! with a `[sandbox]` section.
//!
//! It starts that connector's emulator filled with the sample MSP (the roster of `--seed`
//! and `--clients`: the same clients as the sample internal database, with their SuperOps
//! account ids and QuickBooks customer ids), prints one JSON line `{"config": {...}}` with
//! the connector settings that point at it, credentials included, and serves until its
//! standard input closes (the host ended, whatever the way) or it is killed. For
//! `internal-db` there is nothing to serve: the settings ask the connector to create the
//! sample database, and the command ends.
//!
//! The generated history ends at a fixed instant ([`ANCHOR`], the end of the sample
//! database's span), so every start serves the same data and a second run of the host
//! moves nothing.

use std::io::Read;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use tributary_sample_msp::{roster, RosterClient};

use crate::{quickbooks, superops};

/// Command-line options of `tributary-sandbox connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The plugin whose emulator to start: `quickbooks`, `superops` or `internal-db`.
    pub plugin: String,
    /// Seed of the sample MSP (the same as the internal database's `sample_data`).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Clients of the sample MSP.
    #[arg(long, default_value_t = 200)]
    pub clients: u32,
    /// Milliseconds added to every answer, as from a distant server (demos, benchmarks).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Live data: a small change every so often (for `tributary watch` demos).
    #[command(flatten)]
    pub mutate: crate::mutate::MutateArgs,
}

/// 2026-06-30, midnight UTC: where the sample internal database's history ends too.
pub fn anchor() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 30)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// The roster's clients known to QuickBooks, as (customer id, name).
fn quickbooks_customers(clients: &[RosterClient]) -> Vec<(u64, String)> {
    clients
        .iter()
        .filter_map(|c| {
            let id = c.quickbooks_customer_id.as_deref()?.parse().ok()?;
            Some((id, c.company_name.clone()))
        })
        .collect()
}

/// The roster's clients known to SuperOps, as (account id, name).
fn superops_clients(clients: &[RosterClient]) -> Vec<(u64, String)> {
    clients
        .iter()
        .filter_map(|c| {
            let id = c.superops_account_id.as_deref()?.parse().ok()?;
            Some((id, c.company_name.clone()))
        })
        .collect()
}

/// Prints `{"config": config}` on one line and flushes, for the host to read.
fn announce(config: Value) {
    println!("{}", json!({ "config": config }));
}

/// Like [`announce`], with the emulator's own base URL (`/emulator/...` routes: webhook
/// target, stats), which is not connector config.
fn announce_with_control(config: Value, control: &str) {
    println!("{}", json!({ "config": config, "control": control }));
}

/// Blocks until standard input is closed.
fn wait_for_stdin_to_close() {
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
}

/// Runs `connect`.
pub fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let clients = roster(args.seed, args.clients);
    let n = clients.len();
    match args.plugin.as_str() {
        "internal-db" => {
            announce(json!({"sample_data": {"clients": args.clients, "seed": args.seed}}));
            Ok(())
        }
        "quickbooks" => {
            let config = quickbooks::EmulatorConfig {
                seed: args.seed,
                roster: quickbooks_customers(&clients),
                counts: quickbooks::Counts {
                    customers: 3,
                    invoices: n * 6,
                    payments: n * 4,
                    purchases: n * 2,
                    bills: n,
                    deposits: n / 2,
                    credit_memos: n / 4,
                    sales_receipts: n / 2,
                    journal_entries: n / 4,
                    ..quickbooks::Counts::default()
                },
                history_days: 365,
                anchor: Some(Utc.from_utc_datetime(&anchor())),
                limits: quickbooks::Limits::production(),
                latency: std::time::Duration::from_millis(args.latency_ms),
                mutate: args.mutate.config(),
                ..quickbooks::EmulatorConfig::default()
            };
            let emu = quickbooks::Emulator::start(config)?;
            let mut settings = emu.connector_config();
            // The local endpoint is plain HTTP on loopback.
            settings["base_url"] = json!(emu.base_url());
            settings["token_url"] = json!(emu.token_url());
            announce_with_control(settings, &emu.base_url());
            wait_for_stdin_to_close();
            drop(emu);
            Ok(())
        }
        "superops" => {
            let config = superops::EmulatorConfig {
                seed: args.seed,
                size: superops::TenantSize {
                    roster: superops_clients(&clients),
                    clients: 3,
                    technicians: (n / 12).clamp(4, 40),
                    tickets: n * 8,
                    project_worklogs: n,
                    alerts: n * 3,
                    assets: n * 4,
                    invoices: n * 3,
                    epoch: Some(anchor()),
                    ..superops::TenantSize::default()
                },
                rate_limit: Some(superops::RateLimit {
                    max_requests: 800,
                    window: std::time::Duration::from_secs(60),
                }),
                latency: std::time::Duration::from_millis(args.latency_ms),
                mutate: args.mutate.config(),
                ..superops::EmulatorConfig::default()
            };
            let emu = superops::Emulator::start(config)?;
            announce(json!({
                "api_url": emu.url(),
                "subdomain": emu.subdomain(),
                "api_token": emu.token(),
                "requests_per_minute": 800,
            }));
            wait_for_stdin_to_close();
            drop(emu);
            Ok(())
        }
        other => anyhow::bail!(
            "no sandbox for plugin {other:?}: there are quickbooks, superops and internal-db"
        ),
    }
}
