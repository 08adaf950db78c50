//! End-to-end tests of the SuperOps connector (issue 4): the real `tributary` binary loads
//! the built `libtributary_superops.so` and syncs the SuperOps emulator into SQLite.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{count, Run, Scratch};
use serde_json::Value;
use tributary_sandbox::superops::{Collection, Emulator, EmulatorConfig, RateLimit};

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
    let s = Scratch::new();
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
        "{}[sources.so]\nplugin = \"superops\"\n{streams}\n[sources.so.config]\napi_url = \"{}\"\nsubdomain = \"{subdomain}\"\napi_token = \"${{SUPEROPS_TOKEN}}\"\nrequests_per_minute = 0\nrate_limit_wait_seconds = 0.05\nmax_retries = 20\n",
        s.header(),
        emu.url()
    ));
    s
}

fn sync(s: &Scratch, token: &str, args: &[&str]) -> (Run, common::Report) {
    let report = s.path("report.json");
    let _ = std::fs::remove_file(&report);
    let report_arg = report.to_str().expect("utf-8").to_string();
    let mut full = vec!["run", "--report", report_arg.as_str()];
    full.extend_from_slice(args);
    let run: Run = s
        .command(&full)
        .env("SUPEROPS_TOKEN", token)
        .output()
        .expect("tributary runs")
        .into();
    let parsed = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| {
            let mut r = common::Report::default();
            for row in v.as_array().into_iter().flatten() {
                r.streams.insert(
                    format!(
                        "{}.{}",
                        row["source"].as_str().unwrap_or(""),
                        row["stream"].as_str().unwrap_or("")
                    ),
                    (
                        row["records"].as_u64().unwrap_or(0),
                        row["status"].as_str().unwrap_or("").to_string(),
                    ),
                );
            }
            r
        })
        .unwrap_or_default();
    (run, parsed)
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
