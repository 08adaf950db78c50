//! The SuperOps MSP connector: reads a SuperOps.ai tenant over its GraphQL API.
//!
//! - [`config::Config`]: the manifest's `config` table (endpoint, subdomain, token, page
//!   size, request budget, concurrency, overlap, how often ticket ids are reconciled).
//! - [`client::Client`]: headers, the classification table [`client::TABLE`] and the
//!   mapping of every failure to an [`error::Error`]; budget and retries are the SDK's
//!   request loop (`tributary_sdk::toolkit::http`).
//! - [`json`]: pages kept as raw text; bare-number IDs turned into strings exactly.
//! - [`streams`]: full scans with concurrent page fetches, the incremental tickets stream
//!   and the derived `sla_summary` / `technician_productivity` streams; deletions proven
//!   by snapshots (whole full-refresh reads, and a periodic listing of ticket ids).
//!
//! The streams, formulas, deletions and error messages are documented in
//! `docs/superops.md`.
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod json;
pub mod schema;
pub mod streams;
pub mod time;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use tributary_sdk::toolkit::Driver;
use tributary_sdk::{Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ReadRequest};

use crate::config::Config;

/// The connector.
#[derive(Debug, Default)]
pub struct SuperOps;

impl Connector for SuperOps {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new(
            "superops",
            env!("CARGO_PKG_VERSION"),
            "SuperOps.ai MSP (PSA/RMM) over GraphQL: tickets with SLA, clients, sites, contracts, technicians, worklogs, alerts, assets, invoices, SLA and productivity metrics",
        )
    }

    fn spec(&self) -> Value {
        config::spec()
    }

    async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::from_value(config)?;
        let client = client::Client::new(&config)?;
        client
            .list(
                "query getClientList($input: ListInfoInput!) { getClientList(input: $input) { clients { accountId } listInfo { totalCount } } }",
                "getClientList",
                "clients",
                &json!({"input": {"page": 1, "pageSize": 1}}),
                "check (getClientList)",
            )
            .await?;
        Ok(())
    }

    async fn discover(&self, config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        Config::from_value(config)?;
        Ok(schema::declared().catalog())
    }

    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let config = Config::from_value(request.config.clone())?;
        let client = client::Client::new(&config)?;
        let ctx = Arc::new(streams::Ctx::new(
            client.clone(),
            config,
            request.window.clone(),
            out.clone(),
        ));
        // One stream at a time: the scans inside a stream already use the whole budget.
        let result = Driver::sequential()
            .run(&schema::declared(), &request, &out, |run| {
                let ctx = ctx.clone();
                async move { streams::read_stream(&ctx, run).await }
            })
            .await;
        tracing::info!(
            requests = client.stats().requests.load(Ordering::Relaxed),
            throttled = client.stats().throttled.load(Ordering::Relaxed),
            retried = client.stats().retried.load(Ordering::Relaxed),
            "superops read finished"
        );
        result
    }
}

tributary_sdk::export_connector!(SuperOps);
