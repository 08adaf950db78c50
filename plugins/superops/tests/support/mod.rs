//! Helpers shared by the in-process test binaries: an emulator, a config pointing at
//! it, a read request, and views of what the connector emitted.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tributary_sandbox::superops::{Collection, Emulator, EmulatorConfig};
use tributary_sdk::host::{Collected, CollectingHandler, InProcess};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ConnectorError, ReadRequest, StreamStatus, SyncMode,
    Window,
};
use tributary_superops::SuperOps;

pub const LIST_STREAMS: &[(&str, Collection)] = &[
    ("tickets", Collection::Tickets),
    ("clients", Collection::Clients),
    ("client_sites", Collection::Sites),
    ("client_contracts", Collection::Contracts),
    ("technicians", Collection::Technicians),
    ("worklog_entries", Collection::Worklogs),
    ("alerts", Collection::Alerts),
    ("assets", Collection::Assets),
    ("invoices", Collection::Invoices),
];

pub fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("emulator starts")
}

pub fn config_for(emu: &Emulator) -> Value {
    json!({
        "api_url": emu.url(),
        "subdomain": emu.subdomain(),
        "api_token": emu.token(),
        "requests_per_minute": 0,
        "concurrency": 4,
        "rate_limit_wait_seconds": 0.05,
        "timeout_seconds": 5,
    })
}

pub fn request(
    config: Value,
    streams: &[&str],
    mode: SyncMode,
    state: BTreeMap<String, Value>,
    window: Window,
) -> ReadRequest {
    ReadRequest {
        config,
        catalog: ConfiguredCatalog {
            streams: streams
                .iter()
                .map(|s| ConfiguredStream {
                    name: (*s).to_string(),
                    sync_mode: mode,
                })
                .collect(),
        },
        state,
        window,
    }
}

pub fn read(req: &ReadRequest) -> (Result<(), ConnectorError>, Collected) {
    let handler = CollectingHandler::new();
    let result = InProcess::<SuperOps>::read(req, handler.clone());
    (result, handler.collected())
}

pub fn pks(c: &Collected, stream: &str) -> Vec<String> {
    c.records
        .get(stream)
        .map(|r| r.iter().map(|r| r.pk.clone()).collect())
        .unwrap_or_default()
}

pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not an id: {other}"),
    }
}

pub fn pk_field(stream: &str) -> &'static str {
    match stream {
        "tickets" => "ticketId",
        "clients" => "accountId",
        "client_sites" | "alerts" => "id",
        "client_contracts" => "contractId",
        "technicians" => "userId",
        "worklog_entries" => "itemId",
        "assets" => "assetId",
        "invoices" => "invoiceId",
        _ => unreachable!(),
    }
}

pub fn complete(c: &Collected, stream: &str) -> bool {
    matches!(c.status.get(stream), Some(StreamStatus::Complete))
}

/// A zone-less API timestamp as the connector's cursor text.
pub fn cursor_of(api: &str) -> String {
    let t = tributary_sandbox::superops::parse_time(api).expect("timestamp");
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
