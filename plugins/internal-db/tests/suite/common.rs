use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sqlx::Connection;
use tributary_internal_db::InternalDb;
use tributary_sdk::host::{
    Collected, CollectingHandler, HostHandler, InProcess, KeyBatch, RecordBatch,
};
use tributary_sdk::{
    ConfiguredCatalog, ConfiguredStream, ConnectorError, ControlMessage, LogLevel, ReadRequest,
    SnapshotEvent, StreamStatus, SyncMode, Window,
};

pub const STREAMS: [&str; 5] = [
    "client_profiles",
    "service_history",
    "satisfaction_scores",
    "communication_engagement",
    "contracts",
];

/// Runs a future to completion on a fresh runtime. The connector itself must be called
/// from outside any runtime (it blocks on its own), so tests are plain `#[test]`s.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub url: String,
    cleanup: Option<Cleanup>,
    _dir: Option<tempfile::TempDir>,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    MySql { admin_url: String, name: String },
}

fn unique_name() -> String {
    format!("tributary_test_{}", services::unique_suffix())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").unwrap() + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

// The service policy shared with the end-to-end harness.
#[path = "../../../../tests/tests/common/services.rs"]
mod services;
pub use services::service_url;

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("internal.db").display());
        TestDb {
            url,
            cleanup: None,
            _dir: Some(dir),
        }
    }

    pub fn postgres() -> Option<TestDb> {
        let admin_url = service_url("TRIBUTARY_TEST_POSTGRES_URL")?;
        let name = unique_name();
        block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .unwrap();
        });
        Some(TestDb {
            url: with_database(&admin_url, &name),
            cleanup: Some(Cleanup::Postgres { admin_url, name }),
            _dir: None,
        })
    }

    pub fn mysql() -> Option<TestDb> {
        let admin_url = service_url("TRIBUTARY_TEST_MYSQL_URL")?;
        let name = unique_name();
        block_on(async {
            let mut c = sqlx::MySqlConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .unwrap();
        });
        Some(TestDb {
            url: with_database(&admin_url, &name),
            cleanup: Some(Cleanup::MySql { admin_url, name }),
            _dir: None,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(cleanup) = self.cleanup.take() else {
            return;
        };
        // Drop may run during a panic: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            block_on(async {
                match cleanup {
                    Cleanup::Postgres { admin_url, name } => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    }
                    Cleanup::MySql { admin_url, name } => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                                .execute(&mut c)
                                .await;
                        }
                    }
                }
            })
        })
        .join();
    }
}

/// One `read` call.
#[derive(Clone)]
pub struct Read {
    pub config: Value,
    pub streams: Vec<String>,
    pub mode: SyncMode,
    pub state: BTreeMap<String, Value>,
    pub window: Window,
}

impl Read {
    pub fn new(url: &str) -> Read {
        Read {
            config: json!({ "url": url }),
            streams: STREAMS.iter().map(|s| s.to_string()).collect(),
            mode: SyncMode::Incremental,
            state: BTreeMap::new(),
            window: Window::default(),
        }
    }

    pub fn streams(mut self, streams: &[&str]) -> Read {
        self.streams = streams.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn page_size(mut self, n: u32) -> Read {
        self.config["page_size"] = json!(n);
        self
    }

    /// Pages fetched concurrently (the pool is sized to allow it).
    pub fn parallel_pages(mut self, n: u32) -> Read {
        self.config["parallel_pages"] = json!(n);
        self.config["pool_size"] = json!(n.max(2));
        self
    }

    pub fn state(mut self, state: &BTreeMap<String, Value>) -> Read {
        self.state = state.clone();
        self
    }

    pub fn full_refresh(mut self) -> Read {
        self.mode = SyncMode::FullRefresh;
        self
    }

    pub fn window(mut self, window: Window) -> Read {
        self.window = window;
        self
    }

    /// Sets one key of the connector's config.
    pub fn set(mut self, key: &str, value: Value) -> Read {
        self.config[key] = value;
        self
    }

    /// Runs the read through a handler that also keeps every event in order, and asserts
    /// that every stream completed.
    pub fn run_recorded(&self) -> (Collected, Vec<Event>) {
        let handler = Arc::new(Recording::default());
        InProcess::<InternalDb>::read(&self.request(), handler.clone()).unwrap();
        let collected = handler.inner.collected();
        for s in &self.streams {
            assert_eq!(
                collected.status.get(s),
                Some(&StreamStatus::Complete),
                "stream {s}"
            );
        }
        let events = handler.events.lock().unwrap().clone();
        (collected, events)
    }

    pub fn request(&self) -> ReadRequest {
        ReadRequest {
            config: self.config.clone(),
            catalog: ConfiguredCatalog {
                streams: self
                    .streams
                    .iter()
                    .map(|name| ConfiguredStream {
                        name: name.clone(),
                        sync_mode: self.mode,
                    })
                    .collect(),
            },
            state: self.state.clone(),
            window: self.window.clone(),
        }
    }

    pub fn try_run(&self) -> (Result<(), ConnectorError>, Collected) {
        let handler = CollectingHandler::new();
        let result = InProcess::<InternalDb>::read(&self.request(), handler.clone());
        (result, handler.collected())
    }

    /// Runs the read and asserts that every stream completed.
    pub fn run(&self) -> Collected {
        let (result, collected) = self.try_run();
        result.unwrap();
        for s in &self.streams {
            assert_eq!(
                collected.status.get(s),
                Some(&StreamStatus::Complete),
                "stream {s}: {:?}",
                collected.status.get(s)
            );
        }
        collected
    }
}

/// One call of the plugin on its host, in order (payloads summarised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Records {
        stream: String,
        n: usize,
    },
    State {
        stream: String,
        state: Value,
    },
    Keys {
        stream: String,
        n: usize,
    },
    Snapshot {
        stream: String,
        event: SnapshotEvent,
    },
}

/// A [`CollectingHandler`] that also keeps the order of calls and the size of each batch.
#[derive(Default)]
struct Recording {
    inner: Arc<CollectingHandler>,
    events: Mutex<Vec<Event>>,
}

impl Recording {
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
}

impl HostHandler for Recording {
    fn records(&self, stream: &str, batch: RecordBatch) -> Result<(), String> {
        self.push(Event::Records {
            stream: stream.into(),
            n: batch.len(),
        });
        self.inner.records(stream, batch)
    }
    fn state(&self, stream: &str, state: &str) -> Result<(), String> {
        self.push(Event::State {
            stream: stream.into(),
            state: serde_json::from_str(state).unwrap(),
        });
        self.inner.state(stream, state)
    }
    fn control(&self, message: ControlMessage) -> Result<(), String> {
        self.inner.control(message)
    }
    fn stream_status(&self, stream: &str, status: StreamStatus) {
        self.inner.stream_status(stream, status)
    }
    fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.inner.log(level, target, message)
    }
    fn log_level(&self) -> LogLevel {
        self.inner.log_level()
    }
    fn keys(&self, stream: &str, keys: KeyBatch) -> Result<(), String> {
        self.push(Event::Keys {
            stream: stream.into(),
            n: keys.len(),
        });
        self.inner.keys(stream, keys)
    }
    fn snapshot(&self, stream: &str, event: SnapshotEvent) -> Result<(), String> {
        self.push(Event::Snapshot {
            stream: stream.into(),
            event: event.clone(),
        });
        self.inner.snapshot(stream, event)
    }
}

/// Records of `stream` (empty when none arrived).
pub fn records(c: &Collected, stream: &str) -> Vec<tributary_sdk::host::CollectedRecord> {
    c.records.get(stream).cloned().unwrap_or_default()
}

/// Primary keys of `stream`, asserting they are unique.
pub fn unique_pks(c: &Collected, stream: &str) -> BTreeSet<String> {
    let recs = records(c, stream);
    let pks: BTreeSet<String> = recs.iter().map(|r| r.pk.clone()).collect();
    assert_eq!(pks.len(), recs.len(), "duplicate records in {stream}");
    pks
}

/// The record's data as JSON.
pub fn data(r: &tributary_sdk::host::CollectedRecord) -> Value {
    serde_json::from_str(&r.data).unwrap_or_else(|e| panic!("bad JSON {e}: {}", r.data))
}

/// Total records over all streams.
pub fn total(c: &Collected) -> usize {
    c.records.values().map(Vec::len).sum()
}

/// Ids of `table` read straight from the database (not through the connector), ascending.
pub async fn table_ids(url: &str, table: &str) -> Vec<i64> {
    strings_or_ids::<i64>(url, &format!("SELECT id FROM {table} ORDER BY id")).await
}

/// The first column of every row `sql` returns, through `sqlx::Any`.
pub async fn strings_or_ids<T>(url: &str, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Unpin,
{
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows = sqlx::query_scalar::<_, T>(sql)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    rows
}
