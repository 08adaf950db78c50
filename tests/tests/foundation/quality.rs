//! Data quality through the real binary: gaps, schema violations, duplicate keys and
//! orphans planted in a sample internal database and a warehouse, every figure checked
//! against one computed here independently, a breached limit exiting 3, and `tributary
//! quality` finding the same from the warehouse alone.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::Scratch;

/// The profile whose `employee_count` holds text (SQLite keeps it: the column's affinity
/// cannot convert it), where the discovered schema says integer.
const BAD_PROFILE: i64 = 3;
/// The profile given a SuperOps id no SuperOps client has.
const ORPHAN_PROFILE: i64 = 4;

/// A sample internal database of 20 clients with everything planted, an internal-db
/// source on it, and SuperOps/QuickBooks sources declared (disabled: their tables are
/// written here, into the warehouse, by hand). `quality` is the `[quality]` section.
fn setup(quality: &str) -> Scratch {
    let s = Scratch::new();
    let body = format!(
        "{}{quality}\n[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 7\nsample_data = {{ clients = 20, seed = 7 }}\n\n[sources.so]\nplugin = \"superops\"\nenabled = false\n\n[sources.qb]\nplugin = \"quickbooks\"\nenabled = false\n",
        s.header(),
        s.path("internal.db").display()
    );
    s.manifest(&body);
    let check = s.run(&["check", "internal"]);
    assert_eq!(check.code, 0, "{}", check.all());
    source(&s)
        .execute_batch(&format!(
            "-- Gaps: empty strings count as missing, like NULLs.
             UPDATE client_profiles SET industry = '' WHERE id IN (1, 2);
             UPDATE client_profiles SET employee_count = 'many' WHERE id = {BAD_PROFILE};
             UPDATE client_profiles SET superops_account_id = 'no-such-client' WHERE id = {ORPHAN_PROFILE};
             -- A table without its uniqueness constraint (a replica, a bad migration): the
             -- same id twice, at two cursor positions, so the connector emits it twice.
             CREATE TABLE s2 AS SELECT * FROM satisfaction_scores;
             DROP TABLE satisfaction_scores;
             ALTER TABLE s2 RENAME TO satisfaction_scores;
             INSERT INTO satisfaction_scores SELECT * FROM satisfaction_scores WHERE id = 1;
             UPDATE satisfaction_scores SET updated_at = '2026-06-01T00:00:00.000000Z'
                 WHERE rowid = (SELECT max(rowid) FROM satisfaction_scores);"
        ))
        .expect("plant");
    s
}

fn source(s: &Scratch) -> rusqlite::Connection {
    rusqlite::Connection::open(s.path("internal.db")).expect("source db")
}

/// Field → populated rows of `client_profiles`, counted in the source database, and the
/// row count: populated = not NULL and not ''.
fn profile_fill(s: &Scratch) -> (BTreeMap<String, u64>, u64) {
    let src = source(s);
    let columns: Vec<String> = src
        .prepare("SELECT name FROM pragma_table_info('client_profiles')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let fill = columns
        .into_iter()
        .filter(|c| c != "deleted_at")
        .map(|c| {
            let n: i64 = src
                .query_row(
                    &format!(
                        "SELECT count(*) FROM client_profiles WHERE \"{c}\" IS NOT NULL AND \"{c}\" <> ''"
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (c, n as u64)
        })
        .collect();
    let rows: i64 = src
        .query_row("SELECT count(*) FROM client_profiles", [], |r| r.get(0))
        .unwrap();
    (fill, rows as u64)
}

/// The SuperOps and QuickBooks ids of the (unplanted) profiles.
fn profile_ids(s: &Scratch) -> (Vec<String>, Vec<String>) {
    let src = source(s);
    let ids = |col: &str| -> Vec<String> {
        src.prepare(&format!(
            "SELECT {col} FROM client_profiles WHERE {col} IS NOT NULL AND {col} <> 'no-such-client' ORDER BY id"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    (ids("superops_account_id"), ids("quickbooks_customer_id"))
}

/// Writes SuperOps and QuickBooks rows into the warehouse as the destination would:
/// a client and a customer for every profile id, tickets and invoices for the first two,
/// plus the orphans. Returns the expected gaps per check.
fn plant_warehouse(s: &Scratch) -> BTreeMap<&'static str, u64> {
    let (so_ids, qb_ids) = profile_ids(s);
    let wh = s.warehouse();
    let table = |name: &str| {
        wh.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{name}\" (
                _pk TEXT PRIMARY KEY NOT NULL, _source TEXT NOT NULL, _stream TEXT NOT NULL,
                _cursor TEXT, _extracted_at TEXT NOT NULL, _deleted INTEGER NOT NULL DEFAULT 0,
                _violations TEXT, data TEXT NOT NULL) WITHOUT ROWID"
        ))
        .unwrap();
    };
    let row = |name: &str, pk: &str, deleted: bool, data: Value| {
        wh.execute(
            &format!(
                "INSERT INTO \"{name}\" (_pk, _source, _stream, _cursor, _extracted_at, _deleted, data)
                 VALUES (?1, 'x', 'x', '2026-01-01T00:00:00Z', 'now', ?2, ?3)"
            ),
            rusqlite::params![pk, deleted, data.to_string()],
        )
        .unwrap();
    };
    for t in [
        "so__clients",
        "so__tickets",
        "qb__customers",
        "qb__invoices",
    ] {
        table(t);
    }
    for id in &so_ids {
        row(
            "so__clients",
            id,
            false,
            serde_json::json!({ "accountId": id }),
        );
    }
    for id in &qb_ids {
        row("qb__customers", id, false, serde_json::json!({ "Id": id }));
    }
    // SuperOps sends a ticket's accountId as a bare number.
    for (i, id) in so_ids.iter().take(2).enumerate() {
        let n: i64 = id.parse().expect("numeric SuperOps id");
        row(
            "so__tickets",
            &format!("t{i}"),
            false,
            serde_json::json!({ "client": { "accountId": n } }),
        );
    }
    row(
        "so__tickets",
        "t-orphan",
        false,
        serde_json::json!({ "client": { "accountId": 999_999 } }),
    );
    row(
        "so__tickets",
        "t-gone",
        true,
        serde_json::json!({ "client": { "accountId": 999_998 } }),
    );
    row(
        "so__tickets",
        "t-none",
        false,
        serde_json::json!({ "client": null }),
    );
    for (i, id) in qb_ids.iter().take(2).enumerate() {
        row(
            "qb__invoices",
            &format!("i{i}"),
            false,
            serde_json::json!({ "CustomerRef": { "value": id } }),
        );
    }
    row(
        "qb__invoices",
        "i-orphan1",
        false,
        serde_json::json!({ "CustomerRef": { "value": "77777" } }),
    );
    row(
        "qb__invoices",
        "i-orphan2",
        false,
        serde_json::json!({ "CustomerRef": { "value": "77778" } }),
    );
    [
        (
            "client profiles whose SuperOps id matches no SuperOps client",
            1,
        ),
        (
            "client profiles whose QuickBooks id matches no QuickBooks customer",
            0,
        ),
        ("SuperOps tickets whose client matches no client profile", 1),
        (
            "QuickBooks invoices whose customer matches no client profile",
            2,
        ),
    ]
    .into_iter()
    .collect()
}

fn read_json(s: &Scratch, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(s.path(name)).expect("report written")).expect("JSON")
}

fn stream<'a>(quality: &'a Value, name: &str) -> &'a Value {
    quality["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == name))
        .unwrap_or_else(|| panic!("no stream {name} in {quality}"))
}

fn gaps(quality: &Value) -> BTreeMap<String, u64> {
    quality["referential"]
        .as_array()
        .expect("referential checks")
        .iter()
        .map(|g| {
            (
                g["check"].as_str().unwrap_or("").to_string(),
                g["gaps"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The completeness figures of `client_profiles` match the ones counted in the source.
fn assert_profile_completeness(s: &Scratch, profiles: &Value) {
    let (fill, rows) = profile_fill(s);
    assert_eq!(profiles["records"], rows);
    let fields = profiles["fields"].as_object().expect("fields");
    assert_eq!(
        fields.keys().collect::<BTreeSet<_>>(),
        fill.keys().collect::<BTreeSet<_>>(),
        "one figure per column"
    );
    for (field, n) in &fill {
        let got = fields[field].as_f64().expect("share");
        assert!(
            (got - *n as f64 / rows as f64).abs() < 1e-9,
            "{field}: {got} vs {n}/{rows}"
        );
    }
    let overall = fill.values().sum::<u64>() as f64 / (rows * fill.len() as u64) as f64;
    let got = profiles["completeness"].as_f64().expect("overall");
    assert!((got - overall).abs() < 1e-9, "overall {got} vs {overall}");
    assert!(got < 1.0, "gaps were planted");
    assert!(fields["industry"].as_f64().expect("share") < 1.0);
}

#[test]
fn run_and_warehouse_report_planted_gaps_violations_duplicates_and_orphans() {
    let s = setup("");
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let q = &read_json(&s, "report.json")["quality"];
    assert_eq!(q["measured_from"], "run");

    let profiles = stream(q, "client_profiles");
    assert_profile_completeness(&s, profiles);
    assert_eq!(profiles["violations"], 1, "{profiles}");
    let sample = &profiles["violation_samples"][0];
    assert_eq!(sample["pk"], BAD_PROFILE.to_string());
    assert_eq!(sample["path"], "/employee_count");
    assert!(
        sample["message"].as_str().unwrap_or("").contains("integer"),
        "{sample}"
    );
    assert_eq!(profiles["duplicates"], 0);
    assert_eq!(
        profiles["cursor_regressions"],
        Value::Null,
        "a first run has no watermark"
    );
    let newest: String = source(&s)
        .query_row("SELECT max(updated_at) FROM client_profiles", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(profiles["newest_cursor"], newest);
    assert!(profiles["freshness_seconds"].as_i64().is_some());

    let scores = stream(q, "satisfaction_scores");
    assert_eq!(scores["duplicates"], 1, "{scores}");
    assert_eq!(scores["violations"], 0);
    for name in ["service_history", "communication_engagement", "contracts"] {
        assert_eq!(stream(q, name)["duplicates"], 0, "{name}");
        assert_eq!(stream(q, name)["violations"], 0, "{name}");
    }

    // The record still landed, flagged; the clean ones are not.
    let wh = s.warehouse();
    let flagged: Vec<(String, String)> = wh
        .prepare(
            "SELECT _pk, _violations FROM internal__client_profiles WHERE _violations IS NOT NULL",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].0, BAD_PROFILE.to_string());
    let flags: Value = serde_json::from_str(&flagged[0].1).expect("JSON array");
    assert_eq!(flags[0]["path"], "/employee_count");
    assert!(run.stdout.contains("quality (run)"), "{}", run.stdout);

    // Orphans: SuperOps and QuickBooks tables written into the warehouse.
    let expected = plant_warehouse(&s);
    drop(wh);

    // An incremental run reads nothing new and still sees every reference.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.total(), 0, "nothing new: {report:?}");
    let q = &read_json(&s, "report.json")["quality"];
    let found = gaps(q);
    for (check, n) in &expected {
        assert_eq!(found.get(*check), Some(n), "{check}: {found:?}");
    }
    assert_eq!(
        stream(q, "client_profiles")["cursor_regressions"],
        0,
        "an incremental run measures regressions"
    );
    assert_eq!(stream(q, "client_profiles")["newest_cursor"], newest);
    assert!(
        run.stdout.contains("referential: 2 of 4 qb.invoices rows"),
        "{}",
        run.stdout
    );

    // The warehouse alone: the same figures, and duplicates not applicable.
    let out = s.run(&["quality", "--json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let w: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(w["measured_from"], "warehouse");
    let profiles = stream(&w, "client_profiles");
    assert_profile_completeness(&s, profiles);
    assert_eq!(profiles["violations"], 1);
    assert_eq!(
        profiles["violation_samples"][0]["pk"],
        BAD_PROFILE.to_string()
    );
    assert_eq!(profiles["violation_samples"][0]["path"], "/employee_count");
    assert_eq!(
        profiles["duplicates"],
        Value::Null,
        "one row per key: not applicable"
    );
    assert_eq!(profiles["newest_cursor"], newest);
    // The duplicate landed as one row.
    assert_eq!(stream(&w, "satisfaction_scores")["duplicates"], Value::Null);
    let found = gaps(&w);
    for (check, n) in &expected {
        assert_eq!(found.get(*check), Some(n), "{check}: {found:?}");
    }
    let table = s.run(&["quality", "--source", "internal"]);
    assert_eq!(table.code, 0, "{}", table.all());
    assert!(
        table.stdout.contains("quality (warehouse)"),
        "{}",
        table.stdout
    );
    assert!(
        !table.stdout.contains("│ so "),
        "--source internal: {}",
        table.stdout
    );
}

#[test]
fn a_breached_limit_exits_3_naming_stream_and_field() {
    let s = setup(
        "[quality]\nmax_violations = 0\n\n[quality.streams.\"internal.client_profiles\"]\nfields = { industry = 1.0 }\n\n[quality.streams.\"internal.satisfaction_scores\"]\nmax_duplicates = 0\n",
    );
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        report.all_complete(),
        "the data landed all the same: {report:?}"
    );
    let err = &run.stderr;
    assert!(
        err.contains("quality breach: stream internal.client_profiles, field employee_count"),
        "{err}"
    );
    assert!(
        err.contains("quality breach: stream internal.client_profiles, field industry"),
        "{err}"
    );
    assert!(
        err.contains("stream internal.satisfaction_scores: 1 duplicate"),
        "{err}"
    );
    let breaches = read_json(&s, "report.json")["quality"]["breaches"]
        .as_array()
        .expect("breaches")
        .len();
    assert_eq!(breaches, 3);

    // The warehouse still breaks the violation and field limits (duplicates cannot be
    // seen there).
    let out = s.run(&["quality"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("field employee_count"), "{}", out.all());
    assert!(!out.stderr.contains("duplicate"), "{}", out.all());

    // Limits the data meets: exit 0.
    let relaxed = std::fs::read_to_string(s.path("connectors.toml"))
        .expect("manifest")
        .replace("max_violations = 0", "max_violations = 1")
        .replace("industry = 1.0", "industry = 0.5")
        .replace("max_duplicates = 0", "max_duplicates = 1");
    s.manifest(&relaxed);
    let out = s.run(&["quality"]);
    assert_eq!(out.code, 0, "{}", out.all());
}
