//! The PostgreSQL destination through the real binary, against the real service
//! (TRIBUTARY_TEST_POSTGRES_URL): the same run gives the same rows as SQLite, and a
//! `kill -9` mid-sync resumes to exactly the source. Each test writes a schema of its
//! own, dropped at the end, so tests run in parallel and re-run.

use std::collections::BTreeMap;

use sqlx::Connection;
use tributary_internal_db::sample::SampleSpec;

use crate::common::services::{service_url, unique_suffix};
use crate::common::Scratch;
use crate::deletions::{rt, Source};

/// A fresh schema on the test server, dropped at the end.
pub struct Schema {
    url: String,
    name: String,
}

impl Schema {
    pub fn new(test: &str) -> Option<Schema> {
        let url = service_url("TRIBUTARY_TEST_POSTGRES_URL")?;
        let name = format!("t_{test}_{}", unique_suffix());
        Some(Schema { url, name })
    }

    /// The `[destination]` block writing into this schema.
    pub fn destination(&self) -> String {
        format!(
            "[destination]\nkind = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\n\n",
            self.url, self.name
        )
    }

    fn try_query<T>(&self, sql: &str) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let sql = sql.replace("$schema", &format!("\"{}\"", self.name));
        rt().block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            sqlx::query_as(&sql).fetch_all(&mut conn).await
        })
    }

    pub fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every table's rows, as in [`sqlite_tables`].
    fn tables(&self) -> Tables {
        let names: Vec<(String,)> = self.query(&format!(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = '{}' AND table_type = 'BASE TABLE'
               AND table_name NOT LIKE '\\_tributary%' ORDER BY 1",
            self.name
        ));
        names
            .into_iter()
            .map(|(table,)| {
                let rows: Vec<(String, Option<String>, bool, String)> = self.query(&format!(
                    "SELECT _pk, _cursor, _deleted, data::text FROM $schema.\"{table}\""
                ));
                (table, rows_of(rows))
            })
            .collect()
    }

    /// The committed state of `source.stream` (none before the first run made the table).
    fn state(&self, source: &str, stream: &str) -> Option<serde_json::Value> {
        let rows: Vec<(String,)> = self.try_query(&format!(
            "SELECT state FROM $schema._tributary_state WHERE source = '{source}' AND stream = '{stream}'"
        )).ok()?;
        rows.first()
            .map(|(s,)| serde_json::from_str(s).expect("state is JSON"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        rt().block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await {
                let _ = sqlx::Executor::execute(&mut conn, sql.as_str()).await;
            }
        });
    }
}

/// A row: (_cursor, _deleted, data parsed).
type Row = (Option<String>, bool, serde_json::Value);
/// table → _pk → row.
type Tables = BTreeMap<String, BTreeMap<String, Row>>;

fn rows_of(rows: Vec<(String, Option<String>, bool, String)>) -> BTreeMap<String, Row> {
    rows.into_iter()
        .map(|(pk, cursor, deleted, data)| {
            let data = serde_json::from_str(&data).expect("data is JSON");
            (pk, (cursor, deleted, data))
        })
        .collect()
}

/// Every data table of the SQLite warehouse.
fn sqlite_tables(wh: &rusqlite::Connection) -> Tables {
    let mut stmt = wh
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_tributary%' ESCAPE '\\' ORDER BY 1")
        .expect("tables");
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("tables")
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|table| {
            let mut stmt = wh
                .prepare(&format!(
                    "SELECT _pk, _cursor, _deleted, data FROM \"{table}\""
                ))
                .expect("rows");
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .expect("rows")
                .map(Result::unwrap)
                .collect();
            (table, rows_of(rows))
        })
        .collect()
}

/// The internal-db source on `url`, reconciling keys on every run.
fn source_block(url: &str) -> String {
    format!(
        "[sources.ops]\nplugin = \"internal-db\"\n[sources.ops.config]\nurl = \"{url}\"\npage_size = 50\nreconcile_every = \"always\"\nsoft_delete = {{ service_history = \"deleted_at\", contracts = \"is_deleted\" }}\n"
    )
}

fn sync_ok(s: &Scratch) {
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(report.all_complete(), "{report:?}");
}

#[test]
fn postgres_sync_parity_with_sqlite_including_deletions() {
    let Some(pg) = Schema::new("parity") else {
        return;
    };
    let s = Scratch::new();
    let src = Source::sqlite(&s);
    src.generate(&SampleSpec::with_clients(20, 9));
    let sqlite = format!("{}{}", s.header(), source_block(&src.url));
    let header = s.header();
    let host = &header[..header.find("[destination]").expect("header")];
    let postgres = format!("{host}{}{}", pg.destination(), source_block(&src.url));

    // The same two runs into each: everything, then hard deletes (found by the
    // snapshot of keys), soft deletes and edits.
    for manifest in [&sqlite, &postgres] {
        s.manifest(manifest);
        sync_ok(&s);
    }
    let gone = src.ids("contracts")[..2].to_vec();
    src.delete("contracts", &gone);
    src.soft_delete("service_history", &src.ids("service_history")[..3]);
    src.touch("satisfaction_scores", &src.ids("satisfaction_scores")[..2]);
    for manifest in [&sqlite, &postgres] {
        s.manifest(manifest);
        sync_ok(&s);
    }

    let expected = sqlite_tables(&s.warehouse());
    let got = pg.tables();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &expected {
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(&got[table], rows, "{table}: identical rows");
    }
    let deleted = |t: &Tables| {
        t.values()
            .flat_map(|rows| rows.values())
            .filter(|r| r.1)
            .count()
    };
    assert_eq!(deleted(&got), 5, "2 hard and 3 soft deletes marked");

    // The client_360 view says the same in both, and quality reads PostgreSQL back.
    let view = |manifest: &str| -> serde_json::Value {
        s.manifest(manifest);
        let out = s.run(&["clients", "--json"]);
        assert_eq!(out.code, 0, "{}", out.all());
        serde_json::from_str(&out.stdout).expect("clients --json")
    };
    let from_sqlite = view(&sqlite);
    assert_eq!(
        from_sqlite.as_array().map(Vec::len),
        Some(20),
        "{from_sqlite}"
    );
    assert_eq!(view(&postgres), from_sqlite);
    let quality = s.run(&["quality", "--json"]);
    assert_eq!(quality.code, 0, "{}", quality.all());
    let report: serde_json::Value = serde_json::from_str(&quality.stdout).expect("quality --json");
    assert!(
        report.to_string().contains("client_profiles"),
        "quality measured the PostgreSQL tables: {report}"
    );
    s.manifest(&postgres);

    // `state show` and `state reset` on the same destination.
    let show = s.run(&["state", "show", "ops"]);
    assert_eq!(show.code, 0, "{}", show.all());
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert!(shown["ops"]["contracts"].is_object(), "{shown}");
    assert!(
        !show.all().contains(&pg.url),
        "never the URL: {}",
        show.all()
    );
    let reset = s.run(&["state", "reset", "ops.contracts"]);
    assert_eq!(reset.code, 0, "{}", reset.all());
    assert!(
        reset.stdout.contains("reset 1 stream state(s)"),
        "{}",
        reset.all()
    );
    assert_eq!(pg.state("ops", "contracts"), None);
    assert!(pg.state("ops", "service_history").is_some());
}

/// Every source row of service_history as (id, updated_at), ordered by id.
fn source_rows(src: &rusqlite::Connection) -> Vec<(String, String)> {
    let mut stmt = src
        .prepare("SELECT id, updated_at FROM service_history ORDER BY id")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

#[test]
fn postgres_kill_9_mid_sync_then_resume_exactly_once() {
    let Some(pg) = Schema::new("kill") else {
        return;
    };
    let destination = pg.destination();
    let (s, src) = crate::crash::setup(Some(&|_: &Scratch| destination.clone()));
    let state =
        crate::crash::kill_after_first_commit(&s, || pg.state("internal", "service_history"));
    let source = source_rows(&src);
    let total = source.len() as u64;
    let warehouse = || -> Vec<(String, Option<String>)> {
        pg.query("SELECT _pk, _cursor FROM $schema.internal__service_history ORDER BY _pk::bigint")
    };
    let after_kill = warehouse();
    assert!(
        (after_kill.len() as u64) < total,
        "killed mid-sync ({} of {total})",
        after_kill.len()
    );
    // The state committed at the kill never runs ahead of the data.
    let state = pg.state("internal", "service_history").unwrap_or(state);
    let covered = crate::crash::covered_by(&src, &state);
    assert!(!covered.is_empty(), "the kill landed after a commit");
    let present: std::collections::BTreeSet<&String> =
        after_kill.iter().map(|(pk, _)| pk).collect();
    assert!(
        covered.iter().all(|id| present.contains(id)),
        "every row the state covers is in the warehouse"
    );

    // The killed run's advisory lock died with it: the rerun is not refused, resumes
    // from the committed state and ends with every source row once, at its version.
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        report.records("internal.service_history"),
        total - covered.len() as u64,
        "the rerun resumed from the committed state"
    );
    let expected: Vec<(String, Option<String>)> = source
        .into_iter()
        .map(|(id, updated_at)| (id, Some(updated_at)))
        .collect();
    assert_eq!(warehouse(), expected, "no lost and no duplicated rows");
    let live: Vec<(i64,)> = pg.query(
        "SELECT count(*) FROM $schema.internal__service_history WHERE _deleted OR _raw IS NOT NULL",
    );
    assert_eq!(live, [(0,)]);
    let last = pg.state("internal", "service_history").expect("state");
    assert_eq!(
        crate::crash::covered_by(&src, &last).len() as u64,
        total,
        "the final state covers every row"
    );
}

/// client_360 over all three sources reads the same in PostgreSQL as in SQLite, whose
/// figures `product::client_360_matches_totals_computed_from_the_rows_and_ignores_deleted_rows`
/// checks against totals computed from the rows; and the warehouse keeps the schemas.
#[test]
fn postgres_client_360_over_three_sources_matches_sqlite() {
    let Some(pg) = Schema::new("c360") else {
        return;
    };
    let s = Scratch::new();
    let sqlite = crate::product::shipped(&s, Some(30));
    let block = "[destination]\nkind = \"sqlite\"";
    let at = sqlite.find(block).expect("the shipped destination");
    let end = at + sqlite[at..].find("\n\n").expect("end of the block");
    let postgres = format!("{}{}{}", &sqlite[..at], pg.destination(), &sqlite[end..]);

    let view = |manifest: &str| -> Vec<serde_json::Value> {
        s.manifest(manifest);
        let (run, report) = s.sync(&[]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(report.all_complete(), "{report:?}");
        let out = s.run(&["clients", "--json"]);
        assert_eq!(out.code, 0, "{}", out.all());
        serde_json::from_str(&out.stdout).expect("clients --json")
    };
    let from_sqlite = view(&sqlite);
    let from_postgres = view(&postgres);
    assert_eq!(from_sqlite.len(), 30);
    // Every source contributes: these are not all NULL.
    for column in [
        "open_tickets",
        "worklog_hours",
        "invoiced",
        "paid",
        "expenses",
        "avg_satisfaction",
        "contract_monthly_value",
    ] {
        assert!(
            from_sqlite
                .iter()
                .any(|r| r[column].as_f64().is_some_and(|x| x > 0.0)),
            "{column} is never positive"
        );
    }
    for (a, b) in from_sqlite.iter().zip(&from_postgres) {
        let (a, b) = (a.as_object().expect("row"), b.as_object().expect("row"));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (column, x) in a {
            let y = &b[column];
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() < 1e-6, "{column}: {x} vs {y}"),
                _ => assert_eq!(x, y, "{column}"),
            }
        }
    }
    let kept: Vec<(String, String)> =
        pg.query("SELECT source, stream FROM $schema._tributary_schemas ORDER BY 1, 2");
    assert!(
        kept.contains(&("quickbooks".to_string(), "invoices".to_string())),
        "{kept:?}"
    );
}
