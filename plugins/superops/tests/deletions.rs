//! Snapshots, in-process against the emulator: which reads prove deletions (issue 7), and
//! that nothing is concluded from a read that is narrowed, limited, failed, or whose list
//! moved under it. The end-to-end consequences (rows marked `_deleted`) are in
//! `tests/tests/superops.rs`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use support::*;
use tributary_sandbox::superops::{Collection, EmulatorConfig, Fault, TenantSize};
use tributary_sdk::host::Collected;
use tributary_sdk::{Coverage, SnapshotEvent, SyncMode, Window};

/// Every stream but tickets reads in full each time.
const FULL_REFRESH: &[&str] = &[
    "clients",
    "client_sites",
    "client_contracts",
    "technicians",
    "worklog_entries",
    "alerts",
    "assets",
    "invoices",
    "sla_summary",
    "technician_productivity",
];

fn events<'a>(c: &'a Collected, stream: &str) -> &'a [SnapshotEvent] {
    c.snapshots.get(stream).map(Vec::as_slice).unwrap_or(&[])
}

fn begin(coverage: Coverage) -> SnapshotEvent {
    SnapshotEvent::Begin { coverage }
}

fn ids(emu: &tributary_sandbox::superops::Emulator, coll: Collection) -> BTreeSet<String> {
    emu.dump(coll)
        .iter()
        .map(|r| id_text(&r[coll.key_field()]))
        .collect()
}

fn state_of(c: &Collected) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        "tickets".to_string(),
        c.state.get("tickets").cloned().expect("tickets state"),
    )])
}

#[test]
fn every_stream_read_whole_is_one_completed_snapshot() {
    let emu = start(EmulatorConfig::default());
    let mut streams = FULL_REFRESH.to_vec();
    streams.push("tickets");
    let (result, c) = read(&request(
        config_for(&emu),
        &streams,
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read");
    for stream in &streams {
        assert_eq!(
            events(&c, stream),
            &[begin(Coverage::Window), SnapshotEvent::Complete],
            "{stream}: the records of a whole read are the listing"
        );
    }
    // Worklogs come from two module queries, and one snapshot spans both.
    let modules: BTreeSet<String> = c.records["worklog_entries"]
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.data).expect("json");
            v["workItem"]["module"]
                .as_str()
                .expect("module")
                .to_string()
        })
        .collect();
    assert_eq!(modules, BTreeSet::from(["PROJECT".into(), "TICKET".into()]));
    // The listing is every live object: what the host keeps as seen.
    for (stream, coll) in LIST_STREAMS {
        let got: BTreeSet<String> = pks(&c, stream).into_iter().collect();
        assert_eq!(got, ids(&emu, *coll), "{stream}");
    }
}

#[test]
fn narrowed_limited_or_failed_reads_conclude_nothing() {
    let emu = start(EmulatorConfig::default());
    let client = id_text(&emu.dump(Collection::Clients)[2]["accountId"]);
    let mut streams = FULL_REFRESH.to_vec();
    streams.push("tickets");
    for (what, window) in [
        (
            "a client filter",
            Window {
                clients: vec![client],
                ..Window::default()
            },
        ),
        (
            "a date window",
            Window {
                start: Some("2024-03-01T00:00:00Z".parse().expect("date")),
                end: Some("2024-06-01T00:00:00Z".parse().expect("date")),
                ..Window::default()
            },
        ),
    ] {
        let (result, c) = read(&request(
            config_for(&emu),
            &streams,
            SyncMode::FullRefresh,
            BTreeMap::new(),
            window,
        ));
        result.expect("read");
        assert!(c.snapshots.is_empty(), "{what}: {:?}", c.snapshots);
        assert!(c.keys.is_empty(), "{what}");
    }
    // A limit cuts every stream here (each has more than 7 rows): opened, never completed.
    let (result, c) = read(&request(
        config_for(&emu),
        &streams,
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window {
            limit: Some(7),
            ..Window::default()
        },
    ));
    result.expect("read");
    for stream in &streams {
        assert_eq!(pks(&c, stream).len(), 7, "{stream}");
        assert_eq!(
            events(&c, stream),
            &[begin(Coverage::Window), SnapshotEvent::Abandon],
            "{stream}"
        );
    }
    // A page that fails after rows were emitted: the rows stay, the snapshot is given up.
    let mut config = config_for(&emu);
    config["page_size"] = json!(10);
    emu.inject_for("getAlertList", 2, Fault::Partial);
    let (result, c) = read(&request(
        config,
        &["alerts", "clients"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect_err("alerts fail");
    assert!(!pks(&c, "alerts").is_empty(), "pages before the failure");
    assert_eq!(
        events(&c, "alerts"),
        &[begin(Coverage::Window), SnapshotEvent::Abandon]
    );
    assert!(
        c.snapshot_completed("clients"),
        "the other stream completes"
    );
}

#[test]
fn a_list_that_moves_while_it_is_paged_concludes_nothing() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["page_size"] = json!(10);
    // After page 1 is served, an alert on it is deleted: every later page shifts by one,
    // so one live alert is never served. Concluding from this read would mark it deleted.
    let mut by_time: Vec<(chrono::NaiveDateTime, String)> = emu
        .dump(Collection::Alerts)
        .iter()
        .map(|a| {
            let t = a["createdTime"]
                .as_str()
                .and_then(tributary_sandbox::superops::parse_time);
            (t.expect("createdTime"), id_text(&a["id"]))
        })
        .collect();
    by_time.sort();
    // Listed by createdTime: the third oldest is on page 1.
    let first = by_time[2].1.clone();
    let victim = first.clone();
    emu.on_request(3, move |t| {
        assert!(t.remove(Collection::Alerts, &victim));
    });
    let (result, c) = read(&request(
        config.clone(),
        &["alerts"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read");
    let live = ids(&emu, Collection::Alerts);
    let got: BTreeSet<String> = pks(&c, "alerts").into_iter().collect();
    assert!(
        !live.is_subset(&got),
        "the shift skipped a live alert (what the check guards against)"
    );
    assert_eq!(
        events(&c, "alerts"),
        &[begin(Coverage::Window), SnapshotEvent::Abandon]
    );
    // Once the list holds still, the next read is whole again, and lacks only the deleted.
    let (result, c) = read(&request(
        config,
        &["alerts"],
        SyncMode::FullRefresh,
        BTreeMap::new(),
        Window::default(),
    ));
    result.expect("read");
    assert!(c.snapshot_completed("alerts"));
    let got: BTreeSet<String> = pks(&c, "alerts").into_iter().collect();
    assert_eq!(got, live);
    assert!(!got.contains(&first));
}

#[test]
fn ticket_ids_are_listed_when_due_and_the_state_records_when() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    // The first sync reads every ticket: a snapshot, and the interval starts there.
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    assert_eq!(
        events(&c1, "tickets"),
        &[begin(Coverage::Window), SnapshotEvent::Complete]
    );
    let first_at = c1.state["tickets"]["reconciled_at"]
        .as_str()
        .expect("reconciled_at after a whole first sync")
        .to_string();
    // Not due under the default 24 h: no listing.
    let (r2, c2) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        state_of(&c1),
        Window::default(),
    ));
    r2.expect("second read");
    assert!(events(&c2, "tickets").is_empty(), "{:?}", c2.snapshots);
    assert_eq!(c2.state["tickets"]["reconciled_at"], json!(first_at));
    // Due on every run with "always": every live id, once, without reading the tickets.
    let gone = emu.with_tenant(|t| t.ticket_id(17)).expect("ticket");
    assert!(emu.remove(Collection::Tickets, &gone));
    config["reconcile_every"] = json!("always");
    let (r3, c3) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        state_of(&c2),
        Window::default(),
    ));
    r3.expect("third read");
    assert_eq!(
        events(&c3, "tickets"),
        &[begin(Coverage::Source), SnapshotEvent::Complete]
    );
    assert!(
        pks(&c3, "tickets").is_empty(),
        "nothing changed, nothing read"
    );
    let keys = &c3.keys["tickets"];
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "each id once");
    assert_eq!(unique, ids(&emu, Collection::Tickets));
    assert!(!unique.contains(&gone));
    let third_at = c3.state["tickets"]["reconciled_at"]
        .as_str()
        .expect("reconciled_at")
        .to_string();
    assert!(third_at > first_at, "{third_at} after {first_at}");
    // "never": no listing on incremental runs, even from an old state.
    config["reconcile_every"] = json!("never");
    let mut old = state_of(&c3);
    old.get_mut("tickets")
        .and_then(Value::as_object_mut)
        .expect("object")
        .remove("reconciled_at");
    let (r4, c4) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        old.clone(),
        Window::default(),
    ));
    r4.expect("fourth read");
    assert!(events(&c4, "tickets").is_empty());
    // A state written before deletions were tracked has no reconciled_at: due at once.
    config["reconcile_every"] = json!("24h");
    let (r5, c5) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        old,
        Window::default(),
    ));
    r5.expect("fifth read");
    assert!(c5.snapshot_completed("tickets"));
    assert!(c5.state["tickets"]["reconciled_at"].is_string());
    assert_eq!(
        c5.state["tickets"]["cursor"], c3.state["tickets"]["cursor"],
        "the old state's position is kept"
    );
}

#[test]
fn narrowed_or_limited_incremental_reads_never_list_ids() {
    let emu = start(EmulatorConfig::default());
    let mut config = config_for(&emu);
    config["reconcile_every"] = json!("always");
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    let client = id_text(&emu.dump(Collection::Clients)[1]["accountId"]);
    for i in 0..20 {
        let id = emu.with_tenant(|t| t.ticket_id(i * 11)).expect("ticket");
        assert!(emu.update_ticket(&id));
    }
    for window in [
        Window {
            clients: vec![client],
            ..Window::default()
        },
        Window {
            start: Some("2024-01-01T00:00:00Z".parse().expect("date")),
            ..Window::default()
        },
        Window {
            limit: Some(5),
            ..Window::default()
        },
    ] {
        let (r, c) = read(&request(
            config.clone(),
            &["tickets"],
            SyncMode::Incremental,
            state_of(&c1),
            window.clone(),
        ));
        r.expect("read");
        assert!(c.snapshots.is_empty(), "{window:?}: {:?}", c.snapshots);
        assert!(!pks(&c, "tickets").is_empty(), "{window:?} read changes");
    }
}

#[test]
fn the_id_listing_is_cheap_and_misses_no_ticket_when_tickets_vanish_during_it() {
    let emu = start(EmulatorConfig {
        size: TenantSize {
            tickets: 1_000,
            ..TenantSize::default()
        },
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    config["reconcile_every"] = json!("always");
    // A small page for records; the listing uses the API's largest page anyway.
    config["page_size"] = json!(25);
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    // During the listing, delete a ticket it has already listed (an offset scan would
    // then skip a live one) and one it has not reached yet.
    let (early, late) = emu.with_tenant(|t| (t.ticket_id(3), t.ticket_id(900)));
    let (early, late) = (early.expect("ticket"), late.expect("ticket"));
    emu.reset_stats();
    let (e, l) = (early.clone(), late.clone());
    // Request 1 is the walk, 2 and 3 the listing's first pages.
    emu.on_request(4, move |t| {
        assert!(t.remove(Collection::Tickets, &e) && t.remove(Collection::Tickets, &l));
    });
    let (r2, c2) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        state_of(&c1),
        Window::default(),
    ));
    r2.expect("second read");
    assert!(c2.snapshot_completed("tickets"));
    let keys: BTreeSet<String> = c2.keys["tickets"].iter().cloned().collect();
    let live = ids(&emu, Collection::Tickets);
    assert!(live.is_subset(&keys), "no live ticket missed");
    assert!(keys.contains(&early), "listed before it vanished");
    assert!(!keys.contains(&late));
    // The walk (one request, nothing changed) plus pages of 100 ids.
    let requests = emu.stats().by_operation["getTicketList"];
    assert!(
        requests <= 1 + 1_000u64.div_ceil(99) + 1,
        "{requests} requests for 1,000 ids"
    );
}

#[test]
fn a_server_that_refuses_the_created_time_keyset_still_gets_its_tickets_reconciled() {
    let emu = start(EmulatorConfig {
        refuse_created_after: true,
        ..EmulatorConfig::default()
    });
    let mut config = config_for(&emu);
    let (r1, c1) = read(&request(
        config.clone(),
        &["tickets"],
        SyncMode::Incremental,
        BTreeMap::new(),
        Window::default(),
    ));
    r1.expect("first read");
    let gone = emu.with_tenant(|t| t.ticket_id(5)).expect("ticket");
    assert!(emu.remove(Collection::Tickets, &gone));
    config["reconcile_every"] = json!("always");
    let (r2, c2) = read(&request(
        config,
        &["tickets"],
        SyncMode::Incremental,
        state_of(&c1),
        Window::default(),
    ));
    r2.expect("the refusal does not fail the stream");
    assert!(
        c2.logs
            .iter()
            .any(|l| l.contains("listing by page instead")),
        "{:#?}",
        c2.logs
    );
    // The keyset attempt was given up; the page listing completed with every live id.
    assert_eq!(
        events(&c2, "tickets"),
        &[
            begin(Coverage::Source),
            SnapshotEvent::Abandon,
            begin(Coverage::Source),
            SnapshotEvent::Complete
        ]
    );
    let listed: BTreeSet<String> = c2.keys["tickets"].iter().cloned().collect();
    assert_eq!(listed, ids(&emu, Collection::Tickets));
    assert!(!listed.contains(&gone));
    assert!(c2.state["tickets"]["reconciled_at"].is_string());
}
