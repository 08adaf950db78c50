//! The whole product as a new user meets it: the shipped manifest with its `[sandbox]`
//! (three sources, one MSP), `--client` across the sources, and `client_360`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tributary_internal_db::sample::{roster, RosterClient};

use crate::common::{target_dir, workspace, Scratch};

/// The shipped `connectors.toml`, pointed at the debug plugins, with `clients` sample
/// clients (as shipped when `None`) and the warehouse where `Scratch::warehouse` looks.
pub(crate) fn shipped(s: &Scratch, clients: Option<u32>) -> String {
    let text = std::fs::read_to_string(workspace().join("connectors.toml")).expect("shipped");
    let mut text = text
        .replace(
            "plugin_dir = \"target/release\"",
            &format!("plugin_dir = \"{}\"", target_dir().display()),
        )
        .replace("path = \"data/warehouse.db\"", "path = \"warehouse.db\"");
    if let Some(n) = clients {
        text = text.replace("clients = 200 ", &format!("clients = {n} "));
    }
    assert!(
        text.contains("[sandbox]"),
        "the shipped manifest starts the sandbox"
    );
    s.manifest(&text);
    text
}

/// Every live row of `table` as (key, data).
fn rows(conn: &rusqlite::Connection, table: &str) -> BTreeMap<String, Value> {
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .expect("schema");
    if exists == 0 {
        return BTreeMap::new(); // a stream that brought nothing has no table yet
    }
    let mut stmt = conn
        .prepare(&format!(
            "SELECT _pk, data FROM \"{table}\" WHERE _deleted = 0"
        ))
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    let out = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
        .map(|r| {
            let (k, v) = r.expect("row");
            (k, serde_json::from_str(&v).expect("json"))
        })
        .collect();
    out
}

/// `v` at a `/`-separated JSON pointer, as text (numbers as written).
fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn num(v: &Value, pointer: &str) -> f64 {
    match v.pointer(pointer) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

const INTERNAL_CHILDREN: [&str; 4] = [
    "service_history",
    "satisfaction_scores",
    "communication_engagement",
    "contracts",
];

#[test]
fn the_shipped_manifest_syncs_all_three_sources_of_one_msp_and_a_second_run_moves_only_changes() {
    let s = Scratch::new();
    shipped(&s, None);
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    for source in ["internal", "superops", "quickbooks"] {
        let records: u64 = report
            .streams
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{source}.")))
            .map(|(_, v)| v.0)
            .sum();
        assert!(records > 0, "{source} extracted nothing: {report:?}");
    }
    assert!(run.stdout.contains("client_360"), "{}", run.stdout);

    // One MSP: every profile's ids exist in the emulators, and (but for a few clients of
    // their own) the emulators' clients are the profiles.
    let wh = s.warehouse();
    let profiles = rows(&wh, "internal__client_profiles");
    assert_eq!(profiles.len(), 200);
    let so_clients = rows(&wh, "superops__clients");
    let qb_customers = rows(&wh, "quickbooks__customers");
    let so_ids: BTreeSet<String> = so_clients
        .values()
        .filter_map(|c| text(c, "/accountId"))
        .collect();
    let qb_ids: BTreeSet<String> = qb_customers
        .values()
        .filter_map(|c| text(c, "/Id"))
        .collect();
    let mut mapped_so = BTreeSet::new();
    let mut mapped_qb = BTreeSet::new();
    for p in profiles.values() {
        if let Some(id) = text(p, "/superops_account_id") {
            assert!(so_ids.contains(&id), "profile {p} has no SuperOps client");
            mapped_so.insert(id);
        }
        if let Some(id) = text(p, "/quickbooks_customer_id") {
            assert!(
                qb_ids.contains(&id),
                "profile {p} has no QuickBooks customer"
            );
            mapped_qb.insert(id);
        }
    }
    let unmapped_so = so_ids.difference(&mapped_so).count();
    let unmapped_qb = qb_ids.difference(&mapped_qb).count();
    assert!(
        (1..=10).contains(&unmapped_so),
        "{unmapped_so} SuperOps clients without a profile"
    );
    assert!(
        (1..=10).contains(&unmapped_qb),
        "{unmapped_qb} QuickBooks customers without a profile"
    );
    // Their activity belongs to the profiles, mostly.
    let tickets = rows(&wh, "superops__tickets");
    let of_profiles = tickets
        .values()
        .filter(|t| text(t, "/client/accountId").is_some_and(|a| mapped_so.contains(&a)))
        .count();
    assert!(
        of_profiles * 10 >= tickets.len() * 9,
        "{of_profiles} of {}",
        tickets.len()
    );
    let invoices = rows(&wh, "quickbooks__invoices");
    let of_profiles = invoices
        .values()
        .filter(|i| text(i, "/CustomerRef/value").is_some_and(|c| mapped_qb.contains(&c)))
        .count();
    assert!(
        of_profiles * 10 >= invoices.len() * 9,
        "{of_profiles} of {}",
        invoices.len()
    );
    drop(wh);

    // `tributary quality` measures the same fields from the warehouse alone, declared
    // fields no record fills included (QuickBooks leaves absent fields out entirely).
    let run_report: Value =
        serde_json::from_slice(&std::fs::read(s.path("report.json")).expect("report"))
            .expect("JSON");
    let out = s.run(&["quality", "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let warehouse: Value = serde_json::from_str(&out.stdout).expect("quality --json");
    let name = |st: &Value| {
        format!(
            "{}.{}",
            text(st, "/source").unwrap_or_default(),
            text(st, "/stream").unwrap_or_default()
        )
    };
    let fields = |q: &Value| -> BTreeMap<String, BTreeSet<String>> {
        q["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .map(|st| {
                (
                    name(st),
                    st["fields"]
                        .as_object()
                        .map(|f| f.keys().cloned().collect())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    let (from_run, from_warehouse) = (fields(&run_report["quality"]), fields(&warehouse));
    // A stream that read nothing has no table: the warehouse cannot report it.
    assert!(from_warehouse.len() >= 10, "{from_warehouse:?}");
    let mut unfilled = 0;
    for (stream, declared) in &from_warehouse {
        assert_eq!(from_run.get(stream), Some(declared), "{stream}");
        unfilled += warehouse["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|st| name(st) == *stream)
            .flat_map(|st| st["fields"].as_object().into_iter().flatten())
            .filter(|(_, share)| share.as_f64() == Some(0.0))
            .count();
    }
    assert!(unfilled > 0, "some declared field is filled by no record");

    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    for incremental in [
        "internal.client_profiles",
        "internal.service_history",
        "superops.tickets",
        "quickbooks.invoices",
        "quickbooks.payments",
        "quickbooks.transaction_list",
    ] {
        assert_eq!(report.records(incremental), 0, "{incremental} moved again");
    }
}

/// A client of a sample MSP of `n` clients known to all three systems, with a name no
/// other client has.
fn everywhere(n: u32) -> RosterClient {
    let all = roster(42, n);
    all.iter()
        .find(|c| {
            c.superops_account_id.is_some()
                && c.quickbooks_customer_id.is_some()
                && all
                    .iter()
                    .filter(|o| {
                        o.company_name
                            .to_lowercase()
                            .contains(&c.company_name.to_lowercase())
                    })
                    .count()
                    == 1
        })
        .cloned()
        .expect("a client known everywhere")
}

/// Per table, the keys of the rows of `who`, in a warehouse.
fn rows_of(
    conn: &rusqlite::Connection,
    who: &RosterClient,
) -> BTreeMap<&'static str, BTreeSet<String>> {
    let id = who.id.to_string();
    let so = who.superops_account_id.clone().unwrap_or_default();
    let qb = who.quickbooks_customer_id.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    let pick = |table: &str, pointer: &str, want: &str| -> BTreeSet<String> {
        rows(conn, table)
            .into_iter()
            .filter(|(_, v)| text(v, pointer).as_deref() == Some(want))
            .map(|(k, _)| k)
            .collect()
    };
    out.insert(
        "internal__client_profiles",
        pick("internal__client_profiles", "/id", &id),
    );
    for t in INTERNAL_CHILDREN {
        let table: &'static str = Box::leak(format!("internal__{t}").into_boxed_str());
        out.insert(table, pick(table, "/client_id", &id));
    }
    out.insert(
        "superops__clients",
        pick("superops__clients", "/accountId", &so),
    );
    out.insert(
        "superops__tickets",
        pick("superops__tickets", "/client/accountId", &so),
    );
    out.insert(
        "quickbooks__customers",
        pick("quickbooks__customers", "/Id", &qb),
    );
    out.insert(
        "quickbooks__invoices",
        pick("quickbooks__invoices", "/CustomerRef/value", &qb),
    );
    out.insert(
        "quickbooks__payments",
        pick("quickbooks__payments", "/CustomerRef/value", &qb),
    );
    out
}

/// Every table's live keys.
fn all_keys(conn: &rusqlite::Connection) -> BTreeMap<String, BTreeSet<String>> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_%' ESCAPE '\\'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("name"))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let keys = rows(conn, &t).into_keys().collect();
            (t, keys)
        })
        .collect()
}

#[test]
fn a_client_run_extracts_exactly_that_client_from_every_source_and_a_plain_run_then_gets_everyone()
{
    let who = everywhere(40);
    let s = Scratch::new();
    shipped(&s, Some(40));
    let (run, report) = s.sync(&["--client", &who.company_name.to_uppercase()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    assert!(
        run.stdout
            .contains(&format!("client {} (id {})", who.company_name, who.id)),
        "{}",
        run.stdout
    );

    // Ground truth: a plain run of the same MSP into a warehouse of its own.
    let full = Scratch::new();
    shipped(&full, Some(40));
    let (run_full, _) = full.sync(&[]);
    assert_eq!(run_full.code, 0, "{}", run_full.all());
    let truth = rows_of(&full.warehouse(), &who);

    let wh = s.warehouse();
    let got = rows_of(&wh, &who);
    for (table, keys) in &truth {
        assert_eq!(got.get(table), Some(keys), "{table}: the client's rows");
        assert!(
            !keys.is_empty() || *table == "quickbooks__payments",
            "{table}: the client has rows"
        );
        // Nothing of any other client came along.
        let total = rows(&wh, table).len();
        assert_eq!(total, keys.len(), "{table}: other clients' rows came along");
    }
    // The internal rows are the sample database's own, counted there.
    let db = rusqlite::Connection::open(s.path("data/internal.db")).expect("sample db");
    for t in INTERNAL_CHILDREN {
        let n: i64 = db
            .query_row(
                &format!("SELECT count(*) FROM {t} WHERE client_id = ?1"),
                [who.id],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(got[&*format!("internal__{t}")].len() as i64, n, "{t}");
    }
    drop(wh);

    // The main position never moved: a plain run gets every other client's rows.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
    assert_eq!(all_keys(&s.warehouse()), all_keys(&full.warehouse()));
}

#[test]
fn client_360_matches_totals_computed_from_the_rows_and_ignores_deleted_rows() {
    let s = Scratch::new();
    shipped(&s, Some(30));
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    let view = {
        let mut stmt = wh
            .prepare("SELECT * FROM client_360")
            .expect("the view exists");
        let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let out: Vec<BTreeMap<String, rusqlite::types::Value>> = stmt
            .query_map([], |r| {
                Ok(names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        (
                            n.clone(),
                            r.get::<_, rusqlite::types::Value>(i).expect("value"),
                        )
                    })
                    .collect())
            })
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        out
    };
    assert_eq!(view.len(), 30, "one row per profile");
    let real = |row: &BTreeMap<String, rusqlite::types::Value>, col: &str| -> Option<f64> {
        match row.get(col) {
            Some(rusqlite::types::Value::Integer(n)) => Some(*n as f64),
            Some(rusqlite::types::Value::Real(x)) => Some(*x),
            Some(rusqlite::types::Value::Null) => None,
            other => panic!("{col}: {other:?}"),
        }
    };

    let profiles = rows(&wh, "internal__client_profiles");
    let tickets = rows(&wh, "superops__tickets");
    let worklogs = rows(&wh, "superops__worklog_entries");
    let invoices = rows(&wh, "quickbooks__invoices");
    let payments = rows(&wh, "quickbooks__payments");
    let mut expense_lines: Vec<Value> = Vec::new();
    for t in ["quickbooks__purchases", "quickbooks__bills"] {
        for v in rows(&wh, t).into_values() {
            expense_lines.extend(v["Line"].as_array().cloned().unwrap_or_default());
        }
    }
    let surveys = rows(&wh, "internal__satisfaction_scores");
    let contracts = rows(&wh, "internal__contracts");
    let close = |a: Option<f64>, b: f64, what: &str| {
        let a = a.unwrap_or_else(|| panic!("{what} is NULL"));
        assert!((a - b).abs() < 0.011, "{what}: view {a}, rows {b}");
    };
    let mut checked = 0;
    for row in &view {
        let id = match row.get("client_id") {
            Some(rusqlite::types::Value::Text(t)) => t.clone(),
            other => panic!("client_id {other:?}"),
        };
        let p = &profiles[&id];
        if let Some(so) = text(p, "/superops_account_id") {
            let mine: Vec<&Value> = tickets
                .values()
                .filter(|t| text(t, "/client/accountId").as_deref() == Some(&so))
                .collect();
            let resolved = mine
                .iter()
                .filter(|t| matches!(t["status"].as_str(), Some("Resolved" | "Closed")))
                .count();
            close(
                real(row, "resolved_tickets"),
                resolved as f64,
                "resolved_tickets",
            );
            close(
                real(row, "open_tickets"),
                (mine.len() - resolved) as f64,
                "open_tickets",
            );
            let ids: BTreeSet<String> = mine.iter().filter_map(|t| text(t, "/ticketId")).collect();
            let hours: f64 = worklogs
                .values()
                .filter(|w| text(w, "/workItem/module").as_deref() == Some("TICKET"))
                .filter(|w| text(w, "/workItem/workId").is_some_and(|id| ids.contains(&id)))
                .map(|w| num(w, "/qty"))
                .sum();
            close(real(row, "worklog_hours"), hours, "worklog_hours");
        } else {
            assert_eq!(real(row, "open_tickets"), None, "not in SuperOps: NULL");
        }
        if let Some(qb) = text(p, "/quickbooks_customer_id") {
            let of = |v: &Value| text(v, "/CustomerRef/value").as_deref() == Some(&qb);
            let invoiced: f64 = invoices
                .values()
                .filter(|v| of(v))
                .map(|v| num(v, "/TotalAmt"))
                .sum();
            let balance: f64 = invoices
                .values()
                .filter(|v| of(v))
                .map(|v| num(v, "/Balance"))
                .sum();
            let paid: f64 = payments
                .values()
                .filter(|v| of(v))
                .map(|v| num(v, "/TotalAmt"))
                .sum();
            let expenses: f64 = expense_lines
                .iter()
                .filter(|l| {
                    text(l, "/AccountBasedExpenseLineDetail/CustomerRef/value")
                        .or_else(|| text(l, "/ItemBasedExpenseLineDetail/CustomerRef/value"))
                        .as_deref()
                        == Some(&qb)
                })
                .map(|l| num(l, "/Amount"))
                .sum();
            close(real(row, "invoiced"), invoiced, "invoiced");
            close(real(row, "open_balance"), balance, "open_balance");
            close(real(row, "paid"), paid, "paid");
            close(real(row, "expenses"), expenses, "expenses");
        }
        let mine: Vec<&Value> = surveys
            .values()
            .filter(|v| text(v, "/client_id").as_deref() == Some(&id))
            .collect();
        if !mine.is_empty() {
            let avg = mine.iter().map(|v| num(v, "/overall")).sum::<f64>() / mine.len() as f64;
            close(real(row, "avg_satisfaction"), avg, "avg_satisfaction");
        }
        let value: f64 = contracts
            .values()
            .filter(|v| text(v, "/client_id").as_deref() == Some(&id))
            .filter(|v| v["status"] == "active")
            .map(|v| num(v, "/monthly_value"))
            .sum();
        close(
            real(row, "contract_monthly_value"),
            value,
            "contract_monthly_value",
        );
        checked += 1;
    }
    assert_eq!(checked, 30);

    // A row marked deleted stops counting at once.
    let (key, invoice) = invoices
        .iter()
        .find(|(_, v)| num(v, "/TotalAmt") > 0.0)
        .expect("an invoice");
    let customer = text(invoice, "/CustomerRef/value").expect("customer");
    let invoiced = |conn: &rusqlite::Connection| -> f64 {
        conn.query_row(
            "SELECT invoiced FROM client_360 WHERE quickbooks_customer_id = ?1",
            [&customer],
            |r| r.get(0),
        )
        .expect("invoiced")
    };
    let before = invoiced(&wh);
    wh.execute(
        "UPDATE quickbooks__invoices SET _deleted = 1 WHERE _pk = ?1",
        [key],
    )
    .expect("mark");
    close(
        Some(invoiced(&wh)),
        before - num(invoice, "/TotalAmt"),
        "after a deletion",
    );

    // `tributary clients` prints the same view.
    let id = match view[0].get("client_id") {
        Some(rusqlite::types::Value::Text(t)) => t.clone(),
        _ => unreachable!(),
    };
    let out = s.run(&["clients", "--client", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let printed: Vec<Value> = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0]["client_id"], Value::String(id));
}

#[test]
fn an_unknown_or_ambiguous_client_is_a_clear_error_and_writes_nothing() {
    let s = Scratch::new();
    shipped(&s, Some(40));
    let run = s.run(&["run", "--client", "Zebra Nonexistent Holdings"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("--client Zebra Nonexistent Holdings: no client"),
        "{}",
        run.stderr
    );

    // "Partners" is in many names: every candidate is listed with its id.
    let partners: Vec<RosterClient> = roster(42, 40)
        .into_iter()
        .filter(|c| c.company_name.to_lowercase().contains("partners"))
        .collect();
    assert!(partners.len() > 1);
    let run = s.run(&["run", "--client", "partners"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("ambiguous"), "{}", run.stderr);
    for c in &partners {
        assert!(
            run.stderr
                .contains(&format!("{} (id {})", c.company_name, c.id)),
            "{c:?} not listed: {}",
            run.stderr
        );
    }
    let written = s.path("warehouse.db").exists()
        && s.warehouse()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%\\_\\_%' ESCAPE '\\'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("schema")
            > 0;
    assert!(!written, "nothing is written");
}
