//! End-to-end tests of the foundation (issue 2), through the real binary and real `.so`
//! plugins. One test binary: each module is one concern.

#[path = "../common/mod.rs"]
mod common;

/// A lean headless-Chromium driver (DevTools protocol over a WebSocket).
mod cdp;
/// Two runs on one destination, and source names that would share a table.
mod concurrency;
/// `kill -9` in the middle of a large sync, then resume.
mod crash;
/// Hard and soft deletes in the internal database, proven by reconciliation.
mod deletions;
/// Bad input, signals and working directories of a user's first hour.
mod hardening;
/// Sync of the internal database into SQLite and JSONL: incremental, limits, windows.
mod internal_db;
/// `isolation = "process"`: crashing, hung and greedy plugins; parity with in-process.
mod isolation;
/// Manifests that must be refused with a clear error and nothing written.
mod manifest_errors;
/// Runs narrowed by client or dates never skip rows for the next plain run.
mod narrowed;
/// Panicking, incompatible and foreign libraries.
mod plugins;
/// The PostgreSQL destination: parity with SQLite, `kill -9` and resume.
mod postgres;
/// The shipped manifest's three sources of one MSP, `--client` and `client_360`.
mod product;
/// Data quality: planted gaps, violations, duplicates and orphans; limits exit 3.
mod quality;
/// `new-connector`: a generated crate builds out of tree and syncs through the host.
mod scaffold;
/// The internal-db connector against the real PostgreSQL and MariaDB services.
mod services;
/// The status page in headless Chromium: sources, streams and the live feed.
mod status_page;
/// `watch`: a change reaches a subscriber and the warehouse; SIGINT stops it cleanly.
mod watch;
/// `watch` against the emulators: changes, webhooks, `kill -9`, snapshot deletions.
mod watch_live;
/// `watch` with `[sinks.nats]` against the real JetStream: no loss, no duplicate, failures.
mod watch_nats;
/// What the `watch` tests share: a running watch, `tail`, HTTP, test-owned emulators.
mod watching;
