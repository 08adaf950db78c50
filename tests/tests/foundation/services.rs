//! The internal-db connector through the real binary against the PostgreSQL and MariaDB
//! services (URLs from TRIBUTARY_TEST_POSTGRES_URL / TRIBUTARY_TEST_MYSQL_URL).

use sqlx::Executor;
use tributary_internal_db::sample::{self, SampleSpec};

use crate::common::services::service_url;
use crate::common::{count, Scratch};
use crate::deletions::{self, Source};

/// A fresh database on the server at `base`, dropped at the end.
struct TempDb {
    admin: String,
    name: String,
    pub url: String,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl TempDb {
    fn create(base: &str) -> TempDb {
        sqlx::any::install_default_drivers();
        let name = format!("tributary_e2e_{}_{}", std::process::id(), rand_suffix());
        let (prefix, _) = base.rsplit_once('/').expect("URL ends in /database");
        let url = format!("{prefix}/{name}");
        rt().block_on(async {
            let conn = sqlx::AnyPool::connect(base)
                .await
                .expect("service reachable");
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
            conn.close().await;
        });
        TempDb {
            admin: base.to_string(),
            name,
            url,
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        rt().block_on(async move {
            if let Ok(conn) = sqlx::AnyPool::connect(&admin).await {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                    .await;
                conn.close().await;
            }
        });
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() % 1_000_000_000
}

fn sync_against(url: &str) {
    let spec = SampleSpec::with_clients(15, 11);
    let expected = rt()
        .block_on(sample::generate(url, &spec))
        .expect("sample data generated");
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.ops]\nplugin = \"internal-db\"\n[sources.ops.config]\nurl = \"{url}\"\npage_size = 200\n",
        s.header()
    ));
    let check = s.run(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let wh = s.warehouse();
    for (stream, n) in &expected {
        assert!(*n > 0);
        assert_eq!(report.records(&format!("ops.{stream}")), *n, "{stream}");
        assert_eq!(count(&wh, &format!("ops__{stream}")) as u64, *n, "{stream}");
    }
    // Incremental: an edit moves exactly the edited rows.
    let at = chrono::Utc::now();
    let touched = rt()
        .block_on(sample::touch(url, "contracts", &[1, 2, 3], at))
        .expect("touch");
    assert_eq!(touched, 3);
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("ops.contracts"), 3, "{report:?}");
    assert_eq!(report.total(), 3);
}

#[test]
fn postgres_end_to_end() {
    let Some(base) = service_url("TRIBUTARY_TEST_POSTGRES_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    sync_against(&db.url);
}

#[test]
fn mariadb_end_to_end() {
    let Some(base) = service_url("TRIBUTARY_TEST_MYSQL_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    sync_against(&db.url);
}

/// Ids per key page in the kill tests: 2,000 pages, about 2 s of pass for the kill to
/// land in (a debug build on a busy 2-core machine).
const KILL_PAGE: u32 = 15;

/// A table large enough, with pages small enough, that a kill lands mid-pass, yet quick
/// to generate on a server.
fn kill_spec() -> SampleSpec {
    SampleSpec {
        service_history_per_client: 500,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
        ..SampleSpec::with_clients(60, 5)
    }
}

#[test]
fn postgres_hard_and_soft_deletes_are_marked() {
    let Some(base) = service_url("TRIBUTARY_TEST_POSTGRES_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    let s = Scratch::new();
    deletions::deletes_are_marked(
        &Source {
            url: db.url.clone(),
        },
        &s,
    );
}

#[test]
fn mariadb_hard_and_soft_deletes_are_marked() {
    let Some(base) = service_url("TRIBUTARY_TEST_MYSQL_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    let s = Scratch::new();
    deletions::deletes_are_marked(
        &Source {
            url: db.url.clone(),
        },
        &s,
    );
}

#[test]
fn postgres_kill_9_mid_reconciliation_marks_nothing_then_the_rerun_marks_the_vanished() {
    let Some(base) = service_url("TRIBUTARY_TEST_POSTGRES_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    let s = Scratch::new();
    deletions::kill_9_mid_reconciliation(
        &Source {
            url: db.url.clone(),
        },
        &s,
        &kill_spec(),
        KILL_PAGE,
    );
}

#[test]
fn mariadb_kill_9_mid_reconciliation_marks_nothing_then_the_rerun_marks_the_vanished() {
    let Some(base) = service_url("TRIBUTARY_TEST_MYSQL_URL") else {
        return;
    };
    let db = TempDb::create(&base);
    let s = Scratch::new();
    deletions::kill_9_mid_reconciliation(
        &Source {
            url: db.url.clone(),
        },
        &s,
        &kill_spec(),
        KILL_PAGE,
    );
}
