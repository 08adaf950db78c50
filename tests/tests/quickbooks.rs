//! End-to-end tests of the QuickBooks connector (issue 3): the real `tributary` binary
//! loads the built `libtributary_quickbooks.so` and syncs the QuickBooks emulator into
//! SQLite, across runs, through token rotation and failures.

mod common;

use common::{count, Run, Scratch};
use tributary_sandbox::quickbooks::{Counts, Emulator, EmulatorConfig, FaultKind, FaultSpec};

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
    Emulator::start(EmulatorConfig {
        counts: Counts::default(),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
}

/// A scratch directory whose manifest has one QuickBooks source `qbo` on `emu`.
fn setup(emu: &Emulator, streams: Option<&[&str]>) -> Scratch {
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
        "{}[sources.qbo]\nplugin = \"quickbooks\"\n{streams}\n[sources.qbo.config]\nrealm_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\npage_size = 40\nrequests_per_minute = 0\nrequests_per_second = 0\nretry_after_default_secs = 1\nbackoff_initial_ms = 10\nbackoff_max_ms = 100\n",
        s.header(),
        emu.realm_id(),
        emu.client_id(),
        emu.client_secret(),
        emu.initial_refresh_token(),
        emu.base_url(),
        emu.token_url()
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
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["qbo"]["refresh_token"].as_str().map(str::to_string)
}

#[test]
fn full_then_incremental_sync_with_rotated_tokens() {
    let emu = emulator();
    let s = setup(&emu, None);
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
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
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("qbo.invoices"),
        7,
        "3 created, 2 updated, 2 deleted"
    );
    assert_eq!(report.records("qbo.customers"), 1);
    assert_eq!(report.records("qbo.deleted_objects"), 2);
    assert_eq!(report.records("qbo.payments"), 0);
    let db = s.warehouse();
    assert_eq!(
        count(&db, "qbo__invoices") as usize,
        emu.count("Invoice") + 2,
        "deleted rows are kept, marked"
    );
    let deleted: i64 = db
        .query_row(
            "SELECT count(*) FROM qbo__invoices WHERE _deleted = 1",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(deleted, 2);
    for id in &created {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM qbo__invoices WHERE _pk = ?1 AND _deleted = 0",
                [id],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(n, 1);
    }
    assert_no_secrets(&emu, &run);
}

#[test]
fn token_expiry_mid_sync_and_a_restart_after_rotation() {
    let emu = emulator();
    let s = setup(&emu, Some(&["invoices", "customers"]));
    emu.expire_access_tokens_after(3);
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("qbo.invoices") as usize,
        emu.count("Invoice")
    );
    assert!(
        emu.stats().auth_failures >= 1,
        "the token did expire mid-sync"
    );
    assert_eq!(
        stored_refresh_token(&s).as_deref(),
        Some(emu.current_refresh_token().as_str())
    );
    // As if the host had been killed after the rotation: a new process, the stored token.
    emu.expire_access_tokens();
    let (run, _) = s.sync(&["--full-refresh"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_no_secrets(&emu, &run);
}

#[test]
fn invalid_grant_fails_clearly_and_keeps_state() {
    let emu = emulator();
    let s = setup(&emu, Some(&["invoices"]));
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let state_before: String = s
        .warehouse()
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'qbo' AND stream = 'invoices'",
            [],
            |r| r.get(0),
        )
        .expect("state");
    emu.revoke_refresh_token();
    emu.expire_access_tokens();
    let (run, _) = s.sync(&[]);
    assert_ne!(run.code, 0);
    assert!(
        run.all().contains("invalid_grant") && run.all().contains("reconnect"),
        "{}",
        run.all()
    );
    let state_after: String = s
        .warehouse()
        .query_row(
            "SELECT state FROM _tributary_state WHERE source = 'qbo' AND stream = 'invoices'",
            [],
            |r| r.get(0),
        )
        .expect("state");
    assert_eq!(state_before, state_after);
    assert_eq!(
        count(&s.warehouse(), "qbo__invoices") as usize,
        emu.count("Invoice")
    );
    assert_no_secrets(&emu, &run);
}

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
    let out = run.all();
    assert!(
        out.contains("invoices") && out.contains("STARTPOSITION"),
        "{out}"
    );
    assert_eq!(report.status("qbo.customers"), "complete");
    assert_eq!(
        report.records("qbo.customers") as usize,
        emu.count("Customer")
    );
    // The page before the bad one is committed; after the fault clears, the rest follows.
    emu.clear_faults();
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        count(&s.warehouse(), "qbo__invoices") as usize,
        emu.count("Invoice")
    );
    assert_no_secrets(&emu, &run);
}
