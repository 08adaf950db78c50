//! A faithful local emulator of the SuperOps MSP GraphQL API (`POST /msp`).
//!
//! - [`Emulator`] serves a deterministic generated tenant ([`Tenant`]) on loopback, with
//!   the documented quirks: `hasMore: null` on the last page, big IDs as bare numbers
//!   inside JSON scalars, zone-less timestamps in several precisions, HTTP 400 with an
//!   empty body for a missing subdomain, 401 for a bad token, `rate_limit_exceeded` with
//!   HTTP 200, `SubSelectionNotAllowed` for sub-selected JSON fields.
//! - Tests steer it: mutations ([`Emulator::open_ticket`], [`Emulator::remove`],
//!   [`Emulator::on_request`], and timed or on-demand changes: [`EmulatorConfig::mutate`],
//!   [`Emulator::mutate`]), faults ([`Emulator::inject`], [`Emulator::inject_for`]) and
//!   the rate limit ([`Emulator::set_rate_limit`]).
//!
//! ```text
//! cargo run -p tributary-sandbox -- superops --port 8602
//! ```

mod cli;
mod data;
mod exec;
mod graphql;
mod mutate;
mod schema;
mod server;

pub use cli::{run_cli, CliArgs};
pub use data::{epoch, fmt_time, parse_time, Tenant, TenantSize};
pub use schema::Collection;
pub use server::{Emulator, EmulatorConfig, Fault, RateLimit, Stats};
