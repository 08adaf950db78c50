//! A faithful local emulator of the QuickBooks Online Accounting API v3.
//!
//! It serves `/v3/company/{realm}/query` (GET and POST), `/cdc`,
//! `/reports/TransactionList`, `/companyinfo/{id}` and the OAuth token endpoint
//! (`/oauth2/v1/tokens/bearer`) on loopback, from deterministic generated data, and
//! reproduces the documented quirks: rotating refresh tokens (the superseded one gets
//! `invalid_grant`), expiring access tokens answered with the lower-case 401 envelope,
//! XML 429 bodies with no `Retry-After`, hidden inactive list rows, the 1000-row
//! `MAXRESULTS` limit, CDC deleted stubs and its 1000-object cap, `Lat: "INVALID"` and
//! JAXB leftovers. Its clock can be moved forward and its company aged, so quiet months
//! and the 30-day CDC horizon are testable in seconds. Every change can be announced by
//! signed webhook ([`WebhookConfig`], legacy or CloudEvents shape) to a loopback receiver,
//! and data can change on a timer ([`crate::mutate::MutateConfig`]) or on demand
//! ([`Emulator::mutate`]). Tests drive it through [`Emulator`]; users run it with
//! `cargo run -p tributary-sandbox -- quickbooks --port 8601`.

mod auth;
mod cli;
mod clock;
mod config;
mod data;
mod faults;
mod handle;
mod mutate;
mod query;
mod report;
mod server;
mod webhooks;

pub use cli::{run_cli, CliArgs};
pub use config::{CdcCapOrder, CdcOldSince, Counts, EmulatorConfig, FaultKind, FaultSpec, Limits};
pub use handle::Emulator;
pub use server::{Served, Stats, CDC_CAP, CDC_MAX_AGE_DAYS};
pub use webhooks::{
    signature as webhook_signature, WebhookConfig, WebhookError, WebhookShape, WebhookStats,
    MAX_BATCH,
};
