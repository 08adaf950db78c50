//! End-to-end tests of the QuickBooks connector (issues 3, 7 and 12): the real
//! `tributary` binary loads the built `libtributary_quickbooks.so` and syncs the QuickBooks
//! emulator into SQLite, across runs, through token rotation, failures, quiet months,
//! deletions, narrowed runs and a server stricter than the client's budget.
//!
//! Expected values come from the emulator's data (its objects, its counters), never from
//! constants; every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{count, Report, Run, Scratch};
use serde_json::Value;
use tributary_sandbox::quickbooks::{
    CdcOldSince, Counts, Emulator, EmulatorConfig, FaultKind, FaultSpec, Limits,
};

const ENTITY_STREAMS: &[(&str, &str)] = &[
    ("invoices", "Invoice"),
    ("payments", "Payment"),
    ("purchases", "Purchase"),
    ("bills", "Bill"),
    ("deposits", "Deposit"),
    ("customers", "Customer"),
    ("vendors", "Vendor"),
    ("accounts", "Account"),
    ("items", "Item"),
    ("credit_memos", "CreditMemo"),
    ("sales_receipts", "SalesReceipt"),
    ("journal_entries", "JournalEntry"),
];
const TRANSACTIONS: &[&str] = &[
    "Invoice",
    "Payment",
    "Purchase",
    "Bill",
    "Deposit",
    "CreditMemo",
    "SalesReceipt",
    "JournalEntry",
];

fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default())
}

fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("emulator starts")
}

/// A small company: enough invoices for the scenarios, few of everything else.
fn small_company() -> EmulatorConfig {
    EmulatorConfig {
        counts: Counts {
            invoices: 150,
            customers: 12,
            ..Counts::invoices_only(0)
        },
        ..EmulatorConfig::default()
    }
}

/// A scratch directory whose manifest has one QuickBooks source `qbo` on `emu`.
fn setup(emu: &Emulator, streams: Option<&[&str]>) -> Scratch {
    setup_with(emu, streams, &[])
}

/// [`setup`] with config keys overridden or added (`("page_size", "10")`, TOML values).
fn setup_with(emu: &Emulator, streams: Option<&[&str]>, overrides: &[(&str, &str)]) -> Scratch {
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
    let quoted = |v: &str| format!("\"{v}\"");
    let mut config: BTreeMap<&str, String> = BTreeMap::from([
        ("realm_id", quoted(emu.realm_id())),
        ("client_id", quoted(emu.client_id())),
        ("client_secret", quoted(emu.client_secret())),
        ("refresh_token", quoted(emu.initial_refresh_token())),
        ("base_url", quoted(&emu.base_url())),
        ("token_url", quoted(&emu.token_url())),
        ("page_size", "40".into()),
        ("requests_per_minute", "0".into()),
        ("requests_per_second", "0".into()),
        ("retry_after_default_secs", "1".into()),
        ("backoff_initial_ms", "10".into()),
        ("backoff_max_ms", "100".into()),
    ]);
    for (k, v) in overrides {
        config.insert(k, (*v).to_string());
    }
    let config: String = config.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    s.manifest(&format!(
        "{}[sources.qbo]\nplugin = \"quickbooks\"\n{streams}\n[sources.qbo.config]\n{config}",
        s.header()
    ));
    s
}

fn assert_no_secrets(emu: &Emulator, run: &Run) {
    let text = run.all();
    let mut secrets = emu.issued_secrets();
    secrets.push(emu.client_secret().to_string());
    for secret in secrets {
        assert!(!text.contains(&secret), "a secret appeared in the output");
    }
}

fn stored_refresh_token(s: &Scratch) -> Option<String> {
    let text = std::fs::read_to_string(s.path("credentials.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["qbo"]["refresh_token"].as_str().map(str::to_string)
}

fn ok(run: &Run, report: &Report) {
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}\n{}", run.all());
}

/// One warehouse row: deleted flag and data.
struct Row {
    deleted: bool,
    data: Value,
}

fn rows(s: &Scratch, table: &str) -> BTreeMap<String, Row> {
    let db = s.warehouse();
    let mut stmt = db
        .prepare(&format!("SELECT _pk, _deleted, data FROM \"{table}\""))
        .expect("query");
    let found = stmt
        .query_map([], |r| {
            let data: String = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                Row {
                    deleted: r.get::<_, i64>(1)? != 0,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                },
            ))
        })
        .expect("rows")
        .collect::<Result<BTreeMap<_, _>, _>>()
        .expect("rows");
    found
}

/// Checks that the warehouse table of `stream` is exactly the emulator's `entity`: every
/// live object present, live, with the emulator's data (SyncToken included); every other
/// row marked deleted. Returns the deleted rows' keys.
fn assert_exact(emu: &Emulator, s: &Scratch, stream: &str, entity: &str) -> BTreeSet<String> {
    let rows = rows(s, &format!("qbo__{stream}"));
    let live: BTreeSet<String> = emu.ids(entity).into_iter().collect();
    for id in &live {
        let row = rows
            .get(id)
            .unwrap_or_else(|| panic!("{stream}: {id} missing"));
        assert!(!row.deleted, "{stream}: live {id} is marked deleted");
        assert_eq!(
            Some(&row.data),
            emu.object(entity, id).as_ref(),
            "{stream}: {id} differs from the emulator"
        );
    }
    let gone: BTreeSet<String> = rows
        .keys()
        .filter(|k| !live.contains(*k))
        .cloned()
        .collect();
    for id in &gone {
        assert!(rows[id].deleted, "{stream}: {id} is gone but not marked");
    }
    gone
}

/// Keys of `deleted_objects` rows of `entity`.
fn deleted_objects(s: &Scratch, entity: &str) -> BTreeSet<String> {
    rows(s, "qbo__deleted_objects")
        .values()
        .filter(|r| r.data["entity"] == entity)
        .map(|r| r.data["Id"].as_str().expect("Id").to_string())
        .collect()
}

fn state(s: &Scratch, stream: &str) -> Value {
    let text: String = s
        .warehouse()
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'qbo' AND stream = ?1",
            [stream],
            |r| r.get(0),
        )
        .expect("state");
    serde_json::from_str(&text).expect("state json")
}

/// Invoices ordered as the query API orders them: (LastUpdatedTime, Id).
fn invoices_in_order(emu: &Emulator) -> Vec<Value> {
    let mut v: Vec<Value> = emu
        .ids("Invoice")
        .iter()
        .map(|id| emu.object("Invoice", id).expect("invoice"))
        .collect();
    v.sort_by_key(|o| {
        (
            DateTime::parse_from_rfc3339(o["MetaData"]["LastUpdatedTime"].as_str().expect("t"))
                .expect("rfc3339"),
            o["Id"]
                .as_str()
                .expect("id")
                .parse::<u64>()
                .expect("number"),
        )
    });
    v
}

#[test]
fn full_then_incremental_sync_with_rotated_tokens() {
    let emu = emulator();
    let s = setup(&emu, None);
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    let db = s.warehouse();
    for (stream, entity) in ENTITY_STREAMS {
        assert_eq!(
            count(&db, &format!("qbo__{stream}")) as usize,
            emu.count(entity),
            "{stream}"
        );
        assert_eq!(
            report.records(&format!("qbo.{stream}")) as usize,
            emu.count(entity),
            "{stream}"
        );
    }
    let transactions: usize = TRANSACTIONS.iter().map(|e| emu.count(e)).sum();
    assert_eq!(count(&db, "qbo__transaction_list") as usize, transactions);
    assert_eq!(report.records("qbo.deleted_objects"), 0);
    // The initial refresh token is dead now; the live one is in the credentials store.
    assert_eq!(
        stored_refresh_token(&s).as_deref(),
        Some(emu.current_refresh_token().as_str())
    );
    assert_no_secrets(&emu, &run);

    let invoices = emu.ids("Invoice");
    let created = emu.create("Invoice", 3);
    for id in &invoices[..2] {
        assert!(emu.update("Invoice", id));
    }
    for id in &invoices[5..7] {
        assert!(emu.delete("Invoice", id));
    }
    let customers = emu.ids("Customer");
    assert!(emu.delete("Customer", &customers[0]));

    // The manifest still holds the dead initial token: this run works only because the
    // rotated one was persisted and merged over it.
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_eq!(
        report.records("qbo.invoices"),
        7,
        "3 created, 2 updated, 2 deleted"
    );
    assert_eq!(report.deleted("qbo.invoices"), 2);
    assert_eq!(report.records("qbo.customers"), 1);
    assert_eq!(report.records("qbo.deleted_objects"), 2);
    assert_eq!(report.records("qbo.payments"), 0);
    let gone = assert_exact(&emu, &s, "invoices", "Invoice");
    assert_eq!(gone, invoices[5..7].iter().cloned().collect());
    for id in &created {
        assert!(emu.object("Invoice", id).is_some());
    }
    assert_exact(&emu, &s, "customers", "Customer");
    assert_no_secrets(&emu, &run);
}

/// Deletes `n` invoices, updates `m` others and creates `k`, all stamped with the one
/// second `at`; returns (deleted, updated, created) ids.
fn mutate_in_one_second(
    emu: &Emulator,
    at: DateTime<Utc>,
    ids: &[String],
    (n, m, k): (usize, usize, usize),
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let deleted: Vec<String> = ids[..n].to_vec();
    let updated: Vec<String> = ids[n..n + m].to_vec();
    for id in &deleted {
        assert!(emu.delete_at("Invoice", id, at));
    }
    for id in &updated {
        assert!(emu.update_at("Invoice", id, at));
    }
    let created = emu.create_at("Invoice", k, at);
    (deleted, updated, created)
}

// See: issue 7 (a stream quiet for a month lost its hard deletions).
#[test]
fn a_quiet_company_gets_its_deletions_through_cdc_from_the_last_complete_read() {
    let emu = emulator_with(small_company());
    emu.age(chrono::Duration::days(45));
    let s = setup(&emu, Some(&["invoices", "customers", "deleted_objects"]));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_exact(&emu, &s, "invoices", "Invoice");
    assert!(state(&s, "invoices")["complete_at"].is_string());

    // The newest invoice is 45 days old; now 7 are deleted, 60 updated in one second and
    // 25 created.
    let ids = emu.ids("Invoice");
    let (deleted, updated, created) = mutate_in_one_second(&emu, emu.now(), &ids, (7, 60, 25));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(run.all().contains("through CDC"), "{}", run.all());
    assert_eq!(report.deleted("qbo.invoices"), 7, "{}", run.all());
    assert_eq!(
        report.records("qbo.invoices") as usize,
        deleted.len() + updated.len() + created.len()
    );
    let gone = assert_exact(&emu, &s, "invoices", "Invoice");
    let want: BTreeSet<String> = deleted.iter().cloned().collect();
    assert_eq!(gone, want);
    assert_eq!(
        deleted_objects(&s, "Invoice"),
        want,
        "deleted_objects agrees"
    );
    assert_eq!(report.records("qbo.customers"), 0);

    // Nothing changed since: nothing is read or marked again.
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    for stream in ["invoices", "customers", "deleted_objects"] {
        assert_eq!(report.records(&format!("qbo.{stream}")), 0, "{stream}");
        assert_eq!(report.deleted(&format!("qbo.{stream}")), 0, "{stream}");
    }
}

#[test]
fn deletions_in_the_same_second_as_the_saved_position_are_not_lost() {
    let emu = emulator_with(small_company());
    emu.age(chrono::Duration::days(45));
    let s = setup(&emu, Some(&["invoices", "deleted_objects"]));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);

    // One second, read by the next run: it becomes the saved position.
    let second = emu.now();
    let ids = emu.ids("Invoice");
    let (_, updated, _) = mutate_in_one_second(&emu, second, &ids, (0, 60, 25));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    let position = state(&s, "invoices");
    assert_eq!(
        DateTime::parse_from_rfc3339(position["last_updated"].as_str().expect("position"))
            .expect("time")
            .timestamp(),
        second.timestamp(),
        "the saved position is that second"
    );

    // Later deletions stamped with that same second (some of the objects read at it, some
    // older ones), and more updates in it.
    let mut deleted: Vec<String> = updated[..4].to_vec();
    deleted.extend(ids[100..103].iter().cloned());
    for id in &deleted {
        assert!(emu.delete_at("Invoice", id, second));
    }
    for id in &updated[10..15] {
        assert!(emu.update_at("Invoice", id, second));
    }
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_eq!(report.deleted("qbo.invoices"), 7, "{}", run.all());
    let gone = assert_exact(&emu, &s, "invoices", "Invoice");
    let want: BTreeSet<String> = deleted.iter().cloned().collect();
    assert_eq!(gone, want);
    assert_eq!(
        deleted_objects(&s, "Invoice"),
        want,
        "deleted_objects agrees"
    );
}

/// The reconciliation path, for a server that refuses an old `changedSince` and for one
/// that silently answers with its last 30 days only.
#[test]
fn beyond_the_cdc_horizon_a_reconciliation_marks_exactly_the_deletions() {
    for behaviour in [CdcOldSince::Refuse, CdcOldSince::Truncate] {
        let emu = emulator_with(EmulatorConfig {
            cdc_old_since: behaviour,
            ..small_company()
        });
        let s = setup(&emu, Some(&["invoices", "deleted_objects"]));
        let (run, report) = s.sync(&[]);
        ok(&run, &report);

        // Three deletions, then forty quiet days (by the server's clock; ours does not
        // move), then four more deletions, updates and creates.
        let ids = emu.ids("Invoice");
        let early: Vec<String> = ids[..3].to_vec();
        for id in &early {
            assert!(emu.delete("Invoice", id));
        }
        emu.advance_clock(chrono::Duration::days(40));
        let (late, updated, created) = mutate_in_one_second(&emu, emu.now(), &ids[3..], (4, 10, 5));
        let all: BTreeSet<String> = early.iter().chain(&late).cloned().collect();

        // Narrowed runs conclude nothing: one client, then a date window.
        let client = emu.object("Invoice", &updated[0]).expect("invoice")["CustomerRef"]["value"]
            .as_str()
            .expect("customer")
            .to_string();
        let (run, report) = s.sync(&["--client", &client]);
        ok(&run, &report);
        assert_eq!(report.deleted("qbo.invoices"), 0, "{behaviour:?} --client");
        let txn = emu.object("Invoice", &updated[1]).expect("invoice")["TxnDate"]
            .as_str()
            .expect("date")
            .to_string();
        let (run, report) = s.sync(&["--since", &txn, "--until", "2999-01-01"]);
        ok(&run, &report);
        assert_eq!(report.deleted("qbo.invoices"), 0, "{behaviour:?} dates");
        let marked = rows(&s, "qbo__invoices")
            .values()
            .filter(|r| r.deleted)
            .count();
        assert_eq!(marked, 0, "{behaviour:?}: nothing marked by narrowed runs");

        // The plain run reconciles: every deletion marked, no live row marked.
        let (run, report) = s.sync(&[]);
        ok(&run, &report);
        assert!(run.all().contains("reconcil"), "{}", run.all());
        assert_eq!(
            report.deleted("qbo.invoices") as usize,
            all.len(),
            "{behaviour:?}: {}",
            run.all()
        );
        assert_eq!(
            assert_exact(&emu, &s, "invoices", "Invoice"),
            all,
            "{behaviour:?}"
        );
        if behaviour == CdcOldSince::Refuse {
            assert!(emu.stats().cdc_refused >= 1, "CDC was asked and refused");
        }
        // deleted_objects can only hold what CDC still remembers.
        let listed = deleted_objects(&s, "Invoice");
        assert!(late.iter().all(|id| listed.contains(id)), "{behaviour:?}");
        assert!(early.iter().all(|id| !listed.contains(id)), "{behaviour:?}");
        let _ = created;

        // Back inside the horizon: CDC again. Its first answer overlaps the margin
        // before the reconciliation, so deletions of those minutes may come once more
        // (already marked; no live row is read again); after that, silence.
        let (run, report) = s.sync(&[]);
        ok(&run, &report);
        assert!(run.all().contains("through CDC"), "{}", run.all());
        assert_eq!(
            report.records("qbo.invoices"),
            report.deleted("qbo.invoices")
        );
        assert!(report.deleted("qbo.invoices") as usize <= late.len());
        assert_eq!(
            assert_exact(&emu, &s, "invoices", "Invoice"),
            all,
            "{behaviour:?}"
        );
        let (run, report) = s.sync(&[]);
        ok(&run, &report);
        assert_eq!(report.records("qbo.invoices"), 0, "{behaviour:?}");
        assert_eq!(report.deleted("qbo.invoices"), 0, "{behaviour:?}");
    }
}

// See: issue 7 (four rotations in 12 ms when tokens live shorter than the margin).
#[test]
fn short_lived_tokens_and_a_server_stricter_than_the_budget() {
    let ttl = Duration::from_secs(5);
    let emu = emulator_with(EmulatorConfig {
        access_token_ttl: ttl,
        // The server takes 15 requests per 3-second window; the client's budget is 100.
        limits: Limits {
            per_minute: 15,
            minute_window: Duration::from_secs(3),
            per_second: 0,
            concurrency: 0,
            throttle_with_403: false,
        },
        ..EmulatorConfig::default()
    });
    let streams = ["invoices", "payments", "customers", "purchases", "bills"];
    let s = setup_with(
        &emu,
        Some(&streams),
        &[
            ("page_size", "8"),
            ("requests_per_minute", "100"),
            ("budget_window_secs", "3"),
            ("requests_per_second", "20"),
            ("max_throttle_retries", "50"),
        ],
    );
    let started = Instant::now();
    let (run, report) = s.sync(&[]);
    let elapsed = started.elapsed();
    ok(&run, &report);
    for (stream, entity) in ENTITY_STREAMS.iter().filter(|(s, _)| streams.contains(s)) {
        assert_exact(&emu, &s, stream, entity);
    }
    let stats = emu.stats();
    // One refresh per token lifetime (renewed a tenth before expiry), however many
    // streams run at once.
    let lifetimes = (elapsed.as_secs_f64() / (ttl.as_secs_f64() * 0.9)).ceil() as u64;
    assert!(
        stats.refreshes >= 2,
        "the run outlived a token: {elapsed:?}"
    );
    assert!(
        stats.refreshes <= lifetimes + 1,
        "{} refreshes in {elapsed:?} with {ttl:?} tokens",
        stats.refreshes
    );
    assert_eq!(
        stored_refresh_token(&s).as_deref(),
        Some(emu.current_refresh_token().as_str())
    );
    // The budget learnt the server's limit: a handful of throttles, not one per request
    // (without learning, about three requests in four would be throttled here).
    assert!(
        stats.throttled <= 12,
        "{} throttles in {} requests",
        stats.throttled,
        stats.requests
    );
    assert!(
        stats.throttled >= 1,
        "the server's limit was below the budget"
    );
    assert!(
        run.all().contains("lowering the client-side budget"),
        "{}",
        run.all()
    );
    assert!(stats.max_in_window(Duration::from_secs(3)) <= 15);
    assert_no_secrets(&emu, &run);
}

#[test]
fn a_tighter_server_limit_through_the_binary() {
    let emu = emulator_with(EmulatorConfig {
        limits: Limits {
            per_minute: 0,
            minute_window: Duration::from_secs(60),
            per_second: 4,
            concurrency: 2,
            throttle_with_403: true,
        },
        ..EmulatorConfig::default()
    });
    let streams = ["invoices", "payments", "customers", "vendors"];
    let s = setup_with(
        &emu,
        Some(&streams),
        &[
            ("page_size", "8"),
            ("requests_per_second", "10"),
            ("max_concurrency", "10"),
            ("max_throttle_retries", "30"),
        ],
    );
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    for (stream, entity) in ENTITY_STREAMS.iter().filter(|(s, _)| streams.contains(s)) {
        assert_exact(&emu, &s, stream, entity);
    }
    let stats = emu.stats();
    assert!(stats.throttled >= 1, "the emulator did throttle");
    assert!(
        stats.throttled * 4 < stats.requests,
        "{} throttles in {} requests",
        stats.throttled,
        stats.requests
    );
}

fn invoices_of(emu: &Emulator, customer: &str) -> Vec<String> {
    emu.ids("Invoice")
        .into_iter()
        .filter(|id| {
            emu.object("Invoice", id).expect("invoice")["CustomerRef"]["value"] == customer
        })
        .collect()
}

// See: issue 7 (a narrowed run moved the saved position past rows it did not read).
#[test]
fn narrowed_runs_leave_every_change_for_the_next_plain_run() {
    let emu = emulator_with(small_company());
    let s = setup(&emu, Some(&["invoices"]));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);

    // Changes to two customers' invoices; a run for the first customer only.
    let first = emu
        .object("Invoice", &emu.ids("Invoice")[0])
        .expect("invoice")["CustomerRef"]["value"]
        .as_str()
        .expect("customer")
        .to_string();
    let a = invoices_of(&emu, &first);
    let second = emu
        .ids("Invoice")
        .into_iter()
        .map(|id| emu.object("Invoice", &id).expect("invoice")["CustomerRef"]["value"].clone())
        .find(|c| *c != first.as_str())
        .and_then(|c| c.as_str().map(str::to_string))
        .expect("two customers");
    let b = invoices_of(&emu, &second);
    // The other customer's changes are the older ones: a run that moved the main
    // position over the first customer's would step over them.
    emu.advance_clock(chrono::Duration::minutes(1));
    for id in &b {
        assert!(emu.update_at("Invoice", id, emu.now() - chrono::Duration::seconds(3)));
    }
    for id in &a {
        assert!(emu.update_at("Invoice", id, emu.now() - chrono::Duration::seconds(1)));
    }
    let (run, report) = s.sync(&["--client", &first]);
    ok(&run, &report);
    assert_eq!(report.records("qbo.invoices") as usize, a.len());
    let now = rows(&s, "qbo__invoices");
    for id in &a {
        assert_eq!(Some(&now[id].data), emu.object("Invoice", id).as_ref());
    }
    for id in &b {
        assert_ne!(Some(&now[id].data), emu.object("Invoice", id).as_ref());
    }
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(report.records("qbo.invoices") as usize >= a.len() + b.len());
    assert!(assert_exact(&emu, &s, "invoices", "Invoice").is_empty());
    assert_eq!(
        count(&s.warehouse(), "qbo__invoices") as usize,
        emu.count("Invoice")
    );

    // The same with a date window: changes inside and outside it.
    let by_date = invoices_in_order(&emu);
    let mut dates: Vec<String> = by_date
        .iter()
        .map(|o| o["TxnDate"].as_str().expect("date").to_string())
        .collect();
    dates.sort();
    let (since, until) = (dates[40].clone(), dates[80].clone());
    let inside: Vec<String> = by_date
        .iter()
        .filter(|o| {
            let d = o["TxnDate"].as_str().expect("date");
            d >= since.as_str() && d < until.as_str()
        })
        .map(|o| o["Id"].as_str().expect("id").to_string())
        .collect();
    let outside: Vec<String> = by_date
        .iter()
        .filter(|o| o["TxnDate"].as_str().expect("date") >= until.as_str())
        .map(|o| o["Id"].as_str().expect("id").to_string())
        .take(7)
        .collect();
    assert!(!inside.is_empty() && !outside.is_empty());
    emu.advance_clock(chrono::Duration::minutes(1));
    for id in &outside {
        assert!(emu.update_at("Invoice", id, emu.now() - chrono::Duration::seconds(3)));
    }
    for id in inside.iter().take(4) {
        assert!(emu.update_at("Invoice", id, emu.now() - chrono::Duration::seconds(1)));
    }
    let (run, report) = s.sync(&["--since", &since, "--until", &until]);
    ok(&run, &report);
    assert_eq!(report.records("qbo.invoices"), 4.min(inside.len() as u64));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(report.records("qbo.invoices") as usize >= 4.min(inside.len()) + outside.len());
    assert!(assert_exact(&emu, &s, "invoices", "Invoice").is_empty());
    assert_eq!(
        count(&s.warehouse(), "qbo__invoices") as usize,
        emu.count("Invoice")
    );
}

// See: issue 12 (nothing was killed).
#[test]
fn token_expiry_mid_sync_and_a_restart_after_rotation() {
    // Slow enough (3 requests per second) that the host is still running when killed.
    let emu = emulator_with(EmulatorConfig {
        limits: Limits {
            per_minute: 0,
            minute_window: Duration::from_secs(60),
            per_second: 3,
            concurrency: 0,
            throttle_with_403: false,
        },
        ..EmulatorConfig::default()
    });
    let s = setup_with(
        &emu,
        Some(&["invoices", "customers"]),
        &[("page_size", "5"), ("requests_per_second", "3")],
    );
    let log = std::fs::File::create(s.path("run.log")).expect("log file");
    let mut child = s
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tributary starts");
    let wait_for = |what: &str, mut cond: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // The first refresh of the run is persisted; then every access token expires, so the
    // next request is refused and the token rotates mid-sync.
    wait_for(
        "the first rotation",
        Box::new(|| stored_refresh_token(&s).is_some()),
    );
    let first = stored_refresh_token(&s).expect("stored");
    emu.expire_access_tokens();
    wait_for(
        "the mid-sync rotation",
        Box::new(|| stored_refresh_token(&s).is_some_and(|t| t != first)),
    );
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "killed, not finished");
    let stored = stored_refresh_token(&s).expect("stored");
    assert_eq!(
        stored,
        emu.current_refresh_token(),
        "the live refresh token was persisted before the kill"
    );
    assert!(
        emu.stats().auth_failures >= 1,
        "the token did expire mid-sync"
    );

    // A new process, with the stored token only (its access token expired too).
    emu.expire_access_tokens();
    let before = emu.stats();
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    let after = emu.stats();
    assert_eq!(after.invalid_grants, 0, "{}", run.all());
    assert_eq!(
        after.refreshes,
        before.refreshes + 1,
        "one refresh, with the stored token"
    );
    assert_exact(&emu, &s, "invoices", "Invoice");
    assert_exact(&emu, &s, "customers", "Customer");
    assert_no_secrets(&emu, &run);
}

#[test]
fn invalid_grant_fails_clearly_and_keeps_state() {
    let emu = emulator();
    let streams = [
        "invoices",
        "customers",
        "payments",
        "vendors",
        "transaction_list",
    ];
    let s = setup(&emu, Some(&streams));
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let state_before = state(&s, "invoices");
    emu.revoke_refresh_token();
    emu.expire_access_tokens();
    let (run, report) = s.sync(&[]);
    assert_ne!(run.code, 0);
    assert!(
        run.all().contains("invalid_grant") && run.all().contains("reconnect"),
        "{}",
        run.all()
    );
    // Every stream is reported by name, the ones stopped by the fatal error included.
    for stream in streams {
        assert_eq!(
            report.status(&format!("qbo.{stream}")),
            "incomplete",
            "{stream}"
        );
    }
    assert!(
        !run.all().contains(", ?"),
        "a stream without a name: {}",
        run.all()
    );
    assert_eq!(state_before, state(&s, "invoices"));
    assert_eq!(
        count(&s.warehouse(), "qbo__invoices") as usize,
        emu.count("Invoice")
    );
    assert_no_secrets(&emu, &run);
}

// See: issue 12 (the assertions passed on literals).
#[test]
fn malformed_json_names_stream_and_position_and_5xx_recovers() {
    let emu = emulator();
    let s = setup(&emu, Some(&["invoices", "customers"]));
    emu.inject(FaultSpec::next(FaultKind::Status(503), 2));
    emu.inject(
        FaultSpec::next(FaultKind::MalformedJson, u32::MAX)
            .matching("FROM Invoice")
            .skip(1),
    );
    let (run, report) = s.sync(&[]);
    assert_ne!(run.code, 0);
    // The bad page is the second invoice page: it starts at the second of the 40th
    // invoice (page size 40), and the error names exactly that position.
    let at = invoices_in_order(&emu)[39]["MetaData"]["LastUpdatedTime"]
        .as_str()
        .expect("time")
        .to_string();
    let position = format!("query invoices at STARTPOSITION 1 with LastUpdatedTime >= {at}");
    let out = run.all();
    assert!(
        out.contains(&format!("stream invoices at {position}:")),
        "expected {position} in\n{out}"
    );
    let stats = emu.stats();
    let bad = stats.injected(&FaultKind::MalformedJson);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains(&format!("'{at}'")), "{}", bad[0]);
    // Both 503s were served, and the requests they hit answered on a retry.
    let unavailable = stats.injected(&FaultKind::Status(503));
    assert_eq!(unavailable.len(), 2);
    for request in unavailable {
        assert!(stats.succeeded(request) >= 1, "{request} was not retried");
    }
    assert_eq!(report.status("qbo.customers"), "complete");
    assert_exact(&emu, &s, "customers", "Customer");
    // The page before the bad one is committed; after the fault clears, the rest follows.
    assert_eq!(count(&s.warehouse(), "qbo__invoices"), 40);
    emu.clear_faults();
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_eq!(
        report.records("qbo.invoices") as usize,
        emu.count("Invoice") - 40,
        "resumed after the committed page"
    );
    assert_exact(&emu, &s, "invoices", "Invoice");
    assert_no_secrets(&emu, &run);
}

#[test]
fn server_errors_and_timeouts_are_retried_through_the_binary() {
    let emu = emulator();
    emu.inject(FaultSpec::next(FaultKind::Status(503), 2));
    emu.inject(FaultSpec::next(FaultKind::Status(500), 1).matching("FROM Customer"));
    emu.inject(
        FaultSpec::next(FaultKind::Slow(Duration::from_secs(3)), 1)
            .matching("FROM Invoice")
            .skip(1),
    );
    let s = setup_with(
        &emu,
        Some(&["invoices", "customers"]),
        &[("request_timeout_secs", "1")],
    );
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(run.all().contains("timed out"), "{}", run.all());
    let stats = emu.stats();
    for (kind, times) in [
        (FaultKind::Status(503), 2),
        (FaultKind::Status(500), 1),
        (FaultKind::Slow(Duration::from_secs(3)), 1),
    ] {
        let hit = stats.injected(&kind);
        assert_eq!(hit.len(), times, "{kind:?}");
        for request in hit {
            assert!(
                stats.succeeded(request) >= 1,
                "{kind:?} on {request} not retried"
            );
        }
    }
    assert_exact(&emu, &s, "invoices", "Invoice");
    assert_exact(&emu, &s, "customers", "Customer");
}

#[test]
fn many_rows_on_one_timestamp_query_path_and_cdc_path_through_the_binary() {
    let emu = emulator_with(EmulatorConfig {
        counts: Counts::invoices_only(1200),
        ..EmulatorConfig::default()
    });
    let s = setup_with(&emu, Some(&["invoices"]), &[("page_size", "100")]);
    // Query path: 1,200 objects in one second (a first sync reconciles).
    let old = emu.now() - chrono::Duration::days(60);
    emu.set_timestamps(Some("Invoice"), old);
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_eq!(report.records("qbo.invoices"), 1200);
    assert_exact(&emu, &s, "invoices", "Invoice");

    // Objects written later in that same second, read after forty quiet days (query
    // path again): exactly those.
    let late = emu.create("Invoice", 3);
    emu.set_timestamps(Some("Invoice"), old);
    emu.advance_clock(chrono::Duration::days(40));
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert_eq!(
        report.records("qbo.invoices") as usize,
        late.len(),
        "{}",
        run.all()
    );
    assert_exact(&emu, &s, "invoices", "Invoice");

    // CDC path: 900 objects changed in one recent second (under CDC's cap of 1,000),
    // then more written later in that same second.
    let recent = emu.now();
    let restamped: Vec<String> = emu.ids("Invoice").into_iter().take(900).collect();
    for id in &restamped {
        assert!(emu.set_timestamp("Invoice", id, recent));
    }
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(run.all().contains("through CDC"), "{}", run.all());
    assert!(!run.all().contains("reconciling"), "{}", run.all());
    assert_eq!(report.records("qbo.invoices") as usize, restamped.len());
    assert_exact(&emu, &s, "invoices", "Invoice");
    let more = emu.create("Invoice", 4);
    for id in &more {
        assert!(emu.set_timestamp("Invoice", id, recent));
    }
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(!run.all().contains("reconciling"), "{}", run.all());
    assert_eq!(report.records("qbo.invoices") as usize, more.len());
    assert_exact(&emu, &s, "invoices", "Invoice");

    // Over the cap, in one (later) second: the answer may be truncated, so the run
    // reconciles and still delivers every change exactly.
    emu.advance_clock(chrono::Duration::minutes(1));
    let recent = emu.now();
    emu.set_timestamps(Some("Invoice"), recent);
    let (run, report) = s.sync(&[]);
    ok(&run, &report);
    assert!(run.all().contains("may be truncated"), "{}", run.all());
    assert_eq!(
        report.records("qbo.invoices") as usize,
        emu.count("Invoice")
    );
    assert_exact(&emu, &s, "invoices", "Invoice");
}
