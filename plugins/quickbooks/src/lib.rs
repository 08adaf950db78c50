//! Tributary connector for the QuickBooks Online Accounting API v3.
//!
//! # Overview
//!
//! - [`config::Config`]: the manifest's `config` table (secrets redacted from `Debug`).
//! - [`client::Client`]: every request goes through the SDK's request loop
//!   (`tributary_sdk::toolkit::http`): the per-realm [`tributary_sdk::toolkit::Budget`]
//!   (500/min, 10/s, 10 in flight by default, lowered for the rest of the run when the
//!   server throttles), the bearer token from [`auth::Tokens`] (single-flight refresh a
//!   tenth of its lifetime early; rotated refresh tokens are persisted through the host
//!   before use), and the classification table [`error::TABLE`].
//! - [`streams`]: twelve entity streams (CDC from the last complete read while it is
//!   inside the 30-day horizon; otherwise a reconciliation pass, one seek scan inside a
//!   snapshot, that also proves deletions), `transaction_list` (report, date chunks) and
//!   `deleted_objects` (CDC deletions).
//! - [`parse`]: envelopes are read without re-serializing objects; records carry the
//!   object JSON exactly as QuickBooks sent it.
//!
//! `docs/quickbooks.md` is the user guide; `tributary-sandbox quickbooks` serves an
//! emulator to try it without an account.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod parse;
pub mod schema;
pub mod streams;

use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinSet;
use tracing::Instrument;
use tributary_sdk::{
    Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ErrorKind, ReadRequest,
};

use crate::client::Client;
use crate::config::Config;
use crate::error::Error;
use crate::streams::Ctx;

/// The QuickBooks Online connector.
#[derive(Debug, Default)]
pub struct QuickBooks;

impl Connector for QuickBooks {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new(
            "quickbooks",
            env!("CARGO_PKG_VERSION"),
            "QuickBooks Online: invoices, payments, expenses, bills, deposits, customers, vendors, accounts, items, credit memos, sales receipts, journal entries, transaction list, deletions (CDC)",
        )
    }

    fn spec(&self) -> Value {
        config::spec()
    }

    async fn check(&self, config: Value, out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::from_value(config)?;
        let client = Client::new(&config, out)?;
        client.authenticate().await?;
        let path = format!("companyinfo/{}", config.realm_id);
        client.get(&path, &[], "check: read companyinfo").await?;
        Ok(())
    }

    async fn discover(&self, config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        Config::from_value(config)?;
        Ok(streams::catalog())
    }

    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::from_value(request.config.clone())?;
        let concurrency = config.stream_concurrency.max(1) as usize;
        let ctx = Arc::new(Ctx {
            client: Client::new(&config, out.clone())?,
            config,
            out: out.clone(),
            window: request.window.clone(),
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut failures: Vec<(String, Error)> = Vec::new();
        // Which stream each task reads, to name the ones that end without an answer.
        let mut names: std::collections::HashMap<tokio::task::Id, String> =
            std::collections::HashMap::new();
        for configured in &request.catalog.streams {
            let name = configured.name.clone();
            let Some(kind) = streams::find(&name) else {
                let e = Error::Config(format!("unknown stream {name}; run discover for the list"));
                out.stream_incomplete(&name, &ConnectorError::new(e.kind(), e.to_string()));
                failures.push((name, e));
                continue;
            };
            let state = match configured.sync_mode {
                tributary_sdk::SyncMode::Incremental => request.state.get(&name).cloned(),
                tributary_sdk::SyncMode::FullRefresh => None,
            };
            let ctx = ctx.clone();
            let slots = slots.clone();
            // Spawned tasks do not inherit the call's span, which routes their logs to
            // this call's host; attach it explicitly.
            let task = async move {
                let _slot = slots.acquire_owned().await;
                ctx.out.stream_started(&name);
                let result = streams::read(&ctx, kind, &name, state).await;
                (name, result)
            };
            let name = configured.name.clone();
            let handle = tasks.spawn(task.instrument(tracing::Span::current()));
            names.insert(handle.id(), name);
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            let (name, result) = match joined {
                Ok((_, v)) => v,
                Err(e) => {
                    let name = names.get(&e.id()).cloned().unwrap_or_default();
                    let err = if e.is_cancelled() {
                        // Stopped because another stream failed fatally (that error,
                        // reported with it, is the cause).
                        Error::Host(ConnectorError::new(
                            ErrorKind::System,
                            "stopped before it finished: another stream's fatal error ended the read",
                        ))
                    } else {
                        Error::Host(ConnectorError::new(
                            ErrorKind::Panic,
                            format!("the stream's task failed: {e}"),
                        ))
                    };
                    out.stream_incomplete(&name, &ConnectorError::new(err.kind(), err.to_string()));
                    failures.push((name, err));
                    continue;
                }
            };
            match result {
                Ok(_) => out.stream_complete(&name),
                Err(e) => {
                    tracing::error!(stream = %name, kind = %e.kind(), "stream failed: {e}");
                    out.stream_incomplete(&name, &ConnectorError::new(e.kind(), e.to_string()));
                    if e.is_fatal() {
                        tasks.abort_all();
                    }
                    failures.push((name, e));
                }
            }
        }
        tracing::info!(
            requests = ctx.client.requests_sent(),
            throttles = ctx.client.throttles(),
            "read finished"
        );
        summarize(failures)
    }
}

/// One error for the whole read: a fatal one if any (it explains every other failure),
/// else the first, with the list of failed streams.
fn summarize(mut failures: Vec<(String, Error)>) -> Result<(), ConnectorError> {
    if failures.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
    let index = failures.iter().position(|(_, e)| e.is_fatal()).unwrap_or(0);
    let (stream, first) = failures.swap_remove(index);
    let kind = first.kind();
    let message = if names.len() == 1 {
        format!("stream {stream}: {first}")
    } else {
        format!(
            "{} streams failed ({}); stream {stream}: {first}",
            names.len(),
            names.join(", ")
        )
    };
    Err(ConnectorError::new(kind, message))
}

tributary_sdk::export_connector!(QuickBooks);
