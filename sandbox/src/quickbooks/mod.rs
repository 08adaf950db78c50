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
//! and the 30-day CDC horizon are testable in seconds. Tests drive it through [`Emulator`]; users run it with
//! `cargo run -p tributary-sandbox -- quickbooks --port 8601`.

mod auth;
mod cli;
mod clock;
mod config;
mod data;
mod faults;
mod handle;
mod query;
mod report;
mod server;

pub use cli::{run_cli, CliArgs};
pub use config::{CdcCapOrder, CdcOldSince, Counts, EmulatorConfig, FaultKind, FaultSpec, Limits};
pub use handle::Emulator;
pub use server::{Served, Stats, CDC_CAP, CDC_MAX_AGE_DAYS};
