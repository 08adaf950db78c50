//! `watch` against the SuperOps and QuickBooks emulators: their changes reach a
//! subscriber and the warehouse; a signed QuickBooks webhook fetches at once and an
//! unsigned or wrongly signed one fetches nothing; `kill -9` while the source keeps
//! changing, then a restart, leaves the warehouse exactly as a fresh sync would; a row
//! deleted at the source reaches the feed as a `delete`. The emulators are started by the
//! test (as `[sandbox]` would), so it can change their data and read their counters.
//! Every wait is bounded and on the thing awaited.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::Scratch;
use crate::watching::{http, next_matching, rows, tail, wait_for, Emulator, Watch};

const TOKEN: &str = "live-test-token";
const VERIFIER: &str = "live-test-verifier";

/// `[sources.<name>]` reading `streams` from `emulator`, plus `extra` keys.
fn source(name: &str, plugin: &str, streams: &[&str], emulator: &Emulator, extra: &str) -> String {
    let streams: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[sources.{name}]\nplugin = \"{plugin}\"\nstreams = [{}]\n{extra}\n[sources.{name}.config]\n{}\n",
        streams.join(", "),
        emulator.config_toml()
    )
}

/// `[watch]` on a free loopback port with `interval`.
fn watch_section(interval: &str) -> String {
    format!(
        "[watch]\nlisten = \"127.0.0.1:0\"\nevents_token = \"{TOKEN}\"\ninterval = \"{interval}\"\n\n"
    )
}

/// The committed `data` of one row, if the warehouse has it.
fn row(scratch: &Scratch, table: &str, pk: &str) -> Option<Value> {
    scratch
        .warehouse()
        .query_row(
            &format!("SELECT data FROM \"{table}\" WHERE _pk = ?1"),
            [pk],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .map(|d| serde_json::from_str(&d).expect("data is JSON"))
}

/// Some live row of `table`: (pk, data).
fn any_row(scratch: &Scratch, table: &str) -> (String, Value) {
    let (pk, data): (String, String) = scratch
        .warehouse()
        .query_row(
            &format!("SELECT _pk, data FROM \"{table}\" WHERE _deleted = 0 ORDER BY _pk LIMIT 1"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("a row of {table}: {e}"));
    (pk, serde_json::from_str(&data).expect("data is JSON"))
}

/// Waits for the change of `source.stream` row `pk` away from `before` at the
/// subscriber, then requires the warehouse to hold exactly what the event carries.
fn expect_change(
    scratch: &Scratch,
    events: &std::sync::mpsc::Receiver<Value>,
    (source, stream, pk): (&str, &str, &str),
    before: Option<&Value>,
    within: Duration,
) -> Value {
    let event = next_matching(
        events,
        within,
        &format!("the change of {source}.{stream} {pk}"),
        |e| {
            e["source"] == source
                && e["stream"] == stream
                && e["pk"] == pk
                && Some(&e["record"]) != before
        },
    );
    assert_eq!(event["type"], "change");
    assert_eq!(event["op"], "upsert", "{event}");
    // Published after the commit: the warehouse already has this version.
    let table = format!("{source}__{stream}");
    assert_eq!(
        row(scratch, &table, pk).as_ref(),
        Some(&event["record"]),
        "the warehouse holds the version the subscriber got"
    );
    event
}

#[test]
fn changes_in_the_superops_and_quickbooks_emulators_reach_a_subscriber_and_the_warehouse() {
    let ops = Emulator::start("superops", 20, &[]);
    let qb = Emulator::start("quickbooks", 20, &[]);
    let scratch = Scratch::new();
    scratch.manifest(&format!(
        "{}{}{}{}",
        scratch.header(),
        watch_section("1s"),
        source("ops", "superops", &["tickets", "worklog_entries"], &ops, ""),
        source(
            "qb",
            "quickbooks",
            &["invoices", "customers", "payments", "deleted_objects"],
            &qb,
            ""
        ),
    ));
    let started = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    // From the start of the feed: a subscription that lands late misses nothing.
    let events = tail(&watch.addr, TOKEN, &["--since", "0"], 1_000_000);

    // QuickBooks: an invoice edited in the emulator (new SyncToken and LastUpdatedTime).
    let (invoice, before) = any_row(&scratch, "qb__invoices");
    let answer = qb.post(
        "/emulator/mutations",
        json!({"op": "update", "entity": "Invoice", "id": invoice}),
    );
    assert_eq!(answer["updated"], true, "{answer}");
    let event = expect_change(
        &scratch,
        &events,
        ("qb", "invoices", &invoice),
        Some(&before),
        Duration::from_secs(30),
    );
    assert_ne!(event["record"]["SyncToken"], before["SyncToken"]);

    // SuperOps: a ticket moves on, a technician logs time or a ticket is opened.
    let change = ops.post("/emulator/mutations", json!({"op": "random"}));
    let stream = match change["entity"].as_str() {
        Some("Ticket") => "tickets",
        Some("Worklog") => "worklog_entries",
        other => panic!("unexpected change {other:?}: {change}"),
    };
    let pk = change["id"].as_str().expect("the changed id").to_string();
    let before = row(&scratch, &format!("ops__{stream}"), &pk);
    expect_change(
        &scratch,
        &events,
        ("ops", stream, &pk),
        before.as_ref(),
        Duration::from_secs(30),
    );

    // The plugins' API usage crossed the boundary and is exported per source.
    for source in ["ops", "qb"] {
        let requests = watch.metric(&format!("tributary_requests_total{{source=\"{source}\"}}"));
        assert!(requests >= 2.0, "{source} sent {requests} requests");
    }

    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

/// A CloudEvents notification of an invoice update in `realm`, as Intuit sends it.
fn notification(realm: &str, id: &str) -> Vec<u8> {
    json!([{
        "specversion": "1.0",
        "id": format!("test-{id}"),
        "source": "intuit.test",
        "type": "qbo.invoice.updated.v1",
        "datacontenttype": "application/json",
        "time": chrono::Utc::now().to_rfc3339(),
        "intuitentityid": id,
        "intuitaccountid": realm,
        "data": {}
    }])
    .to_string()
    .into_bytes()
}

fn post_webhook(watch: &Watch, body: &[u8], signature: Option<&str>) -> u16 {
    let mut headers = vec![("Content-Type", "application/cloudevents+json")];
    if let Some(s) = signature {
        headers.push(("intuit-signature", s));
    }
    http(&watch.addr, "POST", "/webhooks/quickbooks", &headers, body).0
}

#[test]
fn a_signed_quickbooks_webhook_fetches_before_the_next_poll_and_unsigned_ones_fetch_nothing() {
    let qb = Emulator::start("quickbooks", 20, &[]);
    let scratch = Scratch::new();
    // Polled every 60 s: anything sooner than that is the webhook's doing.
    scratch.manifest(&format!(
        "{}{}[watch.webhooks.qb]\nverifier_token = \"{VERIFIER}\"\n\n{}",
        scratch.header(),
        watch_section("60s"),
        source(
            "qb",
            "quickbooks",
            &["invoices", "customers", "payments", "deleted_objects"],
            &qb,
            "interval = \"60s\"\n"
        ),
    ));
    let started = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let polled = Instant::now();
    let cycles = "tributary_cycles_total{source=\"qb\"}";
    assert_eq!(watch.metric(cycles), 1.0);

    // A wrong and a missing signature: 401, counted, and no request reaches QuickBooks.
    let realm = qb.config["realm_id"].as_str().expect("realm_id");
    let (invoice, _) = any_row(&scratch, "qb__invoices");
    let body = notification(realm, &invoice);
    let requests = qb.stats()["requests"].as_u64().expect("requests");
    let forged = tributary_sandbox::quickbooks::webhook_signature("not-the-verifier", &body);
    assert_eq!(post_webhook(&watch, &body, Some(&forged)), 401);
    assert_eq!(post_webhook(&watch, &body, None), 401);
    assert_eq!(
        watch.metric("tributary_webhooks_total{source=\"unknown\",outcome=\"bad_signature\"}"),
        2.0
    );
    // A fetch would start at once (the trigger runs right after the answer): two quiet
    // seconds is the window of this negative check, not a synchronisation.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        qb.stats()["requests"].as_u64(),
        Some(requests),
        "a refused webhook must fetch nothing"
    );
    assert_eq!(watch.metric(cycles), 1.0, "no cycle ran");
    // The control: the same body correctly signed is accepted and does fetch.
    let signed = tributary_sandbox::quickbooks::webhook_signature(VERIFIER, &body);
    assert_eq!(post_webhook(&watch, &body, Some(&signed)), 200);
    wait_for(
        Duration::from_secs(20),
        || "the signed webhook's cycle".to_string(),
        || (watch.metric(cycles) >= 2.0).then_some(()),
    );
    assert!(qb.stats()["requests"].as_u64() > Some(requests));

    // The emulator's own signed webhook, sent when its data changes, fetches the change
    // long before the 60 s poll.
    let events = tail(
        &watch.addr,
        TOKEN,
        &["--source", "qb", "--stream", "invoices", "--since", "0"],
        1_000_000,
    );
    qb.post(
        "/emulator/webhook",
        json!({
            "url": format!("http://{}/webhooks/quickbooks", watch.addr),
            "verifier_token": VERIFIER,
            "shape": "cloudevents",
        }),
    );
    let before = row(&scratch, "qb__invoices", &invoice);
    let asked = Instant::now();
    let answer = qb.post(
        "/emulator/mutations",
        json!({"op": "update", "entity": "Invoice", "id": invoice}),
    );
    assert_eq!(answer["updated"], true, "{answer}");
    expect_change(
        &scratch,
        &events,
        ("qb", "invoices", &invoice),
        before.as_ref(),
        Duration::from_secs(20),
    );
    assert!(asked.elapsed() < Duration::from_secs(20));
    assert!(
        polled.elapsed() < Duration::from_secs(58),
        "the test ran so long that the 60 s poll may have fetched it"
    );
    assert!(
        watch.metric("tributary_webhooks_total{source=\"qb\",outcome=\"accepted\"}") >= 2.0,
        "the control and the emulator's webhook were accepted"
    );
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn kill_9_while_quickbooks_keeps_changing_then_restart_leaves_the_warehouse_exact() {
    // 150 changes, one every 100 ms from the start: the first sync and the kills happen
    // while data moves (payments created, invoices and payments deleted, edits).
    let qb = Emulator::start(
        "quickbooks",
        200,
        &["--mutate-every", "100", "--mutate-max", "150"],
    );
    let streams = ["invoices", "customers", "payments", "deleted_objects"];
    let scratch = Scratch::new();
    let qb_source = source("qb", "quickbooks", &streams, &qb, "");
    scratch.manifest(&format!(
        "{}{}{qb_source}",
        scratch.header(),
        watch_section("1s")
    ));

    // Killed at its first committed event (the first sync), then again at the first one
    // after a restart (a cycle of changes).
    for round in 0..2 {
        let watch = Watch::start(&scratch);
        let events = tail(&watch.addr, TOKEN, &["--since", "0"], 1);
        next_matching(
            &events,
            Duration::from_secs(120),
            &format!("round {round}: a committed event"),
            |_| true,
        );
        watch.kill9();
    }

    // The last run sees the changes out, then one full cycle that began after the last.
    let watch = Watch::start(&scratch);
    wait_for(
        Duration::from_secs(60),
        || format!("the emulator's last change: {}", qb.stats()),
        || (qb.stats()["mutations"]["timer_finished"] == true).then_some(()),
    );
    watch.wait_full_cycle(Duration::from_secs(60));
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));

    // The truth: a fresh sync of the same, now quiet, emulator into an empty warehouse
    // (the same credentials file: the refresh token rotated).
    let fresh = scratch.header().replace(
        &scratch.path("warehouse.db").display().to_string(),
        &scratch.path("fresh.db").display().to_string(),
    );
    std::fs::write(scratch.path("fresh.toml"), format!("{fresh}{qb_source}")).expect("manifest");
    let run = std::process::Command::new(crate::common::target_dir().join("tributary"))
        .current_dir(scratch.path(""))
        .args(["--manifest", "fresh.toml", "run"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let truth = rusqlite::Connection::open(scratch.path("fresh.db")).expect("fresh warehouse");
    let watched = scratch.warehouse();
    let mutations = &qb.stats()["mutations"];
    assert!(mutations["timed"].as_u64() >= Some(100), "{mutations}");
    for stream in streams {
        let table = format!("qb__{stream}");
        let live = |conn: &rusqlite::Connection| -> std::collections::BTreeMap<String, Value> {
            rows(conn, &table)
                .into_iter()
                .filter(|(_, (_, deleted))| !deleted)
                .map(|(pk, (data, _))| (pk, data))
                .collect()
        };
        let (want, got) = (live(&truth), live(&watched));
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        let differ: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && differ.is_empty(),
            "{table}: missing {missing:?}, not deleted {extra:?}, stale {differ:?}"
        );
        assert!(
            !want.is_empty() || stream == "deleted_objects",
            "{table} is empty"
        );
    }
}

/// Starts watch into `destination` (a `[destination]` section) over the internal
/// database's contracts, reconciled every cycle so a complete snapshot proves hard
/// deletes; deletes one contract at the source and waits for its `delete` event, which
/// must carry the row as last committed. Returns watch and the deleted key.
fn a_contract_deleted_at_the_source_reaches_the_feed(
    scratch: &Scratch,
    destination: &str,
) -> (Watch, String) {
    let header = scratch.header();
    let host = header.split("[destination]").next().expect("[host]");
    scratch.manifest(&format!(
        "{host}{destination}\n{}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"contracts\"]\n\n\
         [sources.internal.config]\nurl = \"sqlite://{}\"\nreconcile_every = \"always\"\n\
         sample_data = {{ clients = 20, seed = 7 }}\n",
        watch_section("1s"),
        scratch.path("internal.db").display()
    ));
    let started = chrono::Utc::now();
    let watch = Watch::start(scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let events = tail(
        &watch.addr,
        TOKEN,
        &["--stream", "contracts", "--since", "0"],
        1_000_000,
    );
    // The committed version, from the feed's replay of the first cycle.
    let first = next_matching(&events, Duration::from_secs(30), "a contract", |e| {
        e["op"] == "upsert"
    });
    let pk = first["pk"].as_str().expect("pk").to_string();
    let conn = rusqlite::Connection::open(scratch.path("internal.db")).expect("internal db");
    assert_eq!(
        conn.execute("DELETE FROM contracts WHERE id = ?1", [&pk])
            .expect("delete"),
        1
    );
    let event = next_matching(
        &events,
        Duration::from_secs(30),
        "the deletion of the contract",
        |e| e["pk"] == pk.as_str() && e["op"] == "delete",
    );
    assert_eq!(event["source"], "internal");
    assert_eq!(
        event["record"], first["record"],
        "the row as last committed"
    );
    (watch, pk)
}

#[test]
fn a_row_deleted_at_the_source_reaches_the_subscriber_as_a_delete() {
    let scratch = Scratch::new();
    let destination = format!(
        "[destination]\nkind = \"sqlite\"\npath = \"{}\"\n",
        scratch.path("warehouse.db").display()
    );
    let (watch, pk) = a_contract_deleted_at_the_source_reaches_the_feed(&scratch, &destination);
    let marked: bool = scratch
        .warehouse()
        .query_row(
            "SELECT _deleted FROM internal__contracts WHERE _pk = ?1",
            [&pk],
            |r| r.get(0),
        )
        .expect("row");
    assert!(marked, "committed before it was published");
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn into_jsonl_a_row_deleted_at_the_source_reaches_the_subscriber_as_a_delete() {
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let destination = format!(
        "[destination]\nkind = \"jsonl\"\npath = \"{}\"\n",
        out.display()
    );
    let (watch, pk) = a_contract_deleted_at_the_source_reaches_the_feed(&scratch, &destination);
    // The last line of the key is what the file says of it now.
    let text = std::fs::read_to_string(out.join("internal__contracts.jsonl")).expect("jsonl");
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|l| l["_pk"] == pk.as_str())
        .expect("the contract's lines");
    assert_eq!(
        last["_deleted"], true,
        "committed before it was published: {last}"
    );
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn under_sandbox_the_emulators_webhooks_wake_quickbooks_and_every_cycle_keeps_its_credentials() {
    let scratch = Scratch::new();
    // The documented demo: watch starts the emulator, points its webhooks at itself, and
    // the emulator changes data every 500 ms. Polled every 60 s: every later cycle is a
    // webhook's, and each must read with the refresh token the previous one rotated.
    scratch.manifest(&format!(
        "{}[sandbox]\nseed = 7\nclients = 20\nmutate_every_ms = 500\n\n{}\
         [sources.qb]\nplugin = \"quickbooks\"\nendpoint = \"sandbox\"\ninterval = \"60s\"\n\
         streams = [\"invoices\", \"customers\", \"payments\", \"deleted_objects\"]\n",
        scratch.header(),
        watch_section("60s"),
    ));
    let started = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let polled = Instant::now();
    let (status, body) = http(
        &watch.addr,
        "GET",
        "/status.json",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let base = serde_json::from_str::<Value>(&body).expect("JSON")["last_seq"]
        .as_u64()
        .expect("last_seq");
    let events = tail(&watch.addr, TOKEN, &["--since", "0"], 1_000_000);
    let event = next_matching(
        &events,
        Duration::from_secs(20),
        "a change after the first cycle",
        |e| e["seq"].as_u64() > Some(base),
    );
    assert_eq!(event["source"], "qb");
    let cycles = "tributary_cycles_total{source=\"qb\"}";
    wait_for(
        Duration::from_secs(20),
        || format!("three cycles:\n{}\n{}", watch.health(), watch.log()),
        || (watch.metric(cycles) >= 3.0).then_some(()),
    );
    assert!(
        polled.elapsed() < Duration::from_secs(58),
        "the test ran so long that the 60 s poll may have run"
    );
    let health = watch.health();
    let qb = &health["sources"][0];
    assert_eq!(qb["consecutive_failures"], 0, "{health}\n{}", watch.log());
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        !watch.log().contains("invalid_grant"),
        "a cycle read with a superseded refresh token:\n{}",
        watch.log()
    );
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn into_postgres_a_row_deleted_at_the_source_reaches_the_subscriber_as_a_delete() {
    let Some(schema) = crate::postgres::Schema::new("watchdel") else {
        return;
    };
    let scratch = Scratch::new();
    let (watch, pk) =
        a_contract_deleted_at_the_source_reaches_the_feed(&scratch, &schema.destination());
    let marked: Vec<(bool,)> = schema.query(&format!(
        "SELECT _deleted FROM $schema.internal__contracts WHERE _pk = '{pk}'"
    ));
    assert_eq!(marked, [(true,)], "committed before it was published");
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}

/// A source's entry in `/health`.
fn source_health(health: &Value, name: &str) -> Value {
    health["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["source"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Sets a contract's status in an internal database, as a change `watch` must pick up.
fn touch_contract(db: &std::path::Path, status: &str) -> String {
    let conn = rusqlite::Connection::open(db).expect("internal db");
    let at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let id: i64 = conn
        .query_row("SELECT MIN(id) FROM contracts", [], |r| r.get(0))
        .expect("a contract");
    conn.execute(
        "UPDATE contracts SET status = ?1, updated_at = ?2 WHERE id = ?3",
        rusqlite::params![status, at, id],
    )
    .expect("update");
    id.to_string()
}

#[test]
fn a_failing_source_backs_off_and_recovers_while_the_other_keeps_flowing() {
    let scratch = Scratch::new();
    let internal = |name: &str, seed: u32| {
        format!(
            "[sources.{name}]\nplugin = \"internal-db\"\nstreams = [\"contracts\"]\n\n\
             [sources.{name}.config]\nurl = \"sqlite://{}\"\n\
             sample_data = {{ clients = 10, seed = {seed} }}\n\n",
            scratch.path(&format!("{name}.db")).display()
        )
    };
    scratch.manifest(&format!(
        "{}{}\nbackoff_max = \"2s\"\nhealth_failures = 2\n\n{}{}",
        scratch.header(),
        watch_section("1s").trim_end(),
        internal("a", 1),
        internal("b", 2),
    ));
    let started = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let events = tail(&watch.addr, TOKEN, &["--stream", "contracts"], 1_000_000);

    // Source `a` loses its table: its cycles fail from now on.
    rusqlite::Connection::open(scratch.path("a.db"))
        .and_then(|c| c.execute_batch("ALTER TABLE contracts RENAME TO contracts_away"))
        .expect("rename");
    let failing = wait_for(
        Duration::from_secs(60),
        || {
            format!(
                "source a failing twice:\n{}\n{}",
                watch.health(),
                watch.log()
            )
        },
        || {
            let a = source_health(&watch.health(), "a");
            (a["health"] == "failing" && a["consecutive_failures"].as_u64() >= Some(2)).then_some(a)
        },
    );
    assert!(
        failing["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "the failure is visible: {failing}"
    );
    let (status, body) = http(&watch.addr, "GET", "/health", &[], b"");
    assert_eq!(status, 503, "past health_failures: {body}");
    let (_, metrics) = http(&watch.addr, "GET", "/metrics", &[], b"");
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("tributary_errors_total{") && l.contains("source=\"a\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors > 0.0, "the failures are counted:\n{metrics}");

    // Backing off: while `b` runs five more cycles (one per second), `a`, failing and
    // waiting twice its interval between cycles, runs fewer.
    let cycles = |name: &str| source_health(&watch.health(), name)["cycles"].as_u64();
    let (a0, b0) = (
        cycles("a").expect("a's cycles"),
        cycles("b").expect("b's cycles"),
    );
    let (a1, b1) = wait_for(
        Duration::from_secs(60),
        || format!("five more cycles of b:\n{}", watch.health()),
        || {
            let health = watch.health();
            let (a, b) = (
                source_health(&health, "a")["cycles"].as_u64()?,
                source_health(&health, "b")["cycles"].as_u64()?,
            );
            (b >= b0 + 5).then_some((a, b))
        },
    );
    assert!(
        a1 - a0 < b1 - b0,
        "a ran {} cycles while b ran {}: no backoff\n{}",
        a1 - a0,
        b1 - b0,
        watch.health()
    );

    // Meanwhile `b` goes on: its change reaches the subscriber.
    let b_pk = touch_contract(&scratch.path("b.db"), "b-while-a-fails");
    let event = next_matching(&events, Duration::from_secs(30), "b's change", |e| {
        e["source"] == "b" && e["pk"] == b_pk.as_str() && e["record"]["status"] == "b-while-a-fails"
    });
    assert_eq!(event["op"], "upsert");
    let b = source_health(&watch.health(), "b");
    assert_eq!(b["consecutive_failures"], 0, "{b}");
    assert_eq!(b["health"], "ok", "{b}");

    // The table comes back: `a` recovers on its own, and its change arrives.
    rusqlite::Connection::open(scratch.path("a.db"))
        .and_then(|c| c.execute_batch("ALTER TABLE contracts_away RENAME TO contracts"))
        .expect("rename back");
    let a_pk = touch_contract(&scratch.path("a.db"), "a-after-recovery");
    next_matching(&events, Duration::from_secs(30), "a's change", |e| {
        e["source"] == "a"
            && e["pk"] == a_pk.as_str()
            && e["record"]["status"] == "a-after-recovery"
    });
    wait_for(
        Duration::from_secs(30),
        || format!("source a healthy again:\n{}", watch.health()),
        || {
            let a = source_health(&watch.health(), "a");
            (a["health"] == "ok" && a["consecutive_failures"] == 0).then_some(())
        },
    );
    let (status, body) = http(&watch.addr, "GET", "/health", &[], b"");
    assert_eq!(status, 200, "{body}");
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));
}
