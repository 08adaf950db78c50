//! The Tributary host as a library: everything the `tributary` binary drives, apart from
//! its command line.
//!
//! - [`app`] holds the commands the binary runs (`run`, `check`, `quality`, …); `main.rs`
//!   only parses the command line.
//! - [`manifest`] parses `connectors.toml` (serde shape, `${VAR}`, positions of keys) and
//!   [`plan`] resolves it with the command line into sources ready to run.
//! - [`loader`] finds plugin libraries (checking their structure before `dlopen`);
//!   [`isolation`] runs a source's plugin in a process of its own when the manifest asks.
//! - [`runner`] reads every source through its plugin into one [`destination`], under the
//!   [`lock`]s that make one process the only writer.
//! - [`clients`] resolves `--client` to each source's own ids.
//! - [`views`] defines `client_360`, one row per client across the sources.
//! - [`sandbox`] starts the built-in emulators for the sources a `[sandbox]` serves.
//! - [`credentials`] keeps rotated secrets; [`validation`] checks JSON against a schema;
//!   [`progress`] draws bars and the summary table.
//! - [`events`] turns committed changes into events; [`sinks`] publishes them to message
//!   systems (NATS JetStream) before the commit.
//! - [`conformance`] runs the SDK's conformance kit against one source.
//! - [`quality`] measures each stream (schema, completeness, duplicates, freshness) and
//!   the cross-source references in the warehouse.
//! - [`watch`] keeps sources in incremental sync; [`events`] carries their committed
//!   changes, and [`server`] serves them (WebSocket), webhooks, `/health` and `/metrics`.

pub mod app;
pub mod clients;
pub mod conformance;
pub mod credentials;
pub mod destination;
pub mod events;
pub mod isolation;
pub mod loader;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod quality;
pub mod runner;
pub mod sandbox;
pub mod server;
pub mod sinks;
pub mod validation;
pub mod views;
pub mod watch;
