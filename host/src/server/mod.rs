//! The HTTP side of `tributary watch`: QuickBooks webhooks in (each one asks watch to
//! fetch now), committed changes out (a WebSocket feed), and `/health`, `/metrics` and
//! a status page for whoever runs it.
//!
//! [`app`] builds the router from a [`ServerState`] (tests drive it on a bound
//! listener); [`serve`] runs it until shutdown. Routes, by file:
//!
//! - [`webhooks`]: `POST /webhooks/quickbooks` (signature, parsing, de-duplication);
//! - [`feed`]: `GET /events`, the WebSocket feed of [`crate::events::EventBus`];
//! - [`routes`]: `GET /health`, `GET /metrics`, the router and auth;
//! - [`page`]: `GET /` and `GET /status.json`;
//! - [`tail`]: `tributary tail`, the feed's command-line client.

mod config;
mod error;
pub mod feed;
pub mod page;
mod routes;
mod state;
pub mod tail;
pub mod webhooks;

pub use config::{QuickBooksWebhook, ServerConfig};
pub use error::{Error, Result};
pub use routes::{app, serve};
pub use state::{ServerState, Trigger};
