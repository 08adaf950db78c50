//! The connector, in-process through the SDK glue, against the SuperOps emulator on
//! loopback. Every test starts its own emulator; none sleeps to synchronise (edits during a
//! sync are landed with the emulator's request hooks).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tributary_sandbox::superops::{
    Collection, Emulator, EmulatorConfig, Fault, RateLimit, TenantSize,
};
use tributary_sdk::host::{Collected, CollectingHandler, InProcess};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ConnectorError, ErrorKind, ReadRequest, StreamStatus,
    SyncMode, Window,
};
use tributary_superops::SuperOps;

const LIST_STREAMS: &[(&str, Collection)] = &[
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

fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("emulator starts")
}

fn config_for(emu: &Emulator) -> Value {
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

fn request(
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

fn read(req: &ReadRequest) -> (Result<(), ConnectorError>, Collected) {
    let handler = CollectingHandler::new();
    let result = InProcess::<SuperOps>::read(req, handler.clone());
    (result, handler.collected())
}

fn pks(c: &Collected, stream: &str) -> Vec<String> {
    c.records
        .get(stream)
        .map(|r| r.iter().map(|r| r.pk.clone()).collect())
        .unwrap_or_default()
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not an id: {other}"),
    }
}

fn pk_field(stream: &str) -> &'static str {
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

fn complete(c: &Collected, stream: &str) -> bool {
    matches!(c.status.get(stream), Some(StreamStatus::Complete))
}

/// A zone-less API timestamp as the connector's cursor text.
fn cursor_of(api: &str) -> String {
    let t = tributary_sandbox::superops::parse_time(api).expect("timestamp");
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[test]
fn full_sync_has_exact_counts_for_every_stream() {
    let emu = start(EmulatorConfig::default());
    let names: Vec<&str> = LIST_STREAMS.iter().map(|(s, _)| *s).collect();
    let (result, c) = read(&request(
        config_for(&emu),
        &names,
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read succeeds");
    for (stream, coll) in LIST_STREAMS {
        let want: BTreeSet<String> = emu
            .dump(*coll)
            .iter()
            .map(|r| id_text(&r[pk_field(stream)]))
            .collect();
        let got = pks(&c, stream);
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert!(
            complete(&c, stream),
            "{stream} not complete: {:?}",
            c.status.get(*stream)
        );
        assert_eq!(got.len(), unique.len(), "{stream} has duplicates");
        assert_eq!(unique, want, "{stream} rows differ");
        assert!(!want.is_empty(), "{stream} is empty in the emulator");
    }
    // Every ticket has a cursor in RFC 3339 UTC.
    for r in &c.records["tickets"] {
        let cur = r.cursor.as_deref().expect("cursor");
        assert!(chrono::DateTime::parse_from_rfc3339(cur).is_ok(), "{cur}");
    }
}

#[test]
fn big_number_ids_survive_exactly_as_strings() {
    let emu = start(EmulatorConfig::default());
    let (result, c) = read(&request(
        config_for(&emu),
        &["tickets", "client_sites", "alerts", "worklog_entries"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read succeeds");
    let tickets: HashMap<String, Value> = emu
        .dump(Collection::Tickets)
        .into_iter()
        .map(|t| (id_text(&t["ticketId"]), t))
        .collect();
    for r in &c.records["tickets"] {
        let data: Value = serde_json::from_str(&r.data).expect("json");
        let want = &tickets[&r.pk];
        // The emulator sends client.accountId as a bare 19-digit number.
        assert!(want["client"]["accountId"].is_u64());
        assert_eq!(
            data["client"]["accountId"],
            json!(want["client"]["accountId"]
                .as_u64()
                .expect("u64")
                .to_string())
        );
        assert_eq!(data["ticketId"], json!(r.pk));
        assert!(r.pk.len() == 19, "{}", r.pk);
        assert_eq!(
            data["worklogTimespent"], want["worklogTimespent"],
            "money stays text"
        );
    }
    // Raw text check: the 19 digits appear verbatim, quoted.
    let site = &c.records["client_sites"][0];
    let raw_id = emu
        .dump(Collection::Sites)
        .iter()
        .find(|s| id_text(&s["id"]) == site.pk)
        .map(|s| {
            s["client"]["accountId"]
                .as_u64()
                .expect("number")
                .to_string()
        })
        .expect("site");
    assert!(
        site.data.contains(&format!("\"accountId\":\"{raw_id}\"")),
        "{}",
        site.data
    );
    let alert: Value = serde_json::from_str(&c.records["alerts"][0].data).expect("json");
    assert!(
        alert["asset"]["assetId"].is_string() && alert["asset"]["client"]["accountId"].is_string()
    );
    let wl: Value = serde_json::from_str(&c.records["worklog_entries"][0].data).expect("json");
    assert!(wl["technician"]["userId"]
        .as_str()
        .is_some_and(|s| s.len() == 19));
}

#[test]
fn incremental_reads_exactly_the_changes() {
    let emu = start(EmulatorConfig::default());
    let config = config_for(&emu);
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    assert_eq!(
        pks(&c1, "tickets").len(),
        emu.dump(Collection::Tickets).len()
    );
    let state1 = c1
        .state
        .get("tickets")
        .cloned()
        .expect("state after the first read");

    let ids: Vec<String> = (0..5)
        .map(|i| emu.with_tenant(|t| t.ticket_id(i * 40)).expect("ticket"))
        .collect();
    let a = emu.open_ticket(0);
    let b = emu.open_ticket(3);
    assert!(emu.update_ticket(&ids[0]) && emu.update_ticket(&ids[1]) && emu.update_ticket(&ids[2]));
    assert!(emu.resolve_ticket(&ids[3]) && emu.resolve_ticket(&ids[4]));
    // The same ticket edited twice is delivered once, at its newest version.
    assert!(emu.resolve_ticket(&ids[0]));

    let state = BTreeMap::from([("tickets".to_string(), state1)]);
    let (r2, c2) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        state,
        Window::default(),
    ));
    r2.expect("second read");
    let got: BTreeSet<String> = pks(&c2, "tickets").into_iter().collect();
    let want: BTreeSet<String> = [a, b].into_iter().chain(ids.iter().cloned()).collect();
    assert_eq!(got, want);
    assert_eq!(pks(&c2, "tickets").len(), 7, "no duplicates");
    let dump: HashMap<String, Value> = emu
        .dump(Collection::Tickets)
        .into_iter()
        .map(|t| (id_text(&t["ticketId"]), t))
        .collect();
    for r in &c2.records["tickets"] {
        let want = cursor_of(dump[&r.pk]["updatedTime"].as_str().expect("time"));
        assert_eq!(
            r.cursor.as_deref(),
            Some(want.as_str()),
            "newest version of {}",
            r.pk
        );
    }
    // Nothing changed: nothing is read again, although the overlap re-fetches rows.
    let state = BTreeMap::from([("tickets".to_string(), c2.state["tickets"].clone())]);
    let (r3, c3) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        state,
        Window::default(),
    ));
    r3.expect("third read");
    assert!(
        pks(&c3, "tickets").is_empty(),
        "re-read {:?}",
        pks(&c3, "tickets")
    );
}

/// The final version of every ticket must have been delivered, and no version twice.
fn assert_converged(emu: &Emulator, deliveries: &[&Collected]) {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut versions = BTreeSet::new();
    for c in deliveries {
        for r in c.records.get("tickets").into_iter().flatten() {
            let cur = r.cursor.clone().expect("cursor");
            assert!(
                versions.insert((r.pk.clone(), cur.clone())),
                "duplicate delivery of {} at {cur}",
                r.pk
            );
            last.insert(r.pk.clone(), cur);
        }
    }
    let dump = emu.dump(Collection::Tickets);
    assert_eq!(last.len(), dump.len(), "every ticket delivered");
    for t in dump {
        let id = id_text(&t["ticketId"]);
        let want = cursor_of(t["updatedTime"].as_str().expect("time"));
        assert_eq!(
            last.get(&id),
            Some(&want),
            "ticket {id} is at its newest version"
        );
    }
}

#[test]
fn edits_during_a_sync_are_neither_missed_nor_duplicated() {
    let emu = start(EmulatorConfig {
        size: TenantSize {
            tickets: 1_000,
            ..TenantSize::default()
        },
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    config["page_size"] = json!(50);
    // First run (offset scan + walk): while page ~4 is being served, edit a ticket already
    // delivered on page 1, one on the last page, and open a new one.
    emu.on_request(5, |t| {
        let first = t.ticket_id(0).expect("ticket");
        let last = t.ticket_id(999).expect("ticket");
        t.update_ticket(&first);
        t.resolve_ticket(&last);
        t.open_ticket(1);
    });
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    // Second run (keyset walk) over many changes, with edits landing mid-walk on rows the
    // walk has already passed: they move behind it and must still be found.
    for i in (0..1_000).step_by(7) {
        let id = emu.with_tenant(|t| t.ticket_id(i)).expect("ticket");
        emu.update_ticket(&id);
    }
    let served = emu.stats().accepted;
    emu.on_request(served + 2, |t| {
        let id = t.ticket_id(7).expect("ticket");
        t.resolve_ticket(&id);
        let id = t.ticket_id(500).expect("ticket");
        t.update_ticket(&id);
        t.open_ticket(2);
    });
    let state = BTreeMap::from([("tickets".to_string(), c1.state["tickets"].clone())]);
    let (r2, c2) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        state,
        Window::default(),
    ));
    r2.expect("second read");
    assert!(
        c2.checkpoints.len() > 2,
        "incremental reads checkpoint per page"
    );
    assert_converged(&emu, &[&c1, &c2]);
}

#[test]
fn resuming_from_any_mid_walk_checkpoint_misses_nothing() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["page_size"] = json!(20);
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    for i in 0..100 {
        let id = emu.with_tenant(|t| t.ticket_id(i * 3)).expect("ticket");
        emu.update_ticket(&id);
    }
    let state = BTreeMap::from([("tickets".to_string(), c1.state["tickets"].clone())]);
    let (r2, c2) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        state,
        Window::default(),
    ));
    r2.expect("second read");
    // Pretend the run died after its second checkpoint: resume from there.
    let (_, mid) = c2
        .checkpoints
        .get(1)
        .cloned()
        .expect("a mid-walk checkpoint");
    let delivered_before: usize = {
        let cur = mid["cursor"].as_str().expect("cursor").to_string();
        c2.records["tickets"]
            .iter()
            .filter(|r| r.cursor.as_deref() <= Some(cur.as_str()))
            .count()
    };
    let (r3, c3) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::from([("tickets".to_string(), mid)]),
        Window::default(),
    ));
    r3.expect("resumed read");
    let before: BTreeSet<String> = c2.records["tickets"][..delivered_before]
        .iter()
        .map(|r| r.pk.clone())
        .collect();
    let resumed: BTreeSet<String> = pks(&c3, "tickets").into_iter().collect();
    let all: BTreeSet<String> = before.union(&resumed).cloned().collect();
    let changed: BTreeSet<String> = pks(&c2, "tickets").into_iter().collect();
    assert_eq!(all, changed, "the resumed run completes the delivery");
    assert!(
        before.is_disjoint(&resumed),
        "nothing before the checkpoint is delivered again"
    );
}

#[test]
fn rate_limit_exceeded_waits_and_recovers() {
    let emu = start(EmulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: 4,
            window: Duration::from_millis(300),
        }),
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    config["page_size"] = json!(25);
    config["max_retries"] = json!(20);
    let (result, c) = read(&request(
        config,
        &["tickets", "alerts"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read recovers");
    assert_eq!(
        pks(&c, "tickets").len(),
        emu.dump(Collection::Tickets).len()
    );
    assert_eq!(pks(&c, "alerts").len(), emu.dump(Collection::Alerts).len());
    assert!(
        emu.stats().throttled > 0,
        "the test did exercise throttling"
    );
    assert!(
        c.logs.iter().any(|l| l.contains("rate limit exceeded")),
        "throttling is logged"
    );
}

#[test]
fn client_side_budget_keeps_a_run_unthrottled() {
    // 30 requests per minute on both sides; the run needs fewer, so the budget never waits,
    // and the server never throttles.
    let emu = start(EmulatorConfig {
        rate_limit: Some(RateLimit::per_minute(30)),
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    config["requests_per_minute"] = json!(30);
    let (result, _) = read(&request(
        config,
        &["clients", "technicians", "invoices"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read");
    assert_eq!(emu.stats().throttled, 0);
}

fn error_of(emu: &Emulator, config: Value, stream: &str) -> ConnectorError {
    let (result, c) = read(&request(
        config,
        &[stream],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    let err = result.expect_err("read fails");
    assert!(
        matches!(c.status.get(stream), Some(StreamStatus::Incomplete { .. })),
        "{stream} incomplete"
    );
    assert!(
        !err.message.contains(emu.token()),
        "token leaked: {}",
        err.message
    );
    err
}

#[test]
fn missing_or_wrong_subdomain_is_explained() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["subdomain"] = json!("not-our-tenant");
    let err = error_of(&emu, config.clone(), "clients");
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.message.contains("http 400 with an empty body")
            && err.message.contains("CustomerSubDomain"),
        "{}",
        err.message
    );
    let check =
        InProcess::<SuperOps>::check(&config, CollectingHandler::new()).expect_err("check fails");
    assert_eq!(check.kind, ErrorKind::Config);
    // A blank subdomain never reaches the network.
    config["subdomain"] = json!("   ");
    let err =
        InProcess::<SuperOps>::check(&config, CollectingHandler::new()).expect_err("check fails");
    assert!(
        err.message.contains("subdomain is empty"),
        "{}",
        err.message
    );
    assert_eq!(emu.stats().bad_subdomain, 2);
}

#[test]
fn bad_token_is_an_auth_error_naming_the_token() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["api_token"] = json!("revoked-token-value-9999");
    let err = error_of(&emu, config.clone(), "tickets");
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(
        err.message.contains("api token (http 401)"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("revoked-token-value-9999"));
    InProcess::<SuperOps>::check(&config_for(&emu), CollectingHandler::new())
        .expect("the right token checks");
}

#[test]
fn forbidden_and_subscription_codes_are_config_errors() {
    let emu = start(EmulatorConfig::default());
    emu.inject(1, Fault::ClientError("forbidden".into()));
    let err = error_of(&emu, config_for(&emu), "invoices");
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.message
            .contains("denied access to getInvoiceList (forbidden)"),
        "{}",
        err.message
    );
    emu.inject(1, Fault::ClientError("subscription_trial_expired".into()));
    let err = error_of(&emu, config_for(&emu), "clients");
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.message
            .contains("subscription is not active (subscription_trial_expired)"),
        "{}",
        err.message
    );
}

#[test]
fn partial_data_with_errors_fails_the_page() {
    let emu = start(EmulatorConfig::default());
    emu.inject(1, Fault::Partial);
    let (result, c) = read(&request(
        config_for(&emu),
        &["clients", "technicians"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    let err = result.expect_err("the read reports the failure");
    assert_eq!(err.kind, ErrorKind::Data);
    assert!(
        err.message
            .contains("partial data with errors, page rejected"),
        "{}",
        err.message
    );
    assert!(
        pks(&c, "clients").is_empty(),
        "no row of the partial page was kept"
    );
    // The failure is confined to its stream.
    assert!(complete(&c, "technicians"));
    assert_eq!(
        pks(&c, "technicians").len(),
        emu.dump(Collection::Technicians).len()
    );
}

#[test]
fn server_errors_and_slow_responses_are_retried() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["timeout_seconds"] = json!(0.3);
    emu.inject(2, Fault::Status(502));
    emu.inject(1, Fault::Delay(Duration::from_secs(2)));
    emu.inject(1, Fault::Status(503));
    let (result, c) = read(&request(
        config,
        &["assets"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read recovers");
    assert_eq!(pks(&c, "assets").len(), emu.dump(Collection::Assets).len());
}

/// tickets, resolved, fr measured, fr met, res measured, res met, resolution hours.
type SlaCounts = (u64, u64, u64, u64, u64, u64, f64);

fn in_window(t: Option<chrono::NaiveDateTime>, w: &Window) -> bool {
    let Some(t) = t.map(|t| t.and_utc()) else {
        return false;
    };
    w.start.is_none_or(|s| t >= s) && w.end.is_none_or(|e| t < e)
}

#[test]
fn sla_and_productivity_metrics_match_independent_computation() {
    let emu = start(EmulatorConfig::default());
    let parse = |v: &Value| v.as_str().and_then(tributary_sandbox::superops::parse_time);
    for window in [
        Window::default(),
        Window {
            start: Some("2024-03-01T00:00:00Z".parse().expect("date")),
            end: Some("2024-06-01T00:00:00Z".parse().expect("date")),
            ..Window::default()
        },
    ] {
        let (result, c) = read(&request(
            config_for(&emu),
            &["sla_summary", "technician_productivity"],
            SyncMode::FullRefresh,
            BTreeMap::new(),
            window.clone(),
        ));
        result.expect("read");
        let tickets = emu.dump(Collection::Tickets);
        // Per client: tickets created in the window.
        let mut want: BTreeMap<String, SlaCounts> = BTreeMap::new();
        for t in &tickets {
            let created = parse(&t["createdTime"]);
            if !in_window(created, &window) {
                continue;
            }
            let e = want.entry(id_text(&t["client"]["accountId"])).or_default();
            e.0 += 1;
            if let Some(r) = parse(&t["resolutionTime"]) {
                e.1 += 1;
                e.6 += (r - created.expect("created")).num_seconds() as f64 / 3600.0;
            }
            if let Some(v) = t["firstResponseViolated"].as_bool() {
                e.2 += 1;
                e.3 += u64::from(!v);
            }
            if let Some(v) = t["resolutionViolated"].as_bool() {
                e.4 += 1;
                e.5 += u64::from(!v);
            }
        }
        let got: BTreeMap<String, Value> = c.records["sla_summary"]
            .iter()
            .map(|r| (r.pk.clone(), serde_json::from_str(&r.data).expect("json")))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (client, (n, resolved, frm, frmet, rm, rmet, hours)) in &want {
            let g = &got[client];
            assert_eq!(g["tickets"], json!(n));
            assert_eq!(g["resolved_tickets"], json!(resolved));
            assert_eq!(g["first_response_measured"], json!(frm));
            assert_eq!(g["first_response_met"], json!(frmet));
            assert_eq!(g["resolution_measured"], json!(rm));
            assert_eq!(g["resolution_met"], json!(rmet));
            let close = |a: &Value, b: f64| (a.as_f64().expect("number") - b).abs() < 1e-9;
            if *frm > 0 {
                assert!(close(
                    &g["first_response_attainment"],
                    *frmet as f64 / *frm as f64
                ));
            } else {
                assert!(g["first_response_attainment"].is_null());
            }
            if *rm > 0 {
                assert!(close(
                    &g["resolution_attainment"],
                    *rmet as f64 / *rm as f64
                ));
            }
            if *resolved > 0 {
                assert!(
                    close(&g["mean_resolution_hours"], hours / *resolved as f64),
                    "{client}: {g}"
                );
            }
        }
        // Per technician: worklogs by billDateTime, tickets by resolutionTime.
        let mut hours: BTreeMap<String, (u64, i64, i64, u64)> = BTreeMap::new();
        for w in emu.dump(Collection::Worklogs) {
            if !in_window(parse(&w["billDateTime"]), &window) {
                continue;
            }
            let cents = {
                let (a, b) = w["qty"]
                    .as_str()
                    .expect("qty")
                    .split_once('.')
                    .expect("decimal");
                a.parse::<i64>().expect("int") * 100 + b.parse::<i64>().expect("int")
            };
            let e = hours
                .entry(id_text(&w["technician"]["userId"]))
                .or_default();
            e.0 += 1;
            e.1 += cents;
            if w["billable"] == json!(true) {
                e.2 += cents;
            }
        }
        for t in &tickets {
            if t["technician"].is_null() || !in_window(parse(&t["resolutionTime"]), &window) {
                continue;
            }
            hours
                .entry(id_text(&t["technician"]["userId"]))
                .or_default()
                .3 += 1;
        }
        let got: BTreeMap<String, Value> = c.records["technician_productivity"]
            .iter()
            .map(|r| (r.pk.clone(), serde_json::from_str(&r.data).expect("json")))
            .collect();
        assert_eq!(got.len(), hours.len());
        for (tech, (n, total, billable, resolved)) in hours {
            let g = &got[&tech];
            assert_eq!(g["worklog_entries"], json!(n));
            let as_cents = |v: &Value| {
                (v.as_str().expect("text").parse::<f64>().expect("decimal") * 100.0).round() as i64
            };
            assert_eq!(as_cents(&g["worklog_hours"]), total);
            assert_eq!(as_cents(&g["billable_hours"]), billable);
            assert_eq!(g["tickets_resolved"], json!(resolved));
            if total > 0 {
                assert!(
                    (g["billable_share"].as_f64().expect("share") - billable as f64 / total as f64)
                        .abs()
                        < 1e-9
                );
            }
        }
    }
}

#[test]
fn client_filter_window_and_limit_are_honoured() {
    let emu = start(EmulatorConfig::default());
    let client = id_text(&emu.dump(Collection::Clients)[2]["accountId"]);
    let window = Window {
        clients: vec![client.clone()],
        ..Window::default()
    };
    let streams = [
        "tickets",
        "client_sites",
        "alerts",
        "invoices",
        "worklog_entries",
        "clients",
    ];
    let (result, c) = read(&request(
        config_for(&emu),
        &streams,
        SyncMode::FullRefresh,
        BTreeMap::new(),
        window,
    ));
    result.expect("read");
    let tickets: BTreeSet<String> = emu
        .dump(Collection::Tickets)
        .iter()
        .filter(|t| id_text(&t["client"]["accountId"]) == client)
        .map(|t| id_text(&t["ticketId"]))
        .collect();
    assert_eq!(
        pks(&c, "tickets").into_iter().collect::<BTreeSet<_>>(),
        tickets
    );
    assert_eq!(pks(&c, "clients"), vec![client.clone()]);
    let sites = emu
        .dump(Collection::Sites)
        .iter()
        .filter(|s| id_text(&s["client"]["accountId"]) == client)
        .count();
    assert_eq!(pks(&c, "client_sites").len(), sites);
    let wl = emu
        .dump(Collection::Worklogs)
        .iter()
        .filter(|w| {
            w["workItem"]["module"] == "TICKET"
                && tickets.contains(&id_text(&w["workItem"]["workId"]))
        })
        .count();
    assert_eq!(pks(&c, "worklog_entries").len(), wl);
    for r in &c.records["alerts"] {
        let v: Value = serde_json::from_str(&r.data).expect("json");
        assert_eq!(v["asset"]["client"]["accountId"], json!(client));
    }
    let limited = Window {
        limit: Some(7),
        ..Window::default()
    };
    let (result, c) = read(&request(
        config_for(&emu),
        &["tickets", "assets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        limited,
    ));
    result.expect("read");
    assert_eq!(pks(&c, "tickets").len(), 7);
    assert_eq!(pks(&c, "assets").len(), 7);
}

#[test]
fn quirks_string_total_and_fractional_times_are_read() {
    let emu = start(EmulatorConfig {
        total_count_as_string: true,
        ticket_fraction_digits: 6,
        ..EmulatorConfig::default()
    });
    let (r, c) = read(&request(
        config_for(&emu),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r.expect("read");
    assert_eq!(
        pks(&c, "tickets").len(),
        emu.dump(Collection::Tickets).len()
    );
    let state = c.state["tickets"]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    assert!(state.ends_with('Z') && state.contains('.'), "{state}");
    let emu3 = start(EmulatorConfig {
        ticket_fraction_digits: 3,
        ..EmulatorConfig::default()
    });
    let (r, c) = read(&request(
        config_for(&emu3),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r.expect("read");
    assert_eq!(
        pks(&c, "tickets").len(),
        emu3.dump(Collection::Tickets).len()
    );
}

#[test]
fn secrets_never_reach_logs_errors_records_or_state() {
    let emu = start(EmulatorConfig::default());
    let token = emu.token().to_string();
    let mut outputs: Vec<String> = Vec::new();
    let mut collect = |c: &Collected, r: &Result<(), ConnectorError>| {
        outputs.extend(c.logs.iter().cloned());
        outputs.extend(c.records.values().flatten().map(|r| r.data.clone()));
        outputs.extend(c.checkpoints.iter().map(|(_, s)| s.to_string()));
        outputs.extend(c.status.values().map(|s| format!("{s:?}")));
        if let Err(e) = r {
            outputs.push(e.to_string());
        }
    };
    let req = request(
        config_for(&emu),
        &["clients", "tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    );
    emu.inject(1, Fault::Status(500));
    emu.inject(1, Fault::ClientError("rate_limit_exceeded".into()));
    let (r, c) = read(&req);
    collect(&c, &r);
    for fault in [Fault::ClientError("forbidden".into()), Fault::Partial] {
        emu.inject(1, fault);
        let (r, c) = read(&req);
        collect(&c, &r);
    }
    let mut bad = config_for(&emu);
    bad["subdomain"] = json!("nope");
    let (r, c) = read(&request(
        bad,
        &["clients"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    collect(&c, &r);
    let mut unknown = config_for(&emu);
    unknown["api_tokn"] = json!(token.clone());
    if let Err(e) = InProcess::<SuperOps>::check(&unknown, CollectingHandler::new()) {
        outputs.push(e.to_string());
    }
    let cfg = tributary_superops::config::Config::from_value(config_for(&emu)).expect("config");
    outputs.push(format!("{cfg:?}"));
    assert!(outputs.len() > 10);
    for o in &outputs {
        assert!(!o.contains(&token), "secret in output: {o}");
    }
}

#[test]
fn spec_and_discover_describe_every_stream() {
    let emu = start(EmulatorConfig::default());
    let info = InProcess::<SuperOps>::info().expect("info");
    assert_eq!(info.name, "superops");
    let catalog = InProcess::<SuperOps>::discover(
        &config_for(&emu),
        Arc::new(tributary_sdk::host::CollectingHandler::default()),
    )
    .expect("discover");
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    for s in LIST_STREAMS
        .iter()
        .map(|(s, _)| *s)
        .chain(["sla_summary", "technician_productivity"])
    {
        assert!(names.contains(&s), "{s}");
    }
    let tickets = catalog
        .streams
        .iter()
        .find(|s| s.name == "tickets")
        .expect("tickets");
    assert_eq!(tickets.cursor_field.as_deref(), Some("updatedTime"));
    assert!(catalog
        .streams
        .iter()
        .find(|s| s.name == "clients")
        .expect("clients")
        .cursor_field
        .is_none());
}
