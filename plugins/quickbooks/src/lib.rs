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
use tributary_sdk::toolkit::Driver;
use tributary_sdk::{Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ReadRequest};

use crate::client::Client;
use crate::config::Config;
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
        let config = Config::from_value(config)?;
        Ok(streams::catalog(config.window_field))
    }

    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::from_value(request.config.clone())?;
        let streams = streams::declared(config.window_field);
        let driver = Driver::concurrent(config.stream_concurrency as usize);
        let ctx = Arc::new(Ctx {
            client: Client::new(&config, out.clone())?,
            config,
            out: out.clone(),
            window: request.window.clone(),
        });
        let result = driver
            .run(&streams, &request, &out, |run| {
                let ctx = ctx.clone();
                async move { streams::read(&ctx, run).await }
            })
            .await;
        tracing::info!(
            requests = ctx.client.requests_sent(),
            throttles = ctx.client.throttles(),
            "read finished"
        );
        result
    }
}

tributary_sdk::export_connector!(QuickBooks);
