//! The connector, in process (through the same glue as the plugin), against the
//! QuickBooks emulator. Each test starts its own emulator on a free port.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tributary_quickbooks::QuickBooks;
use tributary_sandbox::quickbooks::{
    CdcCapOrder, Counts, Emulator, EmulatorConfig, FaultKind, FaultSpec, Limits,
};
use tributary_sdk::host::{Collected, CollectingHandler, HostHandler, InProcess, RecordBatch};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ConnectorError, ControlMessage, ErrorKind, LogLevel,
    ReadRequest, StreamStatus, SyncMode, Window,
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

/// The SDK replaces the panic hook when the plugin runtime starts (right for a cdylib,
/// but in a test binary it hides assertion messages); start it, then restore a printing
/// hook.
fn restore_panic_messages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cfg =
            json!({"realm_id": "1", "client_id": "c", "client_secret": "s", "refresh_token": "r"});
        let _ = InProcess::<QuickBooks>::discover(&cfg, CollectingHandler::new());
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    });
}

fn emulator(counts: Counts) -> Arc<Emulator> {
    restore_panic_messages();
    Arc::new(
        Emulator::start(EmulatorConfig {
            counts,
            ..EmulatorConfig::default()
        })
        .expect("emulator starts"),
    )
}

/// A connector config for `emu` tuned for tests: no client budget, quick retries.
fn config(emu: &Emulator, extra: Value) -> Value {
    let mut c = emu.connector_config();
    let defaults = json!({"page_size": 25, "requests_per_minute": 0, "requests_per_second": 0, "retry_after_default_secs": 1,
        "backoff_initial_ms": 10, "backoff_max_ms": 100, "request_timeout_secs": 5});
    for source in [defaults, extra] {
        if let (Some(c), Some(o)) = (c.as_object_mut(), source.as_object()) {
            for (k, v) in o {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn request(
    config: &Value,
    streams: &[&str],
    mode: SyncMode,
    state: &BTreeMap<String, Value>,
) -> ReadRequest {
    ReadRequest {
        config: config.clone(),
        catalog: ConfiguredCatalog {
            streams: streams
                .iter()
                .map(|s| ConfiguredStream {
                    name: (*s).to_string(),
                    sync_mode: mode,
                })
                .collect(),
        },
        state: state.clone(),
        window: Window::default(),
    }
}

fn read(req: &ReadRequest) -> (Result<(), ConnectorError>, Collected) {
    let handler = CollectingHandler::new();
    let result = InProcess::<QuickBooks>::read(req, handler.clone());
    (result, handler.collected())
}

/// Applies the ConfigUpdate messages of a run to the config, as the host does.
fn rotate(config: &mut Value, collected: &Collected) {
    for m in &collected.control {
        let ControlMessage::ConfigUpdate { values } = m;
        for (k, v) in values {
            config[k.as_str()] = json!(v);
        }
    }
}

fn all_streams() -> Vec<&'static str> {
    let mut v: Vec<&str> = ENTITY_STREAMS.iter().map(|(s, _)| *s).collect();
    v.extend(["transaction_list", "deleted_objects"]);
    v
}

fn pks(c: &Collected, stream: &str) -> Vec<String> {
    c.records
        .get(stream)
        .map(|r| r.iter().map(|r| r.pk.clone()).collect())
        .unwrap_or_default()
}

fn assert_unique(c: &Collected, stream: &str) {
    let p = pks(c, stream);
    let set: BTreeSet<&String> = p.iter().collect();
    assert_eq!(set.len(), p.len(), "duplicates in {stream}");
}

#[test]
fn discover_lists_every_stream_with_key_and_cursor() {
    let emu = emulator(Counts::default());
    let catalog =
        InProcess::<QuickBooks>::discover(&config(&emu, json!({})), CollectingHandler::new())
            .expect("discover");
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, all_streams());
    for s in &catalog.streams {
        assert!(!s.primary_key.is_empty());
        assert!(s.cursor_field.is_some());
        assert_eq!(s.json_schema["type"], "object");
    }
    assert_eq!(
        InProcess::<QuickBooks>::info().expect("info").name,
        "quickbooks"
    );
}

#[test]
fn check_authenticates_and_rejects_bad_client_credentials() {
    let emu = emulator(Counts::default());
    let handler = CollectingHandler::new();
    InProcess::<QuickBooks>::check(&config(&emu, json!({})), handler.clone())
        .expect("check passes");
    assert_eq!(
        handler.collected().control.len(),
        1,
        "the refresh during check is persisted"
    );
    let e = InProcess::<QuickBooks>::check(
        &config(&emu, json!({"client_secret": "wrong"})),
        CollectingHandler::new(),
    )
    .expect_err("bad secret");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("invalid_client"), "{}", e.message);
}

#[test]
fn full_sync_has_exact_counts_and_untouched_objects() {
    let emu = emulator(Counts::default());
    let cfg = config(&emu, json!({}));
    let (result, c) = read(&request(
        &cfg,
        &all_streams(),
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    result.expect("sync succeeds");
    for (stream, entity) in ENTITY_STREAMS {
        assert_eq!(pks(&c, stream).len(), emu.count(entity), "{stream}");
        assert_unique(&c, stream);
        assert!(
            matches!(c.status.get(*stream), Some(StreamStatus::Complete)),
            "{stream}"
        );
    }
    let transactions: usize = TRANSACTIONS.iter().map(|e| emu.count(e)).sum();
    assert_eq!(pks(&c, "transaction_list").len(), transactions);
    assert_unique(&c, "transaction_list");
    assert_eq!(pks(&c, "deleted_objects").len(), 0);
    // Objects pass through exactly, quirks included.
    for r in &c.records["payments"] {
        let data: Value = serde_json::from_str(&r.data).expect("json");
        assert_eq!(Some(data.clone()), emu.object("Payment", &r.pk));
        assert!(r.data.contains("javax.xml.bind.JAXBElement$GlobalScope"));
        assert_eq!(
            r.cursor.as_deref(),
            data["MetaData"]["LastUpdatedTime"].as_str()
        );
    }
    assert!(c.records["customers"]
        .iter()
        .any(|r| r.data.contains("\"Lat\":\"INVALID\"")));
    assert!(
        c.records["customers"]
            .iter()
            .any(|r| r.data.contains("\"Active\":false")),
        "inactive customers are read"
    );
    for (stream, _) in ENTITY_STREAMS {
        let state = c.state.get(*stream).expect("state");
        assert!(state["last_updated"].is_string(), "{stream} has a position");
        assert!(
            state["complete_at"].is_string(),
            "{stream} records its complete read"
        );
        // A first sync is the reconciliation pass: one complete Source snapshot whose
        // listing is the records themselves (no key sent separately).
        assert!(c.snapshot_completed(stream), "{stream}");
        assert!(c.keys.get(*stream).is_none_or(Vec::is_empty), "{stream}");
    }
}

#[test]
fn incremental_after_creates_updates_deletes_has_no_duplicates_or_misses() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({}));
    let streams = ["invoices", "customers", "deleted_objects"];
    let (r1, c1) = read(&request(
        &cfg,
        &streams,
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("first run");
    rotate(&mut cfg, &c1);
    assert_eq!(pks(&c1, "invoices").len(), emu.count("Invoice"));

    let invoices = emu.ids("Invoice");
    let created = emu.create("Invoice", 5);
    let updated: Vec<String> = invoices[..3].to_vec();
    for id in &updated {
        assert!(emu.update("Invoice", id));
    }
    let deleted: Vec<String> = invoices[10..12].to_vec();
    for id in &deleted {
        assert!(emu.delete("Invoice", id));
    }
    let customers = emu.ids("Customer");
    assert!(emu.update("Customer", &customers[0]));
    assert!(emu.delete("Customer", &customers[1]));

    let (r2, c2) = read(&request(&cfg, &streams, SyncMode::Incremental, &c1.state));
    r2.expect("second run");
    rotate(&mut cfg, &c2);
    let got: BTreeSet<String> = pks(&c2, "invoices").into_iter().collect();
    let want: BTreeSet<String> = created
        .iter()
        .chain(&updated)
        .chain(&deleted)
        .cloned()
        .collect();
    assert_eq!(got, want);
    assert_unique(&c2, "invoices");
    let deletions: BTreeSet<String> = c2.records["invoices"]
        .iter()
        .filter(|r| r.deleted)
        .map(|r| r.pk.clone())
        .collect();
    assert_eq!(deletions, deleted.iter().cloned().collect());
    assert!(
        c2.logs.iter().any(|l| l.contains("through CDC")),
        "incremental uses CDC: {:?}",
        c2.logs
    );
    let cust: BTreeSet<String> = pks(&c2, "customers").into_iter().collect();
    assert_eq!(cust, customers[..2].iter().cloned().collect());
    let inactive = c2.records["customers"]
        .iter()
        .find(|r| r.pk == customers[1])
        .expect("deleted customer");
    assert!(
        inactive.data.contains("\"Active\":false") && !inactive.deleted,
        "list deletes are inactive updates"
    );
    let gone: BTreeSet<String> = pks(&c2, "deleted_objects").into_iter().collect();
    let want_gone: BTreeSet<String> = deleted
        .iter()
        .map(|id| format!("[\"Invoice\",\"{id}\"]"))
        .collect();
    assert_eq!(gone, want_gone);

    // Nothing changed: nothing read.
    let (r3, c3) = read(&request(&cfg, &streams, SyncMode::Incremental, &c2.state));
    r3.expect("third run");
    for s in streams {
        assert_eq!(pks(&c3, s).len(), 0, "{s} re-emitted records");
    }
}

#[test]
fn many_rows_on_one_timestamp_query_path_and_cdc_path() {
    let emu = emulator(Counts {
        invoices: 2600,
        ..Counts::invoices_only(0)
    });
    let mut cfg = config(&emu, json!({"page_size": 200}));
    // 2,600 objects in one second, read by the query API (a first sync reconciles).
    let old = emu.now() - chrono::Duration::days(60);
    emu.set_timestamps(Some("Invoice"), old);
    let (r1, c1) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("first run");
    rotate(&mut cfg, &c1);
    assert_eq!(pks(&c1, "invoices").len(), 2600);
    assert_unique(&c1, "invoices");

    // New objects written in that same second must not be missed (a `>` cursor would).
    // Forty quiet days later CDC cannot answer, so this is the query path again: the
    // reconciliation lists the 2,600 as keys and emits only the late ones.
    let late = emu.create("Invoice", 3);
    emu.set_timestamps(Some("Invoice"), old);
    emu.advance_clock(chrono::Duration::days(40));
    let (r2, c2) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c1.state,
    ));
    r2.expect("second run");
    rotate(&mut cfg, &c2);
    let got: BTreeSet<String> = pks(&c2, "invoices").into_iter().collect();
    assert_eq!(
        got,
        late.iter().cloned().collect(),
        "exactly the late objects"
    );
    assert_eq!(c2.keys["invoices"].len(), 2600);
    assert!(c2.snapshot_completed("invoices"));

    // The same inside the CDC window: 900 objects changed in one recent second (under
    // CDC's cap of 1,000), then more written later in that second.
    let recent = emu.now();
    let restamped: Vec<String> = emu.ids("Invoice").into_iter().take(900).collect();
    for id in &restamped {
        assert!(emu.set_timestamp("Invoice", id, recent));
    }
    let (r3, c3) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c2.state,
    ));
    r3.expect("third run");
    rotate(&mut cfg, &c3);
    assert!(c3.logs.iter().any(|l| l.contains("through CDC")));
    assert!(
        !c3.logs.iter().any(|l| l.contains("reconciling")),
        "{:#?}",
        c3.logs
    );
    let got: BTreeSet<String> = pks(&c3, "invoices").into_iter().collect();
    assert_eq!(
        got,
        restamped.iter().cloned().collect(),
        "re-stamped objects are changes"
    );
    assert_unique(&c3, "invoices");
    let more = emu.create("Invoice", 4);
    for id in &more {
        assert!(emu.set_timestamp("Invoice", id, recent));
    }
    let (r4, c4) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c3.state,
    ));
    r4.expect("fourth run");
    assert!(!c4.logs.iter().any(|l| l.contains("reconciling")));
    let got: BTreeSet<String> = pks(&c4, "invoices").into_iter().collect();
    assert_eq!(got, more.iter().cloned().collect());
}

#[test]
fn a_cdc_answer_at_the_cap_is_never_trusted_whatever_order_the_server_truncates_in() {
    // The documentation says a CDC answer stops at 1,000 objects but not which ones it
    // keeps. Whatever the server's order, more than 1,000 changes since the last complete
    // read must still arrive exactly, deletions included.
    for order in [
        CdcCapOrder::OldestFirst,
        CdcCapOrder::NewestFirst,
        CdcCapOrder::ById,
    ] {
        let emu = emulator(Counts {
            invoices: 300,
            ..Counts::invoices_only(0)
        });
        emu.set_cdc_cap_order(order);
        let mut cfg = config(&emu, json!({}));
        let (r1, c1) = read(&request(
            &cfg,
            &["invoices"],
            SyncMode::Incremental,
            &BTreeMap::new(),
        ));
        r1.expect("first run");
        rotate(&mut cfg, &c1);
        // An hour later (server time): 2,500 creates, 50 updates and 20 deletions of the
        // older objects, seven changes to a second.
        emu.advance_clock(chrono::Duration::hours(1));
        let old = emu.ids("Invoice");
        let created = emu.create("Invoice", 2500);
        let updated: Vec<String> = old.iter().step_by(6).take(50).cloned().collect();
        let deleted: Vec<String> = old
            .iter()
            .filter(|id| !updated.contains(id))
            .step_by(7)
            .take(20)
            .cloned()
            .collect();
        let base = emu.now() - chrono::Duration::minutes(30);
        let mut i = 0i64;
        let mut at = || {
            i += 1;
            base + chrono::Duration::seconds(i / 7)
        };
        for id in &created {
            assert!(emu.set_timestamp("Invoice", id, at()));
        }
        for id in &updated {
            assert!(emu.update_at("Invoice", id, at()));
        }
        for id in &deleted {
            assert!(emu.delete_at("Invoice", id, at()));
        }
        let (r2, c2) = read(&request(
            &cfg,
            &["invoices"],
            SyncMode::Incremental,
            &c1.state,
        ));
        r2.expect("second run");
        rotate(&mut cfg, &c2);
        assert!(
            c2.logs.iter().any(|l| l.contains("may be truncated")),
            "{order:?}: {:#?}",
            c2.logs
        );
        let got: BTreeSet<String> = pks(&c2, "invoices").into_iter().collect();
        let changed: BTreeSet<String> = created.iter().chain(&updated).cloned().collect();
        let extra: Vec<_> = got.difference(&changed).collect();
        let missing: Vec<_> = changed.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{order:?}: exactly the changed objects; extra {extra:?}, missing {missing:?}"
        );
        assert_unique(&c2, "invoices");
        // The reconciliation listed every live object; the deleted ones are the unseen.
        assert!(c2.snapshot_completed("invoices"), "{order:?}");
        let seen: BTreeSet<String> = c2.keys["invoices"].iter().cloned().chain(got).collect();
        let live: BTreeSet<String> = emu.ids("Invoice").into_iter().collect();
        assert_eq!(seen, live, "{order:?}: the listing is every live object");
        let gone: BTreeSet<String> = old
            .iter()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        assert_eq!(gone, deleted.iter().cloned().collect(), "{order:?}");

        // The next change goes through CDC again (the pass recorded a complete read).
        emu.advance_clock(chrono::Duration::minutes(10));
        let one = emu.create("Invoice", 1);
        let (r3, c3) = read(&request(
            &cfg,
            &["invoices"],
            SyncMode::Incremental,
            &c2.state,
        ));
        r3.expect("third run");
        assert!(
            c3.logs.iter().any(|l| l.contains("through CDC")),
            "{order:?}"
        );
        assert_eq!(pks(&c3, "invoices"), one, "{order:?}");
    }
}

/// Checks, when a rotated token is handed over, that the emulator has not seen its new
/// access token yet: persistence precedes use.
struct OrderingHandler {
    inner: Arc<CollectingHandler>,
    emu: Arc<Emulator>,
    violations: Mutex<Vec<String>>,
}

impl HostHandler for OrderingHandler {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.inner.records(stream, batch)
    }
    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        self.inner.state(stream, state)
    }
    fn control(&self, message: ControlMessage) -> Result<(), String> {
        let ControlMessage::ConfigUpdate { values } = &message;
        if let Some(token) = values.get("access_token") {
            if self.emu.access_token_used(token) {
                self.violations
                    .lock()
                    .expect("lock")
                    .push("access token used before it was persisted".into());
            }
        }
        if values.get("refresh_token").map(String::as_str)
            != Some(self.emu.current_refresh_token().as_str())
        {
            self.violations
                .lock()
                .expect("lock")
                .push("persisted refresh token is not the live one".into());
        }
        self.inner.control(message)
    }
    fn stream_status(&self, stream: &str, status: StreamStatus) {
        self.inner.stream_status(stream, status)
    }
    fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.inner.log(level, target, message)
    }
    fn log_level(&self) -> LogLevel {
        LogLevel::Debug
    }
}

#[test]
fn token_expiry_mid_sync_rotates_and_persists_before_use() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({"page_size": 10}));
    emu.expire_access_tokens_after(4);
    let handler = Arc::new(OrderingHandler {
        inner: CollectingHandler::new(),
        emu: emu.clone(),
        violations: Mutex::new(Vec::new()),
    });
    let req = request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    );
    InProcess::<QuickBooks>::read(&req, handler.clone()).expect("sync survives the expiry");
    let c = handler.inner.collected();
    assert!(
        handler.violations.lock().expect("lock").is_empty(),
        "{:?}",
        handler.violations.lock().expect("lock")
    );
    assert_eq!(
        c.control.len(),
        2,
        "initial refresh plus one after the expiry (single flight)"
    );
    assert!(emu.stats().auth_failures >= 1);
    assert_eq!(pks(&c, "invoices").len(), emu.count("Invoice"));
    assert_eq!(pks(&c, "customers").len(), emu.count("Customer"));

    // A process killed after the rotation restarts from the persisted token: it works,
    // and the original one is dead.
    rotate(&mut cfg, &c);
    cfg.as_object_mut().expect("object").remove("access_token");
    InProcess::<QuickBooks>::check(&cfg, CollectingHandler::new())
        .expect("persisted refresh token authenticates");
    let stale = config(&emu, json!({}));
    let e = InProcess::<QuickBooks>::check(&stale, CollectingHandler::new())
        .expect_err("the superseded token is dead");
    assert_eq!(e.kind, ErrorKind::Config);
}

#[test]
fn invalid_grant_is_a_clear_config_error_and_loses_nothing() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({}));
    let (r1, c1) = read(&request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("first run");
    rotate(&mut cfg, &c1);
    cfg.as_object_mut().expect("object").remove("access_token");
    emu.revoke_refresh_token();
    let (r2, c2) = read(&request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &c1.state,
    ));
    let e = r2.expect_err("revoked");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(
        e.message.contains("invalid_grant") && e.message.contains("reconnect"),
        "{}",
        e.message
    );
    assert!(c2.records.values().all(Vec::is_empty));
    assert!(c2.checkpoints.is_empty(), "state is left as it was");
    assert_eq!(
        emu.stats().invalid_grants,
        1,
        "single flight: one refresh attempt for two streams"
    );
}

#[test]
fn throttling_stays_under_the_budget_with_production_limits() {
    let emu = emulator(Counts::default());
    emu.set_limits(Limits::production());
    // The connector's own defaults (500/min, 10/s, 10 in flight): no budget key is set.
    // The run is a few seconds long, so it is the per-second limit that binds; the
    // minute window's learning is tested with scaled windows end to end.
    let mut cfg = config(&emu, json!({"page_size": 5}));
    for key in [
        "requests_per_minute",
        "requests_per_second",
        "max_concurrency",
    ] {
        cfg.as_object_mut().expect("object").remove(key);
    }
    let streams = ["invoices", "payments", "customers", "purchases", "bills"];
    let (r, c) = read(&request(
        &cfg,
        &streams,
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r.expect("sync");
    let stats = emu.stats();
    assert_eq!(stats.throttled, 0, "no 429 under the budget");
    assert!(
        stats.requests > 40,
        "several seconds at the budget: {}",
        stats.requests
    );
    let busiest = stats.max_in_window(Duration::from_secs(1));
    assert!(
        (9..=10).contains(&busiest),
        "the per-second budget binds and holds: {busiest} in one second"
    );
    assert!(stats.max_in_flight <= 10);
    for (s, e) in [
        ("invoices", "Invoice"),
        ("payments", "Payment"),
        ("customers", "Customer"),
        ("purchases", "Purchase"),
        ("bills", "Bill"),
    ] {
        assert_eq!(pks(&c, s).len(), emu.count(e), "{s}");
    }
}

#[test]
fn a_tighter_server_limit_still_completes() {
    let emu = emulator(Counts::default());
    emu.set_limits(Limits {
        per_minute: 0,
        minute_window: Duration::from_secs(60),
        per_second: 4,
        concurrency: 2,
        throttle_with_403: true,
    });
    emu.inject(FaultSpec::next(FaultKind::ThrottleRetryAfter(1), 1));
    emu.inject(FaultSpec::next(FaultKind::ThrottleJson403, 1).skip(2));
    let cfg = config(
        &emu,
        json!({"page_size": 10, "requests_per_second": 10, "max_concurrency": 10, "max_throttle_retries": 30}),
    );
    let streams = ["invoices", "payments", "customers", "vendors"];
    let (r, c) = read(&request(
        &cfg,
        &streams,
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r.expect("sync completes despite throttling");
    let stats = emu.stats();
    let throttles = stats
        .served
        .iter()
        .filter(|s| s.status == 429 || s.status == 403)
        .count() as u64;
    assert!(
        throttles >= 2,
        "the emulator did throttle (injected and limits)"
    );
    // The budget learns the tighter limits: a handful of faults, not one per request.
    assert!(
        throttles * 5 < stats.requests,
        "{throttles} throttles ({} by the limits) in {} requests",
        stats.throttled,
        stats.requests
    );
    for (s, e) in [
        ("invoices", "Invoice"),
        ("payments", "Payment"),
        ("customers", "Customer"),
        ("vendors", "Vendor"),
    ] {
        assert_eq!(pks(&c, s).len(), emu.count(e), "{s}");
        assert_unique(&c, s);
    }
}

#[test]
fn server_errors_and_timeouts_are_retried() {
    let emu = emulator(Counts::default());
    emu.inject(FaultSpec::next(FaultKind::Status(503), 2));
    emu.inject(FaultSpec::next(FaultKind::Status(500), 1).matching("FROM Customer"));
    emu.inject(
        FaultSpec::next(FaultKind::Slow(Duration::from_secs(3)), 1)
            .matching("FROM Invoice")
            .skip(1),
    );
    let cfg = config(&emu, json!({"request_timeout_secs": 1}));
    let (r, c) = read(&request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r.expect("recovers");
    assert_eq!(pks(&c, "invoices").len(), emu.count("Invoice"));
    assert_eq!(pks(&c, "customers").len(), emu.count("Customer"));
    assert_unique(&c, "invoices");
    assert!(
        c.logs.iter().any(|l| l.contains("timed out")),
        "the slow response timed out"
    );
    // Each fault fired as many times as injected, and every request it hit was answered
    // later: it was retried, not skipped.
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
                "{kind:?} on {request} was not retried"
            );
        }
    }
    assert!(stats.injected(&FaultKind::Status(500))[0].contains("FROM Customer"));
    assert!(stats.injected(&FaultKind::Slow(Duration::from_secs(3)))[0].contains("FROM Invoice"));
}

#[test]
fn malformed_json_is_a_data_error_naming_stream_and_position() {
    let emu = emulator(Counts::default());
    emu.inject(
        FaultSpec::next(FaultKind::MalformedJson, u32::MAX)
            .matching("FROM Invoice")
            .skip(1),
    );
    let cfg = config(&emu, json!({}));
    let (r, c) = read(&request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    let e = r.expect_err("malformed");
    assert_eq!(e.kind, ErrorKind::Data);
    // The bad page is the second: it starts at the second of the 25th invoice (page
    // size 25) in LastUpdatedTime order, and the message names exactly that.
    let mut invoices: Vec<Value> = emu
        .ids("Invoice")
        .iter()
        .map(|id| emu.object("Invoice", id).expect("invoice"))
        .collect();
    invoices.sort_by_key(|v| {
        (
            chrono::DateTime::parse_from_rfc3339(
                v["MetaData"]["LastUpdatedTime"].as_str().expect("time"),
            )
            .expect("rfc3339"),
            v["Id"]
                .as_str()
                .expect("id")
                .parse::<u64>()
                .expect("numeric"),
        )
    });
    let at = invoices[24]["MetaData"]["LastUpdatedTime"]
        .as_str()
        .expect("time")
        .to_string();
    let position = format!("query invoices at STARTPOSITION 1 with LastUpdatedTime >= {at}");
    assert!(
        e.message
            .contains(&format!("stream invoices at {position}:")),
        "{} (expected the position {position})",
        e.message
    );
    let hit = emu.stats();
    let hit = hit.injected(&FaultKind::MalformedJson);
    assert_eq!(hit.len(), 1, "one page was malformed: {hit:?}");
    assert!(hit[0].contains(&format!("'{at}'")), "{}", hit[0]);
    match c.status.get("invoices") {
        Some(StreamStatus::Incomplete { error }) => assert_eq!(error.kind, ErrorKind::Data),
        other => panic!("invoices status {other:?}"),
    }
    // The first page was checkpointed; the other stream completed.
    assert_eq!(pks(&c, "invoices").len(), 25);
    assert!(c.state.contains_key("invoices"));
    assert!(matches!(
        c.status.get("customers"),
        Some(StreamStatus::Complete)
    ));
}

#[test]
fn secrets_never_appear_in_logs_or_errors() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({"page_size": 15}));
    emu.expire_access_tokens_after(3);
    let (r1, c1) = read(&request(
        &cfg,
        &["invoices", "customers"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("sync");
    rotate(&mut cfg, &c1);
    emu.revoke_refresh_token();
    emu.expire_access_tokens();
    let (r2, c2) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c1.state,
    ));
    let e = r2.expect_err("revoked");
    let mut text = format!("{e} {e:?}");
    for c in [&c1, &c2] {
        text.push_str(&c.logs.join("\n"));
        text.push_str(&format!("{:?}", c.status));
    }
    let parsed = tributary_quickbooks::config::Config::from_value(cfg.clone()).expect("config");
    text.push_str(&format!("{parsed:?}"));
    let mut secrets = emu.issued_secrets();
    secrets.push(emu.client_secret().to_string());
    assert!(secrets.len() >= 4);
    for s in secrets {
        assert!(!text.contains(&s), "secret leaked");
    }
}

#[test]
fn limit_window_and_client_filter() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({"page_size": 10}));
    let mut req = request(&cfg, &["invoices"], SyncMode::Incremental, &BTreeMap::new());
    req.window.limit = Some(17);
    let (r1, c1) = read(&req);
    r1.expect("limited run");
    rotate(&mut cfg, &c1);
    assert_eq!(pks(&c1, "invoices").len(), 17);
    // The rest follows exactly.
    let (r2, c2) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c1.state,
    ));
    r2.expect("rest");
    rotate(&mut cfg, &c2);
    let all: BTreeSet<String> = pks(&c1, "invoices")
        .into_iter()
        .chain(pks(&c2, "invoices"))
        .collect();
    assert_eq!(all.len(), emu.count("Invoice"));
    assert_eq!(
        pks(&c1, "invoices").len() + pks(&c2, "invoices").len(),
        emu.count("Invoice")
    );

    // One client's invoices and customer record.
    let invoice = emu
        .object("Invoice", &emu.ids("Invoice")[0])
        .expect("invoice");
    let customer = invoice["CustomerRef"]["value"]
        .as_str()
        .expect("ref")
        .to_string();
    let mut req = request(
        &cfg,
        &["invoices", "customers", "transaction_list"],
        SyncMode::FullRefresh,
        &BTreeMap::new(),
    );
    req.window.clients = vec![customer.clone()];
    let (r3, c3) = read(&req);
    r3.expect("client run");
    rotate(&mut cfg, &c3);
    // Every matching row came back, and nothing else.
    let of_customer = |entity: &str| -> BTreeSet<String> {
        emu.ids(entity)
            .into_iter()
            .filter(|id| {
                emu.object(entity, id).expect("object")["CustomerRef"]["value"] == json!(customer)
            })
            .collect()
    };
    let want = of_customer("Invoice");
    assert!(!want.is_empty());
    assert_eq!(
        pks(&c3, "invoices").into_iter().collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(pks(&c3, "customers"), vec![customer.clone()]);
    let want_report: BTreeSet<String> = TRANSACTIONS.iter().flat_map(|e| of_customer(e)).collect();
    let got_report: BTreeSet<String> = c3.records["transaction_list"]
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.data).expect("json");
            assert_eq!(v["name_id"], json!(customer));
            v["txn_type_id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(got_report, want_report);
    assert!(
        !c3.snapshots.contains_key("invoices"),
        "no reconciliation under a client filter"
    );

    // A TxnDate window: exactly the invoices dated inside it.
    let mut req = request(&cfg, &["invoices"], SyncMode::FullRefresh, &BTreeMap::new());
    let start = Utc::now() - chrono::Duration::days(60);
    req.window.start = Some(start);
    let (r4, c4) = read(&req);
    r4.expect("window run");
    let from = start.date_naive().format("%Y-%m-%d").to_string();
    let want: BTreeSet<String> = emu
        .ids("Invoice")
        .into_iter()
        .filter(|id| {
            emu.object("Invoice", id).expect("invoice")["TxnDate"]
                .as_str()
                .expect("date")
                >= from.as_str()
        })
        .collect();
    assert!(!want.is_empty() && want.len() < emu.count("Invoice"));
    assert_eq!(
        pks(&c4, "invoices").into_iter().collect::<BTreeSet<_>>(),
        want
    );
}

#[test]
fn a_state_without_complete_at_reconciles_then_cdc_takes_over() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({"page_size": 30}));
    let (r1, c1) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("first run");
    rotate(&mut cfg, &c1);
    // A state as versions before `complete_at` wrote it: the position only.
    let mut old = c1.state.clone();
    let inv = old.get_mut("invoices").expect("state");
    inv.as_object_mut().expect("object").remove("complete_at");
    assert!(inv["last_updated"].is_string());
    let ids = emu.ids("Invoice");
    for id in &ids[..2] {
        assert!(emu.delete("Invoice", id));
    }
    let updated = &ids[5];
    assert!(emu.update("Invoice", updated));

    let (r2, c2) = read(&request(&cfg, &["invoices"], SyncMode::Incremental, &old));
    r2.expect("reconciliation");
    rotate(&mut cfg, &c2);
    assert!(c2.snapshot_completed("invoices"));
    // Every live object is listed once: as a key when the position covered it, as a
    // record when it changed after it; the deleted two are not listed (the host marks them).
    let keys: BTreeSet<String> = c2.keys["invoices"].iter().cloned().collect();
    let records: BTreeSet<String> = pks(&c2, "invoices").into_iter().collect();
    assert_eq!(records, BTreeSet::from([updated.clone()]));
    assert!(keys.is_disjoint(&records));
    let listed: BTreeSet<String> = keys.union(&records).cloned().collect();
    assert_eq!(listed, emu.ids("Invoice").into_iter().collect());
    assert!(c2.state["invoices"]["complete_at"].is_string());

    let (r3, c3) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c2.state,
    ));
    r3.expect("cdc");
    assert!(c3.logs.iter().any(|l| l.contains("through CDC")));
    // The overlap with the margin before the reconciliation may echo its deletions
    // (already marked); no live object is read again.
    assert!(c3.records["invoices"].iter().all(|r| r.deleted));
    assert!(pks(&c3, "invoices").iter().all(|id| ids[..2].contains(id)));
}

#[test]
fn a_reconciliation_stopped_at_the_limit_concludes_nothing() {
    let emu = emulator(Counts::default());
    let mut cfg = config(&emu, json!({"page_size": 10}));
    let mut req = request(&cfg, &["invoices"], SyncMode::Incremental, &BTreeMap::new());
    req.window.limit = Some(17);
    let (r1, c1) = read(&req);
    r1.expect("limited run");
    rotate(&mut cfg, &c1);
    assert_eq!(pks(&c1, "invoices").len(), 17);
    assert!(!c1.snapshot_completed("invoices"), "{:?}", c1.snapshots);
    assert!(
        c1.state["invoices"].get("complete_at").is_none(),
        "no complete read recorded"
    );
    let (r2, c2) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &c1.state,
    ));
    r2.expect("rest");
    assert!(c2.snapshot_completed("invoices"));
    assert_eq!(
        c2.keys["invoices"].len(),
        17,
        "the limited run's rows are keys now"
    );
    assert_eq!(pks(&c2, "invoices").len(), emu.count("Invoice") - 17);
}

#[test]
fn an_edit_between_two_pages_of_one_second_hides_no_object() {
    // A thousand objects share one second, more than a page: that second is paged by
    // offset. After its second page is answered, three objects of its first page are
    // edited; they leave the second and every later offset shifts by three. A single
    // pass would never read three live objects, and a reconciliation would mark them
    // deleted.
    let emu = emulator(Counts {
        invoices: 1000,
        ..Counts::invoices_only(0)
    });
    let cfg = config(&emu, json!({"page_size": 100}));
    emu.set_timestamps(Some("Invoice"), emu.now() - chrono::Duration::days(60));
    let mut ids = emu.ids("Invoice");
    ids.sort_by_key(|id| id.parse::<u64>().expect("numeric id"));
    emu.inject(
        FaultSpec::next(
            FaultKind::EditAfterAnswer {
                entity: "Invoice".into(),
                ids: ids[..3].to_vec(),
            },
            1,
        )
        .matching("LastUpdatedTime = ")
        .skip(1),
    );
    let (r, c) = read(&request(
        &cfg,
        &["invoices"],
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r.expect("read");
    assert_eq!(
        emu.stats()
            .served
            .iter()
            .filter(|s| s.injected.is_some())
            .count(),
        1,
        "the edit happened mid-scan"
    );
    assert!(c.snapshot_completed("invoices"));
    let seen: BTreeSet<String> = pks(&c, "invoices")
        .into_iter()
        .chain(c.keys.get("invoices").cloned().unwrap_or_default())
        .collect();
    let live: BTreeSet<String> = ids.iter().cloned().collect();
    let unseen: Vec<_> = live.difference(&seen).collect();
    assert!(
        unseen.is_empty(),
        "live objects the listing missed: {unseen:?}"
    );
    // The edited three arrive at their new version too.
    let records = &c.records["invoices"];
    for id in &ids[..3] {
        let newest = emu.object("Invoice", id).expect("live")["SyncToken"].clone();
        assert!(
            records.iter().any(|r| r.pk == *id
                && serde_json::from_str::<Value>(&r.data).expect("json")["SyncToken"] == newest),
            "invoice {id} at its edited version"
        );
    }
}

#[test]
fn deletion_stubs_without_a_time_are_still_deletions() {
    // The reference infers the stub's JSON from an XML capture; a server may leave out
    // its MetaData. Such a stub is a deletion all the same, emitted once.
    let emu = emulator(Counts {
        invoices: 40,
        ..Counts::invoices_only(0)
    });
    let mut cfg = config(&emu, json!({}));
    let streams = ["invoices", "deleted_objects"];
    let (r1, c1) = read(&request(
        &cfg,
        &streams,
        SyncMode::Incremental,
        &BTreeMap::new(),
    ));
    r1.expect("first run");
    rotate(&mut cfg, &c1);
    emu.advance_clock(chrono::Duration::minutes(10));
    let gone: Vec<String> = emu.ids("Invoice").into_iter().take(3).collect();
    for id in &gone {
        assert!(emu.delete("Invoice", id));
    }
    emu.set_bare_deletion_stubs(true);
    let (r2, c2) = read(&request(&cfg, &streams, SyncMode::Incremental, &c1.state));
    r2.expect("stubs without a time are read");
    rotate(&mut cfg, &c2);
    let deletions: BTreeSet<String> = c2.records["invoices"]
        .iter()
        .filter(|r| r.deleted)
        .map(|r| r.pk.clone())
        .collect();
    assert_eq!(deletions, gone.iter().cloned().collect());
    assert_eq!(pks(&c2, "deleted_objects").len(), gone.len());
    // Not again on the next run.
    emu.advance_clock(chrono::Duration::minutes(10));
    let (r3, c3) = read(&request(&cfg, &streams, SyncMode::Incremental, &c2.state));
    r3.expect("third run");
    assert!(
        pks(&c3, "invoices").is_empty(),
        "{:?}",
        pks(&c3, "invoices")
    );
    assert!(pks(&c3, "deleted_objects").is_empty());
}
