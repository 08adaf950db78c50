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
use tributary_sdk::{ConnectorError, ErrorKind, StreamStatus, SyncMode, Window};
use tributary_superops::SuperOps;

mod support;

use support::*;

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
    // The same budget on both sides, with the window scaled down from a minute to half a
    // second so that the run needs several windows: without the client-side budget the
    // server throttles, with a slower one the run would not reach the budget.
    const BUDGET: u32 = 8;
    const WINDOW: Duration = Duration::from_millis(500);
    let emu = start(EmulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: BUDGET,
            window: WINDOW,
        }),
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    config["requests_per_minute"] = json!(BUDGET);
    config["rate_window_seconds"] = json!(WINDOW.as_secs_f64());
    config["page_size"] = json!(5);
    let started = std::time::Instant::now();
    let (result, c) = read(&request(
        config,
        &["alerts", "invoices"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    let elapsed = started.elapsed();
    result.expect("read");
    assert_eq!(pks(&c, "alerts").len(), emu.dump(Collection::Alerts).len());
    assert_eq!(
        pks(&c, "invoices").len(),
        emu.dump(Collection::Invoices).len()
    );
    let stats = emu.stats();
    let windows = stats.accepted.div_ceil(u64::from(BUDGET));
    assert!(windows >= 5, "the run needs several windows: {stats:?}");
    assert_eq!(stats.throttled, 0, "never throttled: {stats:?}");
    assert_eq!(
        stats.peak_in_window,
        u64::from(BUDGET),
        "the budget is used to the full: {stats:?}"
    );
    // The client waited for each window to slide: at most BUDGET requests per window.
    // (How much longer it took is the machine's business, not asserted.)
    let waits = windows as u32 - 1;
    assert!(
        elapsed >= WINDOW * waits,
        "{} requests in {elapsed:?}: faster than the budget",
        stats.accepted
    );
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
fn forbidden_and_subscription_codes_fail_only_their_stream() {
    let emu = start(EmulatorConfig::default());
    for (code, phrase) in [
        (
            "forbidden",
            "denied access (forbidden) to stream invoices (getInvoiceList) page 1",
        ),
        (
            "subscription_trial_expired",
            "subscription is not active (subscription_trial_expired) for stream invoices (getInvoiceList) page 1",
        ),
    ] {
        emu.inject_for("getInvoiceList", 0, Fault::ClientError(code.into()));
        let (result, c) = read(&request(
            config_for(&emu),
            &["invoices", "clients"],
            SyncMode::FullRefresh,
            BTreeMap::new(),
            Window::default(),
        ));
        let err = result.expect_err("the read reports the failure");
        assert_eq!(err.kind, ErrorKind::Config, "{code}: never retried");
        assert!(err.message.contains(phrase), "{code}: {}", err.message);
        assert!(
            matches!(c.status.get("invoices"), Some(StreamStatus::Incomplete { .. })),
            "{code}"
        );
        assert!(pks(&c, "invoices").is_empty(), "{code}");
        // A permission or plan is per query: the other stream goes on.
        assert!(complete(&c, "clients"), "{code}: {:?}", c.status.get("clients"));
        assert_eq!(
            pks(&c, "clients").len(),
            emu.dump(Collection::Clients).len(),
            "{code}"
        );
    }
    assert_eq!(
        emu.stats().by_operation.get("getInvoiceList"),
        Some(&2),
        "one request per fault, none retried"
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

/// tickets, resolved, fr measured, fr met, res measured, res met, resolution micros.
type SlaCounts = (u64, u64, u64, u64, u64, u64, i64);

fn in_window(t: Option<chrono::NaiveDateTime>, w: &Window) -> bool {
    let Some(t) = t.map(|t| t.and_utc()) else {
        return false;
    };
    w.start.is_none_or(|s| t >= s) && w.end.is_none_or(|e| t < e)
}

/// Asserts `got` is `want_num / want_den`, or null when the denominator is 0; returns
/// whether it was the null case.
fn assert_ratio(got: &Value, num: f64, den: f64, what: &str) -> bool {
    if den == 0.0 {
        assert!(
            got.is_null(),
            "{what}: null without a denominator, got {got}"
        );
        return true;
    }
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: a number, got {got}"));
    assert!((g - num / den).abs() < 1e-9, "{what}: {g} != {}", num / den);
    false
}

#[test]
fn sla_and_productivity_metrics_match_independent_computation() {
    // Six fractional digits: resolution times are not whole seconds.
    let emu = start(EmulatorConfig {
        ticket_fraction_digits: 6,
        ..EmulatorConfig::default()
    });
    let parse = |v: &Value| v.as_str().and_then(tributary_sandbox::superops::parse_time);
    // After the generated history (which ends at the epoch): two new tickets of one client,
    // nothing measured or resolved yet, and an old ticket resolved now by a technician who
    // logged no time since the epoch.
    emu.open_ticket(0);
    emu.open_ticket(0);
    let resolved_now = emu
        .dump(Collection::Tickets)
        .iter()
        .find(|t| t["resolutionTime"].is_null() && !t["technician"].is_null())
        .map(|t| id_text(&t["ticketId"]))
        .expect("an open ticket with a technician");
    assert!(emu.resolve_ticket(&resolved_now));
    let epoch = tributary_sandbox::superops::epoch().and_utc();
    let mut nulls = BTreeMap::<&str, u32>::new();
    for window in [
        Window::default(),
        Window {
            start: Some("2024-03-01T00:00:00Z".parse().expect("date")),
            end: Some("2024-06-01T00:00:00Z".parse().expect("date")),
            ..Window::default()
        },
        Window {
            start: Some(epoch),
            end: Some(epoch + chrono::Duration::days(1)),
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
                e.6 += (r - created.expect("created"))
                    .num_microseconds()
                    .expect("micros");
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
        assert!(!want.is_empty(), "the window {window:?} has tickets");
        let got: BTreeMap<String, Value> = c.records["sla_summary"]
            .iter()
            .map(|r| (r.pk.clone(), serde_json::from_str(&r.data).expect("json")))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (client, (n, resolved, frm, frmet, rm, rmet, micros)) in &want {
            let g = &got[client];
            assert_eq!(g["tickets"], json!(n));
            assert_eq!(g["resolved_tickets"], json!(resolved));
            assert_eq!(g["first_response_measured"], json!(frm));
            assert_eq!(g["first_response_met"], json!(frmet));
            assert_eq!(g["resolution_measured"], json!(rm));
            assert_eq!(g["resolution_met"], json!(rmet));
            for (field, num, den) in [
                ("first_response_attainment", *frmet as f64, *frm as f64),
                ("resolution_attainment", *rmet as f64, *rm as f64),
                (
                    "mean_resolution_hours",
                    *micros as f64 / 3.6e9,
                    *resolved as f64,
                ),
            ] {
                if assert_ratio(&g[field], num, den, &format!("{client} {field}")) {
                    *nulls.entry(field).or_default() += 1;
                }
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
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            hours.keys().collect::<Vec<_>>()
        );
        for (tech, (n, total, billable, resolved)) in hours {
            let g = &got[&tech];
            assert_eq!(g["worklog_entries"], json!(n));
            let as_cents = |v: &Value| {
                (v.as_str().expect("text").parse::<f64>().expect("decimal") * 100.0).round() as i64
            };
            assert_eq!(as_cents(&g["worklog_hours"]), total);
            assert_eq!(as_cents(&g["billable_hours"]), billable);
            assert_eq!(g["tickets_resolved"], json!(resolved));
            if assert_ratio(
                &g["billable_share"],
                billable as f64,
                total as f64,
                &format!("{tech} billable_share"),
            ) {
                *nulls.entry("billable_share").or_default() += 1;
            }
        }
    }
    for field in [
        "first_response_attainment",
        "resolution_attainment",
        "mean_resolution_hours",
        "billable_share",
    ] {
        assert!(
            nulls.get(field).is_some_and(|n| *n > 0),
            "the null case of {field} was exercised: {nulls:?}"
        );
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

/// Whether `v` is of one of the JSON Schema `types` (a string or a list of them).
fn has_type(v: &Value, types: &Value) -> bool {
    let names: Vec<&str> = match types {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    names.iter().any(|t| match *t {
        "string" => v.is_string(),
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    })
}

#[test]
fn the_catalog_describes_what_every_stream_emits() {
    let emu = start(EmulatorConfig::default());
    let catalog = InProcess::<SuperOps>::discover(
        &config_for(&emu),
        Arc::new(tributary_sdk::host::CollectingHandler::default()),
    )
    .expect("discover");
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    let (result, c) = read(&request(
        config_for(&emu),
        &names,
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read");
    for d in &catalog.streams {
        let records = c.records.get(&d.name).map(Vec::as_slice).unwrap_or(&[]);
        assert!(!records.is_empty(), "{} emitted rows", d.name);
        let props = d.json_schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: an object schema", d.name));
        assert_eq!(d.primary_key.len(), 1, "{}", d.name);
        let key = &d.primary_key[0];
        for r in records {
            let data: Value = serde_json::from_str(&r.data).expect("json");
            for (field, v) in data.as_object().expect("an object") {
                let prop = props
                    .get(field)
                    .unwrap_or_else(|| panic!("{}.{field} is not in the schema", d.name));
                assert!(
                    has_type(v, &prop["type"]),
                    "{}.{field}: {v} is not {}",
                    d.name,
                    prop["type"]
                );
            }
            assert_eq!(data[key], json!(r.pk), "{}: the key is {key}", d.name);
            match &d.cursor_field {
                Some(f) => {
                    let t = data[f].as_str().expect("cursor text");
                    assert_eq!(
                        r.cursor.as_deref(),
                        Some(cursor_of(t).as_str()),
                        "{}",
                        d.name
                    );
                }
                None => assert!(r.cursor.is_none(), "{}", d.name),
            }
        }
        assert_eq!(
            d.sync_modes.contains(&SyncMode::Incremental),
            d.cursor_field.is_some(),
            "{}: incremental exactly when there is a cursor",
            d.name
        );
    }
    // Every emulated list is offered.
    for (stream, _) in LIST_STREAMS {
        assert!(names.contains(stream), "{stream}");
    }
}

#[test]
fn spec_lists_exactly_the_accepted_settings_with_valid_defaults() {
    let emu = start(EmulatorConfig::default());
    let spec = tributary_superops::config::spec();
    let props = spec["properties"].as_object().expect("properties");
    // Every documented key at its documented default is accepted (the endpoint stays the
    // emulator's: only loopback)...
    let mut config = config_for(&emu);
    for (key, p) in props {
        if key == "api_url" {
            assert!(p["default"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://")));
            continue;
        }
        if let Some(default) = p.get("default") {
            config[key] = default.clone();
        }
    }
    let c = tributary_superops::config::Config::from_value(config.clone())
        .expect("the spec's defaults are valid");
    assert_eq!(
        c.reconcile_every.to_string(),
        props["reconcile_every"]["default"]
    );
    // ...and works against the API.
    config["requests_per_minute"] = json!(0);
    InProcess::<SuperOps>::check(&config, CollectingHandler::new()).expect("check");
    // Every required key is required, and no undocumented key is accepted.
    for key in spec["required"].as_array().expect("required") {
        let mut missing = config.clone();
        missing
            .as_object_mut()
            .expect("object")
            .remove(key.as_str().expect("name"));
        assert!(
            tributary_superops::config::Config::from_value(missing).is_err(),
            "{key}"
        );
    }
    config["reconcile_evry"] = json!("24h");
    assert!(tributary_superops::config::Config::from_value(config).is_err());
}
