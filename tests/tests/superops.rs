//! End-to-end tests of the SuperOps connector (issues 4, 7 and 12): the real `tributary`
//! binary loads the built `libtributary_superops.so` and syncs the SuperOps emulator into
//! SQLite. Deletions (objects removed from the emulator), narrowed runs, edits during a
//! sync, API errors and Ctrl-C are all driven through the binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{count, Run, Scratch};
use serde_json::Value;
use tributary_sandbox::superops::{
    Collection, Emulator, EmulatorConfig, Fault, RateLimit, TenantSize,
};

const STREAMS: &[(&str, Collection)] = &[
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

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not an id: {other}"),
    }
}

/// A scratch directory whose manifest has one SuperOps source `so` on `emu`.
fn setup(emu: &Emulator, streams: Option<&[&str]>, subdomain: &str) -> Scratch {
    setup_with(emu, streams, subdomain, "")
}

/// [`setup`] with extra lines in the source's `config` table.
fn setup_with(emu: &Emulator, streams: Option<&[&str]>, subdomain: &str, extra: &str) -> Scratch {
    let s = Scratch::new();
    write_manifest(&s, emu, streams, subdomain, extra);
    s
}

fn write_manifest(
    s: &Scratch,
    emu: &Emulator,
    streams: Option<&[&str]>,
    subdomain: &str,
    extra: &str,
) {
    let streams = streams
        .map(|l| {
            format!(
                "streams = [{}]\n",
                l.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .unwrap_or_default();
    s.manifest(&format!(
        "{}[sources.so]\nplugin = \"superops\"\n{streams}\n[sources.so.config]\napi_url = \"{}\"\nsubdomain = \"{subdomain}\"\napi_token = \"${{SUPEROPS_TOKEN}}\"\nrequests_per_minute = 0\nrate_limit_wait_seconds = 0.05\nmax_retries = 20\n{extra}",
        s.header(),
        emu.url()
    ));
}

fn run_args<'a>(report: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["run", "--report", report];
    full.extend_from_slice(args);
    full
}

fn sync(s: &Scratch, token: &str, args: &[&str]) -> (Run, common::Report) {
    let report = s.path("report.json");
    let _ = std::fs::remove_file(&report);
    let report_arg = report.to_str().expect("utf-8").to_string();
    let run: Run = s
        .command(&run_args(&report_arg, args))
        .env("SUPEROPS_TOKEN", token)
        .output()
        .expect("tributary runs")
        .into();
    (run, read_report(s))
}

/// The last `--report` file: records, status and deleted rows per `source.stream`.
fn read_report(s: &Scratch) -> common::Report {
    let mut r = common::Report::default();
    for row in report_rows(s) {
        let key = format!(
            "{}.{}",
            row["source"].as_str().unwrap_or(""),
            row["stream"].as_str().unwrap_or("")
        );
        r.deleted
            .insert(key.clone(), row["deleted"].as_u64().unwrap_or(0));
        r.streams.insert(
            key,
            (
                row["records"].as_u64().unwrap_or(0),
                row["status"].as_str().unwrap_or("").to_string(),
            ),
        );
    }
    r
}

fn report_rows(s: &Scratch) -> Vec<Value> {
    std::fs::read(s.path("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["streams"].as_array().cloned())
        .unwrap_or_default()
}

/// The error of `so.<stream>` in the last report: (kind, message).
fn report_error(s: &Scratch, stream: &str) -> Option<(String, String)> {
    report_rows(s)
        .into_iter()
        .find(|r| r["source"] == "so" && r["stream"] == stream)
        .and_then(|r| {
            let e = r.get("error").filter(|e| !e.is_null())?.clone();
            Some((
                e["kind"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            ))
        })
}

/// A zone-less API timestamp as the connector's cursor text.
fn cursor_of(api: &str) -> String {
    tributary_sandbox::superops::parse_time(api)
        .expect("timestamp")
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Every ticket of the emulator: id → cursor of its newest `updatedTime`.
fn newest_tickets(emu: &Emulator) -> BTreeMap<String, String> {
    emu.dump(Collection::Tickets)
        .iter()
        .map(|t| {
            (
                id_text(&t["ticketId"]),
                cursor_of(t["updatedTime"].as_str().expect("time")),
            )
        })
        .collect()
}

/// Every live ticket row of the warehouse: `_pk` → `_cursor`.
fn warehouse_tickets(wh: &rusqlite::Connection) -> BTreeMap<String, String> {
    let mut stmt = wh
        .prepare("SELECT _pk, _cursor FROM so__tickets WHERE _deleted = 0")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// The committed state of `so.tickets` (the main, unnarrowed one).
fn tickets_state(wh: &rusqlite::Connection) -> Option<String> {
    wh.query_row(
        "SELECT state FROM _tributary_state WHERE source = 'so' AND stream = 'tickets'",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// `_pk`s of `table` marked deleted.
fn deleted_pks(wh: &rusqlite::Connection, table: &str) -> BTreeSet<String> {
    let mut stmt = wh
        .prepare(&format!("SELECT _pk FROM {table} WHERE _deleted = 1"))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn live_count(wh: &rusqlite::Connection, table: &str) -> i64 {
    wh.query_row(
        &format!("SELECT count(*) FROM {table} WHERE _deleted = 0"),
        [],
        |r| r.get(0),
    )
    .expect("count")
}

/// The `key_field` value of row `index` of `coll` (for tickets use [`ticket_at`]: a dump
/// of thousands of tickets per call is slow in a debug build).
fn key_of(emu: &Emulator, coll: Collection, index: usize) -> String {
    id_text(&emu.dump(coll)[index][coll.key_field()])
}

/// The id of the ticket at `index` in creation order.
fn ticket_at(emu: &Emulator, index: usize) -> String {
    emu.with_tenant(|t| t.ticket_id(index)).expect("ticket")
}

fn pks(conn: &rusqlite::Connection, table: &str) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare(&format!("SELECT _pk FROM {table}"))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
fn full_sync_then_incremental_lands_every_row_once() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, None, emu.subdomain());
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    assert!(!run.all().contains(emu.token()), "token in output");
    let wh = s.warehouse();
    for (stream, coll) in STREAMS {
        let dump = emu.dump(*coll);
        assert_eq!(
            report.records(&format!("so.{stream}")),
            dump.len() as u64,
            "{stream} emitted once each"
        );
        assert_eq!(
            count(&wh, &format!("so__{stream}")),
            dump.len() as i64,
            "{stream} landed"
        );
    }
    // 19-digit ids that arrived as bare numbers are exact strings in the warehouse.
    let t = &emu.dump(Collection::Tickets)[5];
    let (pk, account): (String, String) = wh
        .query_row(
            "SELECT _pk, json_extract(data, '$.client.accountId') FROM so__tickets WHERE _pk = ?1",
            [id_text(&t["ticketId"])],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("ticket row");
    assert_eq!(pk, id_text(&t["ticketId"]));
    assert_eq!(
        account,
        t["client"]["accountId"]
            .as_u64()
            .expect("bare number")
            .to_string()
    );
    assert!(count(&wh, "so__sla_summary") > 0 && count(&wh, "so__technician_productivity") > 0);
    let total: i64 = wh
        .query_row(
            "SELECT sum(json_extract(data, '$.tickets')) FROM so__sla_summary",
            [],
            |r| r.get(0),
        )
        .expect("sum");
    assert_eq!(total as usize, emu.dump(Collection::Tickets).len());
    let state: String = wh
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'so' AND stream = 'tickets'",
            [],
            |r| r.get(0),
        )
        .expect("tickets state saved");
    assert!(state.contains("cursor"), "{state}");

    // Changes, then an incremental run: exactly the changed tickets, upserted.
    let before = pks(&wh, "so__tickets");
    let opened = emu.open_ticket(1);
    let edited = id_text(&emu.dump(Collection::Tickets)[10]["ticketId"]);
    let resolved = id_text(&emu.dump(Collection::Tickets)[20]["ticketId"]);
    assert!(emu.update_ticket(&edited) && emu.resolve_ticket(&resolved));
    let (run, report) = sync(&s, emu.token(), &["--stream", "tickets"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 3, "{report:?}");
    let after = pks(&wh, "so__tickets");
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains(&opened));
    let status: String = wh
        .query_row(
            "SELECT json_extract(data, '$.status') FROM so__tickets WHERE _pk = ?1",
            [&resolved],
            |r| r.get(0),
        )
        .expect("resolved row");
    assert_eq!(status, "Resolved");
    // Nothing changed: nothing read.
    let (run, report) = sync(&s, emu.token(), &["--stream", "tickets"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 0);
}

#[test]
fn errors_are_explained_and_never_show_the_token() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, Some(&["clients"]), emu.subdomain());
    let (run, _) = sync(&s, "wrong-token-abcdef123456", &[]);
    assert_ne!(run.code, 0);
    assert!(run.all().contains("api token (http 401)"), "{}", run.all());
    assert!(!run.all().contains("wrong-token-abcdef123456"));
    let s = setup(&emu, Some(&["clients"]), "someone-else");
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_ne!(run.code, 0);
    assert!(run.all().contains("CustomerSubDomain"), "{}", run.all());
    assert!(!run.all().contains(emu.token()));
}

#[test]
fn rate_limited_sync_recovers() {
    let emu = Emulator::start(EmulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: 4,
            window: Duration::from_millis(300),
        }),
        ..EmulatorConfig::default()
    })
    .expect("emulator");
    let s = setup(&emu, Some(&["tickets", "alerts"]), emu.subdomain());
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    assert_eq!(
        count(&s.warehouse(), "so__tickets"),
        emu.dump(Collection::Tickets).len() as i64
    );
    assert!(emu.stats().throttled > 0);
}

/// Every SuperOps stream `so.<stream>` of the catalog (list and derived).
const ALL: &[&str] = &[
    "tickets",
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

#[test]
fn vanished_objects_are_marked_deleted_by_the_next_whole_run_only() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, None, emu.subdomain());
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    let other_client = key_of(&emu, Collection::Clients, 0);
    let removed: Vec<(&str, Collection, String)> = [
        ("clients", Collection::Clients, 4),
        ("alerts", Collection::Alerts, 7),
        ("client_sites", Collection::Sites, 3),
        ("client_contracts", Collection::Contracts, 2),
        ("assets", Collection::Assets, 5),
        ("tickets", Collection::Tickets, 10),
    ]
    .into_iter()
    .map(|(stream, coll, i)| (stream, coll, key_of(&emu, coll, i)))
    .collect();
    let client_name = emu.dump(Collection::Clients)[4]["name"].clone();
    for (_, coll, id) in &removed {
        assert!(emu.remove(*coll, id), "{id} removed");
    }
    let wh = s.warehouse();
    let nothing_marked = |what: &str, report: &common::Report| {
        for stream in ALL {
            assert_eq!(
                report.deleted(&format!("so.{stream}")),
                0,
                "{what}: {stream}"
            );
            assert!(
                deleted_pks(&wh, &format!("so__{stream}")).is_empty(),
                "{what}: {stream}"
            );
        }
    };

    // Narrowed runs do not see the removed objects, and conclude nothing from it.
    let (run, report) = sync(&s, emu.token(), &["--client", &other_client]);
    assert_eq!(run.code, 0, "{}", run.all());
    nothing_marked("--client", &report);
    let (run, report) = sync(
        &s,
        emu.token(),
        &["--since", "2024-03-01", "--until", "2024-06-01"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    nothing_marked("--since/--until", &report);

    // The next plain run is whole: exactly the removed objects are marked. The ticket is
    // not: its listing is not due (the first sync was one, 24 h is the default).
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    for stream in ALL {
        let want: BTreeSet<String> = removed
            .iter()
            .filter(|(s, _, _)| s == stream && *s != "tickets")
            .map(|(_, _, id)| id.clone())
            .collect();
        let table = format!("so__{stream}");
        assert_eq!(
            report.deleted(&format!("so.{stream}")),
            want.len() as u64,
            "{stream}: {}",
            run.all()
        );
        assert_eq!(deleted_pks(&wh, &table), want, "{stream}");
    }
    for (stream, coll) in STREAMS {
        assert_eq!(
            live_count(&wh, &format!("so__{stream}")),
            emu.dump(*coll).len() as i64 + i64::from(*stream == "tickets"),
            "every other {stream} row stays live"
        );
    }
    // A deleted row keeps its data.
    let name: String = wh
        .query_row(
            "SELECT json_extract(data, '$.name') FROM so__clients WHERE _pk = ?1",
            [&removed[0].2],
            |r| r.get(0),
        )
        .expect("the deleted client row");
    assert_eq!(Value::String(name), client_name);

    // Marked once: the next whole run marks nothing new.
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    for stream in ALL {
        assert_eq!(report.deleted(&format!("so.{stream}")), 0, "{stream}");
    }
    assert_eq!(deleted_pks(&wh, "so__clients").len(), 1);
}

#[test]
fn a_removed_ticket_is_marked_by_the_next_reconciliation_only() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, Some(&["tickets"]), emu.subdomain());
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    let a = ticket_at(&emu, 30);
    assert!(emu.remove(Collection::Tickets, &a));

    // Not due (24 h by default, counted from the first sync): nothing marked.
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.deleted("so.tickets"), 0);
    assert!(deleted_pks(&wh, "so__tickets").is_empty());

    // A full refresh reads every ticket: that is a listing, and the ticket is marked.
    let (run, report) = sync(&s, emu.token(), &["--full-refresh"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("so.tickets"),
        emu.dump(Collection::Tickets).len() as u64
    );
    assert_eq!(report.deleted("so.tickets"), 1, "{}", run.all());
    assert_eq!(deleted_pks(&wh, "so__tickets"), BTreeSet::from([a.clone()]));

    // With reconcile_every = "always", every incremental run lists the ids, cheaply.
    let b = ticket_at(&emu, 200);
    assert!(emu.remove(Collection::Tickets, &b));
    let edited = ticket_at(&emu, 5);
    assert!(emu.update_ticket(&edited));
    write_manifest(
        &s,
        &emu,
        Some(&["tickets"]),
        emu.subdomain(),
        "reconcile_every = \"always\"\n",
    );
    emu.reset_stats();
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 1, "only the edit is read");
    assert_eq!(report.deleted("so.tickets"), 1, "{}", run.all());
    assert_eq!(deleted_pks(&wh, "so__tickets"), BTreeSet::from([a, b]));
    assert_eq!(
        warehouse_tickets(&wh),
        newest_tickets(&emu),
        "every other ticket live, at its newest version"
    );
    let n = emu.dump(Collection::Tickets).len() as u64;
    let requests = emu.stats().by_operation["getTicketList"];
    assert!(
        requests <= 1 + n.div_ceil(99) + 1,
        "the walk and about {n}/100 id pages, got {requests}"
    );
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.deleted("so.tickets"), 0, "nothing new to mark");
}

/// Tickets of the client at `client` (index), in dump order.
fn tickets_of(emu: &Emulator, client: usize, n: usize) -> Vec<String> {
    let account = key_of(emu, Collection::Clients, client);
    let ids: Vec<String> = emu
        .dump(Collection::Tickets)
        .iter()
        .filter(|t| id_text(&t["client"]["accountId"]) == account)
        .take(n)
        .map(|t| id_text(&t["ticketId"]))
        .collect();
    assert_eq!(ids.len(), n, "client {client} has {n} tickets");
    ids
}

#[test]
fn a_client_run_leaves_every_change_for_the_next_plain_run() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, Some(&["tickets"]), emu.subdomain());
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    let (one, two) = (tickets_of(&emu, 0, 3), tickets_of(&emu, 1, 4));
    for id in one.iter().chain(&two) {
        assert!(emu.update_ticket(id));
    }
    let before = tickets_state(&wh);

    let client = key_of(&emu, Collection::Clients, 0);
    let (run, report) = sync(&s, emu.token(), &["--client", &client]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 3, "{report:?}");
    assert_eq!(tickets_state(&wh), before, "the main position is untouched");

    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("so.tickets"),
        7,
        "both clients' changes, each once: {report:?}"
    );
    assert_eq!(warehouse_tickets(&wh), newest_tickets(&emu));
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 0);
}

#[test]
fn a_date_window_run_leaves_every_change_for_the_next_plain_run() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let s = setup(&emu, Some(&["tickets"]), emu.subdomain());
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    // Three changes on 2024-07-01 (the emulator's clock), four on 2024-07-03.
    for id in tickets_of(&emu, 2, 3) {
        assert!(emu.update_ticket(&id));
    }
    emu.with_tenant(|t| t.advance(2 * 86_400));
    for id in tickets_of(&emu, 3, 4) {
        assert!(emu.update_ticket(&id));
    }
    let before = tickets_state(&wh);

    let (run, report) = sync(
        &s,
        emu.token(),
        &["--since", "2024-07-02", "--until", "2024-07-04"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 4, "{report:?}");
    assert_eq!(tickets_state(&wh), before, "the main position is untouched");

    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("so.tickets"),
        7,
        "the changes inside and outside the window, each once: {report:?}"
    );
    assert_eq!(warehouse_tickets(&wh), newest_tickets(&emu));
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 0);
}

#[test]
fn edits_during_a_sync_are_neither_missed_nor_duplicated() {
    let emu = Emulator::start(EmulatorConfig {
        size: TenantSize {
            tickets: 1_000,
            ..TenantSize::default()
        },
        ..EmulatorConfig::default()
    })
    .expect("emulator");
    let s = setup_with(
        &emu,
        Some(&["tickets"]),
        emu.subdomain(),
        "page_size = 50\n",
    );
    // First run (offset scan by createdTime, then the walk): while page ~4 is served, edit
    // a ticket already delivered, one on the last page, and open a new one.
    emu.on_request(5, |t| {
        let first = t.ticket_id(0).expect("ticket");
        let last = t.ticket_id(999).expect("ticket");
        t.update_ticket(&first);
        t.resolve_ticket(&last);
        t.open_ticket(1);
    });
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    assert_eq!(warehouse_tickets(&wh), newest_tickets(&emu), "first run");
    assert!(report.records("so.tickets") <= 1_001 + 2, "{report:?}");
    // Second run (the keyset walk) over many changes, with edits landing mid-walk on
    // rows the walk has passed: they move behind it and are still found.
    for i in (0..1_000).step_by(7) {
        let id = ticket_at(&emu, i);
        assert!(emu.update_ticket(&id));
    }
    let served = emu.stats().accepted;
    emu.on_request(served + 2, |t| {
        let id = t.ticket_id(7).expect("ticket");
        t.resolve_ticket(&id);
        let id = t.ticket_id(500).expect("ticket");
        t.update_ticket(&id);
        t.open_ticket(2);
    });
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(warehouse_tickets(&wh), newest_tickets(&emu), "second run");
    // Every version once: the 143 edits made before the run, ticket 500 and the new one
    // edited during it, and ticket 7 twice (read on the first page, then resolved behind
    // the walk).
    let changed = (0..1_000).step_by(7).count() as u64;
    assert_eq!(report.records("so.tickets"), changed + 3, "{report:?}");
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("so.tickets"), 0, "nothing was left behind");
}

#[test]
fn api_errors_fail_only_their_stream_and_commit_nothing_wrong() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let streams = ["tickets", "clients", "invoices", "client_contracts"];
    let s = setup_with(&emu, Some(&streams), emu.subdomain(), "page_size = 10\n");
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    // Changes a failed run must not commit: ticket edits (and their position), and
    // removals a completed snapshot would mark.
    for i in 0..10 {
        let id = ticket_at(&emu, i * 13);
        assert!(emu.update_ticket(&id));
    }
    let invoice = key_of(&emu, Collection::Invoices, 3);
    let contract = key_of(&emu, Collection::Contracts, 1);
    assert!(emu.remove(Collection::Invoices, &invoice));
    assert!(emu.remove(Collection::Contracts, &contract));
    let (tickets_before, state_before) = (warehouse_tickets(&wh), tickets_state(&wh));
    assert_ne!(tickets_before, newest_tickets(&emu));

    let cases: [(&str, Fault, &str, &str); 4] = [
        (
            "forbidden",
            Fault::ClientError("forbidden".into()),
            "config",
            "denied access (forbidden) to stream {s} (",
        ),
        (
            "subscription",
            Fault::ClientError("subscription_paused".into()),
            "config",
            "subscription is not active (subscription_paused) for stream {s} (",
        ),
        (
            "partial data",
            Fault::Partial,
            "data",
            "errors for stream {s} (",
        ),
        (
            "SubSelectionNotAllowed",
            Fault::SubSelectionNotAllowed,
            "data",
            "errors for stream {s} (",
        ),
    ];
    for (what, fault, kind, phrase) in cases {
        let sub_selection = matches!(fault, Fault::SubSelectionNotAllowed);
        // Tickets select only leaves, so the schema-drift error targets the streams that
        // sub-select (invoice items, contract details); the others fail every stream.
        let mut failing = vec!["invoices", "client_contracts"];
        if !sub_selection {
            failing.push("tickets");
            emu.inject_for("getTicketList", 0, fault.clone());
        }
        // Page 2 of each: rows of page 1 were emitted, and the snapshot must not complete.
        emu.inject_for("getInvoiceList", 1, fault.clone());
        emu.inject_for("getClientContractList", 1, fault.clone());
        let (run, report) = sync(&s, emu.token(), &[]);
        emu.clear_faults();
        assert_eq!(
            run.code,
            1,
            "{what}: the exit code says failure\n{}",
            run.all()
        );
        assert_eq!(
            report.status("so.clients"),
            "complete",
            "{what}: the others go on"
        );
        for stream in &failing {
            assert_eq!(
                report.status(&format!("so.{stream}")),
                "incomplete",
                "{what}"
            );
            let (k, message) = report_error(&s, stream).expect("an error");
            assert_eq!(k, kind, "{what} {stream}: {message}");
            assert!(
                message.contains(&phrase.replace("{s}", stream)),
                "{what} {stream}: {message}"
            );
            if what == "partial data" {
                assert!(
                    message.contains("partial data with errors, page rejected"),
                    "{message}"
                );
            }
            if sub_selection {
                assert!(message.contains("SubSelectionNotAllowed"), "{message}");
            }
            assert!(
                run.stderr.contains(&format!("stream {stream} failed")),
                "{what}: the log names the stream\n{}",
                run.stderr
            );
            assert!(!run.all().contains(emu.token()));
        }
        // Nothing wrong committed: no deletion concluded from a cut listing, no ticket
        // row from a rejected page, no position past it.
        for stream in streams {
            assert!(
                deleted_pks(&wh, &format!("so__{stream}")).is_empty(),
                "{what}: {stream}"
            );
        }
        if !sub_selection {
            assert_eq!(warehouse_tickets(&wh), tickets_before, "{what}");
            assert_eq!(tickets_state(&wh), state_before, "{what}");
        }
    }

    // Once the API answers again, everything lands.
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.deleted("so.invoices"), 1);
    assert_eq!(report.deleted("so.client_contracts"), 1);
    assert_eq!(deleted_pks(&wh, "so__invoices"), BTreeSet::from([invoice]));
    assert_eq!(
        deleted_pks(&wh, "so__client_contracts"),
        BTreeSet::from([contract])
    );
    assert_eq!(warehouse_tickets(&wh), newest_tickets(&emu));
}

#[test]
fn ctrl_c_mid_stream_stops_promptly_and_the_rerun_completes_exactly() {
    let emu = Emulator::start(EmulatorConfig {
        size: TenantSize {
            tickets: 1_000,
            ..TenantSize::default()
        },
        ..EmulatorConfig::default()
    })
    .expect("emulator");
    let s = setup_with(
        &emu,
        Some(&["tickets"]),
        emu.subdomain(),
        "page_size = 20\n",
    );
    let (run, _) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    let state_before = tickets_state(&wh);
    for i in 0..600 {
        let id = ticket_at(&emu, i);
        assert!(emu.update_ticket(&id));
    }
    // The walk takes 30 pages; slow each request down (6 s in all) so that the signal
    // lands mid-walk however loaded the machine, and tell the test when the sixth page is
    // being served.
    emu.inject(1_000, Fault::Delay(Duration::from_millis(200)));
    let (tx, rx) = std::sync::mpsc::channel();
    emu.on_request(emu.stats().accepted + 6, move |_| {
        let _ = tx.send(());
    });
    let report = s.path("report.json");
    let report_arg = report.to_str().expect("utf-8").to_string();
    let out = std::fs::File::create(s.path("run.out")).expect("output file");
    let err = std::fs::File::create(s.path("run.err")).expect("output file");
    let mut child = s
        .command(&run_args(&report_arg, &[]))
        .env("SUPEROPS_TOKEN", emu.token())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("tributary starts");
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the walk reached its sixth page");
    let served_at_signal = emu.stats().accepted;
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("tributary did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_after = signalled.elapsed();
    emu.clear_faults();
    let output = format!(
        "{}\n{}",
        std::fs::read_to_string(s.path("run.out")).unwrap_or_default(),
        std::fs::read_to_string(s.path("run.err")).unwrap_or_default()
    );
    assert!(!status.success(), "a cancelled run is a failure\n{output}");
    assert!(
        stopped_after < Duration::from_secs(5),
        "prompt: stopped {stopped_after:?} after the signal\n{output}"
    );
    // At most the page in flight (plus one being sent) after the signal.
    let after = emu.stats().accepted - served_at_signal;
    assert!(after <= 2, "{after} requests after the signal\n{output}");

    // Committed data is exact: state moved, never ahead of the data.
    let state = tickets_state(&wh).expect("state");
    assert_ne!(
        Some(&state),
        state_before.as_ref(),
        "the kill landed after a commit"
    );
    let cursor = serde_json::from_str::<Value>(&state).expect("json")["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let newest = newest_tickets(&emu);
    let got = warehouse_tickets(&wh);
    assert_eq!(got.len(), newest.len(), "no row lost or added");
    for (id, version) in &newest {
        if *version <= cursor {
            assert_eq!(
                got.get(id),
                Some(version),
                "{id}: delivered up to the state"
            );
        }
    }
    let behind = newest
        .iter()
        .filter(|(id, v)| got.get(*id) != Some(v))
        .count();
    assert!(behind > 0, "the run was stopped mid-stream");

    // The rerun reads exactly what the state had not covered, and completes.
    let (run, report) = sync(&s, emu.token(), &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let uncovered = newest.values().filter(|v| **v > cursor).count() as u64;
    assert_eq!(report.records("so.tickets"), uncovered, "{report:?}");
    assert_eq!(warehouse_tickets(&wh), newest);
}
