//! Deterministic sample data: N clients and proportional rows in every table.
//!
//! The same [`SampleSpec`] always yields the same rows on every dialect. Each table draws
//! from its own seeded generator, so changing one table's size leaves the others alone.
//!
//! Time model: event times (ticket opened, survey, contact, contract start) spread evenly
//! over 2024-01-01..2026-06-30 in id order, so ids and `updated_at` roughly agree (as in
//! a real append-mostly table) and date windows select proportional slices. One block of
//! rows in five was "bulk imported": all its rows share one `updated_at`, on the hour, so
//! paging over equal timestamps is exercised by ordinary data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use tributary_sample_msp::Rng;
pub use tributary_sample_msp::{identity, roster, RosterClient, SUPEROPS_ACCOUNT_BASE};

use crate::client::{Db, PoolSettings};
use crate::config::Config;
use crate::dialect::{Dialect, Param};
use crate::error::{redact_url, Error, Result};
use crate::streams::{self, Kind, StreamDef};
use crate::timestamp::{format_date, format_micros, micros_from_civil, MICROS_PER_SEC};

/// How much sample data to generate. Table sizes are per client, so one knob scales all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleSpec {
    /// Number of clients (rows of `client_profiles`).
    #[serde(default = "default_clients")]
    #[schemars(range(min = 1))]
    pub clients: u32,
    /// Seed of the generator; the same seed gives the same data.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `service_history` rows per client.
    #[serde(default = "default_service_history_per_client")]
    pub service_history_per_client: u32,
    /// `satisfaction_scores` rows per client.
    #[serde(default = "default_satisfaction_scores_per_client")]
    pub satisfaction_scores_per_client: u32,
    /// `communication_engagement` rows per client.
    #[serde(default = "default_communication_engagement_per_client")]
    pub communication_engagement_per_client: u32,
    /// `contracts` rows per client.
    #[serde(default = "default_contracts_per_client")]
    pub contracts_per_client: u32,
}

/// Default [`SampleSpec::clients`].
pub const fn default_clients() -> u32 {
    50
}
/// Default [`SampleSpec::seed`].
pub const fn default_seed() -> u64 {
    42
}
/// Default [`SampleSpec::service_history_per_client`].
pub const fn default_service_history_per_client() -> u32 {
    40
}
/// Default [`SampleSpec::satisfaction_scores_per_client`].
pub const fn default_satisfaction_scores_per_client() -> u32 {
    6
}
/// Default [`SampleSpec::communication_engagement_per_client`].
pub const fn default_communication_engagement_per_client() -> u32 {
    30
}
/// Default [`SampleSpec::contracts_per_client`].
pub const fn default_contracts_per_client() -> u32 {
    2
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            clients: default_clients(),
            seed: default_seed(),
            service_history_per_client: default_service_history_per_client(),
            satisfaction_scores_per_client: default_satisfaction_scores_per_client(),
            communication_engagement_per_client: default_communication_engagement_per_client(),
            contracts_per_client: default_contracts_per_client(),
        }
    }
}

/// Rows per table (at most this many; keeps a typo from filling the disk).
const MAX_ROWS_PER_TABLE: u64 = 100_000_000;

impl SampleSpec {
    /// A spec with `clients` clients and default proportions.
    pub fn with_clients(clients: u32, seed: u64) -> Self {
        SampleSpec {
            clients,
            seed,
            ..SampleSpec::default()
        }
    }

    /// Rows this spec generates, per stream.
    pub fn row_counts(&self) -> BTreeMap<&'static str, u64> {
        let c = u64::from(self.clients);
        BTreeMap::from([
            ("client_profiles", c),
            (
                "service_history",
                c * u64::from(self.service_history_per_client),
            ),
            (
                "satisfaction_scores",
                c * u64::from(self.satisfaction_scores_per_client),
            ),
            (
                "communication_engagement",
                c * u64::from(self.communication_engagement_per_client),
            ),
            ("contracts", c * u64::from(self.contracts_per_client)),
        ])
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.clients == 0 {
            return Err(Error::Config("clients must be at least 1".into()));
        }
        if let Some((name, n)) = self
            .row_counts()
            .into_iter()
            .find(|(_, n)| *n > MAX_ROWS_PER_TABLE)
        {
            return Err(Error::Config(format!(
                "{name} would get {n} rows, more than {MAX_ROWS_PER_TABLE}"
            )));
        }
        Ok(())
    }
}

/// Applies the schema to `url` (creating a missing SQLite file) and inserts the sample
/// rows. The tables must be empty. Returns the rows inserted per stream.
pub async fn generate(url: &str, spec: &SampleSpec) -> Result<BTreeMap<&'static str, u64>> {
    spec.validate()?;
    let db = Db::open(url, &bulk_settings(false)).await?;
    // A half-generated database is useless either way, so skip the fsyncs.
    if db.dialect() == Dialect::Sqlite {
        db.execute(
            &crate::dialect::Statement {
                sql: "PRAGMA synchronous = OFF".into(),
                params: Vec::new(),
            },
            "tuning sqlite for bulk load",
        )
        .await?;
    }
    let result = generate_into(&db, spec).await;
    db.close().await;
    result
}

fn bulk_settings(bulk_load: bool) -> PoolSettings {
    PoolSettings {
        pool_size: 1,
        connect_timeout: Duration::from_secs(30),
        create_if_missing: true,
        bulk_load,
    }
}

async fn generate_into(db: &Db, spec: &SampleSpec) -> Result<BTreeMap<&'static str, u64>> {
    db.migrate().await?;
    let d = db.dialect();
    let counts = spec.row_counts();
    for stream in streams::ALL {
        let total = counts.get(stream.name).copied().unwrap_or(0);
        let spec = Arc::new(spec.clone());
        // Generate and insert in slices so memory stays flat for millions of rows; the
        // next slice is generated on a blocking thread while this one is inserted.
        const SLICE: u64 = 50_000;
        let make = |from: u64| {
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || {
                let to = (from + SLICE).min(total);
                (from..to)
                    .map(|i| row(stream, &spec, d, i, total))
                    .collect::<Vec<_>>()
            })
        };
        let mut next = (total > 0).then(|| make(0));
        let mut from = 0;
        while let Some(pending) = next.take() {
            let rows = pending
                .await
                .map_err(|e| Error::Internal(format!("sample generator stopped: {e}")))?;
            from += SLICE;
            if from < total {
                next = Some(make(from));
            }
            db.insert_rows(
                |n| d.insert_sql(stream, n),
                stream.columns.len(),
                rows,
                &format!("inserting sample rows into {}", stream.name),
            )
            .await?;
        }
    }
    Ok(counts)
}

/// Sets `updated_at` of the rows of `stream` with the given ids to `at` (as an
/// application would when it edits them); returns the rows changed.
///
/// The equivalent SQL, for a database console:
/// `UPDATE service_history SET updated_at = '2026-07-01T00:00:00.000000Z' WHERE id IN (1, 2)`
/// (PostgreSQL: a `timestamptz` literal; MySQL: `'2026-07-01 00:00:00.000000'` in UTC).
pub async fn touch(url: &str, stream: &str, ids: &[i64], at: DateTime<Utc>) -> Result<u64> {
    let def = sample_stream(stream)?;
    let at = crate::timestamp::canonical(at);
    let context = format!("touching rows of {stream}");
    apply_in_chunks(
        url,
        ids,
        |d, chunk| d.touch_statement(def, chunk, &at),
        &context,
    )
    .await
}

/// The sample schema's soft-delete columns (added by the second migration): a nullable
/// timestamp on `service_history`, a boolean on `contracts`. The matching connector
/// setting is `soft_delete = { service_history = "deleted_at", contracts = "is_deleted" }`.
pub const SOFT_DELETE_COLUMNS: [(&str, &str, Kind); 2] = [
    ("service_history", "deleted_at", Kind::Timestamp),
    ("contracts", "is_deleted", Kind::Bool),
];

/// Deletes the rows of `stream` with the given ids (a hard delete, which leaves no trace
/// a cursor could see); returns the rows deleted.
///
/// The equivalent SQL: `DELETE FROM service_history WHERE id IN (1, 2)`. Rows that other
/// tables reference (`client_profiles`) are refused by the foreign keys on PostgreSQL and
/// MySQL, as they would be for an application.
pub async fn delete(url: &str, stream: &str, ids: &[i64]) -> Result<u64> {
    let def = sample_stream(stream)?;
    let context = format!("deleting rows of {stream}");
    apply_in_chunks(
        url,
        ids,
        |d, chunk| d.delete_statement(def, chunk),
        &context,
    )
    .await
}

/// Soft-deletes the rows of `stream` with the given ids as an application would: sets the
/// sample schema's soft-delete column (see [`SOFT_DELETE_COLUMNS`]; a timestamp becomes
/// `at`, a flag becomes true) and `updated_at = at`. Returns the rows changed.
///
/// The equivalent SQL (SQLite):
/// `UPDATE service_history SET deleted_at = '2026-07-01T00:00:00.000000Z', updated_at = '2026-07-01T00:00:00.000000Z' WHERE id IN (1, 2)`
/// and `UPDATE contracts SET is_deleted = 1, updated_at = ... WHERE id IN (3)`.
pub async fn soft_delete(url: &str, stream: &str, ids: &[i64], at: DateTime<Utc>) -> Result<u64> {
    let def = sample_stream(stream)?;
    let Some((_, column, kind)) = SOFT_DELETE_COLUMNS.iter().find(|(s, _, _)| *s == stream) else {
        return Err(Error::Config(format!(
            "the sample table {stream} has no soft-delete column (only {})",
            SOFT_DELETE_COLUMNS
                .map(|(s, c, _)| format!("{s}.{c}"))
                .join(", ")
        )));
    };
    let at = crate::timestamp::canonical(at);
    let context = format!("soft-deleting rows of {stream}");
    apply_in_chunks(
        url,
        ids,
        |d, chunk| d.soft_delete_statement(def, column, *kind, chunk, &at),
        &context,
    )
    .await
}

fn sample_stream(stream: &str) -> Result<&'static StreamDef> {
    streams::find(stream).ok_or_else(|| Error::Config(format!("unknown stream {stream}")))
}

/// Runs the statement `make` builds for each chunk of ids; returns the rows affected.
async fn apply_in_chunks(
    url: &str,
    ids: &[i64],
    make: impl Fn(Dialect, &[i64]) -> crate::dialect::Statement,
    context: &str,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let db = Db::open(url, &bulk_settings(false)).await?;
    let mut changed = 0;
    let mut result = Ok(());
    for chunk in ids.chunks(1000) {
        match db.execute(&make(db.dialect(), chunk), context).await {
            Ok(n) => changed += n,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    db.close().await;
    result.map(|()| changed)
}

/// Rows per stream table at `url`.
pub async fn count_rows(url: &str) -> Result<BTreeMap<&'static str, u64>> {
    let db = Db::open(url, &bulk_settings(false)).await?;
    let mut out = BTreeMap::new();
    let mut result = Ok(());
    for s in streams::ALL {
        // Table names come from the static stream list, never from input.
        match db
            .scalar_i64(&format!("SELECT COUNT(*) FROM {}", s.name), "counting rows")
            .await
        {
            Ok(n) => {
                out.insert(s.name, u64::try_from(n).unwrap_or(0));
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    db.close().await;
    result.map(|()| out)
}

/// When the config asks for sample data and points at a SQLite file that does not exist,
/// creates it. The data is generated into a temporary file that is renamed into place, so
/// a crash never leaves a half-filled database that would later count as existing.
///
/// Creation holds an exclusive lock (`<file>.lock`, an OS file lock the kernel releases
/// when its holder dies), so two sources or processes pointing at one sample file create
/// it once: the others wait, then find it there. Holding the lock also means any
/// `<file>.tmp-<pid>` lying around was left by a creator that died (`kill -9`), and it
/// is removed.
pub(crate) async fn ensure_sample_database(config: &Config) -> Result<()> {
    let Some(spec) = &config.sample_data else {
        return Ok(());
    };
    if config.dialect()? != Dialect::Sqlite {
        tracing::debug!("sample_data is ignored for non-SQLite databases");
        return Ok(());
    }
    let opts =
        sqlx::sqlite::SqliteConnectOptions::from_str(&config.url).map_err(|e| Error::Url {
            url: redact_url(&config.url),
            reason: e.to_string(),
        })?;
    let path = opts.get_filename().to_path_buf();
    let name = path.to_string_lossy();
    if name.is_empty() || name.contains(":memory:") || config.url.contains("mode=memory") {
        return Err(Error::Config(
            "sample_data needs a SQLite file, not an in-memory database".into(),
        ));
    }
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let _lock = creation_lock(&path).await?;
    if path.exists() {
        // Another source or process created it while we waited.
        return Ok(());
    }
    remove_stale_temporaries(&path);
    let tmp = temp_path(&path);
    tracing::info!(path = %path.display(), clients = spec.clients, seed = spec.seed, "creating sample database");
    let started = std::time::Instant::now();
    let tmp_url = format!("sqlite:{}", tmp.display());
    let generated = async {
        let db = Db::open(&tmp_url, &bulk_settings(true)).await?;
        let r = generate_into(&db, spec).await;
        db.close().await;
        r
    }
    .await;
    match generated {
        Ok(counts) => {
            std::fs::rename(&tmp, &path).map_err(|e| {
                Error::io(format!("moving sample database to {}", path.display()), e)
            })?;
            tracing::info!(path = %path.display(), rows = ?counts, secs = started.elapsed().as_secs_f64(), "sample database ready");
            // The lock file is not needed any more: whoever opens a new one from here on
            // finds the database in place once it holds it. (Waiters on this one do too.)
            let _ = std::fs::remove_file(sibling(&path, ".lock"));
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Takes the exclusive creation lock of the sample file at `path`, waiting (without
/// blocking the runtime) while another creator holds it.
async fn creation_lock(path: &std::path::Path) -> Result<std::fs::File> {
    let lock_path = sibling(path, ".lock");
    let io = |e| Error::io(format!("locking {}", lock_path.display()), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said {
                    tracing::info!(path = %path.display(), "another source or process is creating this sample database; waiting for it");
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

/// Removes `<file>.tmp-*` beside `path`: with the creation lock held, they are what a
/// creator that died left behind.
fn remove_stale_temporaries(path: &std::path::Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a sample database left half-made by a process that died")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), "cannot remove a stale sample temporary: {e}")
                }
            }
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn temp_path(path: &std::path::Path) -> PathBuf {
    sibling(path, &format!(".tmp-{}", std::process::id()))
}

// ---------------------------------------------------------------------------------------
// Row generation

const HOUR: i64 = 3600 * MICROS_PER_SEC;
const DAY: i64 = 24 * HOUR;
/// Rows per "bulk import" block.
const IMPORT_BLOCK: u64 = 50;

fn span() -> (i64, i64) {
    (
        micros_from_civil(2024, 1, 1),
        micros_from_civil(2026, 6, 30) + DAY - MICROS_PER_SEC,
    )
}

/// Event time of row `i` of `total`: even spread over the span in id order, plus jitter.
fn event_time(rng: &mut Rng, i: u64, total: u64) -> i64 {
    let (start, end) = span();
    let base = start + ((end - start) as i128 * i128::from(i) / i128::from(total.max(1))) as i64;
    (base + rng.range(0, DAY)).clamp(start, end)
}

/// `updated_at` of row `i`: `natural` rounded to the second, unless the row's block was
/// bulk imported, in which case every row of the block shares the block's import time.
fn updated_at(seed: u64, table: &str, i: u64, total: u64, natural: i64) -> i64 {
    let (_, end) = span();
    let block = i / IMPORT_BLOCK;
    let mut block_rng = Rng::new(seed, table, u64::MAX - block);
    if block_rng.chance(20) {
        // After every natural time of the block (block end + the largest delay any table
        // adds, under six days), on the hour.
        let last = ((block + 1) * IMPORT_BLOCK).min(total);
        let (start, _) = span();
        let t = start
            + ((end - start) as i128 * i128::from(last) / i128::from(total.max(1))) as i64
            + 6 * DAY;
        let t = (t + HOUR - 1) / HOUR * HOUR;
        return t.min(end);
    }
    (natural / MICROS_PER_SEC * MICROS_PER_SEC).min(end)
}

fn ts(d: Dialect, micros: i64) -> Param {
    Param::Text(d.timestamp_param(&format_micros(micros)))
}

fn opt_text(v: Option<String>, kind: Kind) -> Param {
    v.map_or(Param::Null(kind), Param::Text)
}

/// Values of row `i` (0-based) of `stream`, in column order.
fn row(stream: &StreamDef, spec: &SampleSpec, d: Dialect, i: u64, total: u64) -> Vec<Param> {
    let mut rng = Rng::new(spec.seed, stream.name, i);
    let id = i as i64 + 1;
    let client = |rng: &mut Rng| rng.range(1, i64::from(spec.clients));
    match stream.name {
        "client_profiles" => client_row(&mut rng, spec, d, id, i, total),
        "service_history" => {
            let opened = event_time(&mut rng, i, total);
            let priority =
                rng.weighted(&[("low", 40), ("medium", 35), ("high", 20), ("critical", 5)]);
            let resolved = rng.chance(92).then(|| {
                let max_hours = match priority {
                    "critical" => 8,
                    "high" => 24,
                    "medium" => 72,
                    _ => 120,
                };
                (opened + rng.range(10 * 60 * MICROS_PER_SEC, max_hours * HOUR)).min(span().1)
            });
            let category = rng.pick(&CATEGORIES);
            let quarter_hours = rng.range(1, if priority == "critical" { 64 } else { 32 });
            let hours = format!("{}.{:02}", quarter_hours / 4, quarter_hours % 4 * 25);
            let updated = updated_at(
                spec.seed,
                stream.name,
                i,
                total,
                resolved.unwrap_or(opened) + rng.range(0, HOUR),
            );
            vec![
                Param::Int(id),
                Param::Int(client(&mut rng)),
                Param::Text(format!("T-{id:07}")),
                Param::Text(rng.pick(&TECHNICIANS).into()),
                Param::Text(category.into()),
                Param::Text(priority.into()),
                ts(d, opened),
                resolved.map_or(Param::Null(Kind::Timestamp), |r| ts(d, r)),
                Param::Text(hours),
                Param::Bool(rng.chance(75)),
                opt_text(
                    resolved.map(|_| format!("{} ({category})", rng.pick(&RESOLUTIONS))),
                    Kind::Text,
                ),
                ts(d, opened),
                ts(d, updated),
            ]
        }
        "satisfaction_scores" => {
            let at = event_time(&mut rng, i, total);
            let overall = rng.weighted(&[("1", 4), ("2", 8), ("3", 20), ("4", 40), ("5", 28)]);
            let overall: i64 = overall.parse().unwrap_or(4);
            let near = |rng: &mut Rng| (overall + rng.range(-1, 1)).clamp(1, 5);
            let (responsiveness, quality, communication) =
                (near(&mut rng), near(&mut rng), near(&mut rng));
            let nps = (overall * 2 + rng.range(-2, 0)).clamp(0, 10);
            let comment = rng.chance(40).then(|| rng.pick(&COMMENTS).to_string());
            let updated = updated_at(spec.seed, stream.name, i, total, at + rng.range(0, DAY));
            vec![
                Param::Int(id),
                Param::Int(client(&mut rng)),
                Param::Text(format_date(at)),
                Param::Int(overall),
                Param::Int(responsiveness),
                Param::Int(quality),
                Param::Int(communication),
                Param::Int(nps),
                opt_text(comment, Kind::Text),
                ts(d, at),
                ts(d, updated),
            ]
        }
        "communication_engagement" => {
            let at = event_time(&mut rng, i, total);
            let inbound = rng.chance(55);
            let slow = rng.chance(20);
            let response = inbound.then(|| rng.range(1, if slow { 2880 } else { 240 }));
            let updated = updated_at(
                spec.seed,
                stream.name,
                i,
                total,
                at + rng.range(0, 2 * HOUR),
            );
            vec![
                Param::Int(id),
                Param::Int(client(&mut rng)),
                Param::Text(
                    rng.weighted(&[
                        ("email", 45),
                        ("phone", 20),
                        ("portal", 15),
                        ("meeting", 8),
                        ("chat", 12),
                    ])
                    .into(),
                ),
                Param::Text(if inbound { "inbound" } else { "outbound" }.into()),
                ts(d, at),
                response.map_or(Param::Null(Kind::Int), Param::Int),
                Param::Text(rng.pick(&SUBJECTS).into()),
                ts(d, at),
                ts(d, updated),
            ]
        }
        "contracts" => {
            let (_, end) = span();
            let start = event_time(&mut rng, i, total) / DAY * DAY;
            let term = [12i64, 24, 36][rng.below(3) as usize];
            let (y, m, dd) = crate::timestamp::civil_from_days(start / DAY);
            let months = m - 1 + term;
            let renewal = micros_from_civil(y + months / 12, months % 12 + 1, dd.min(28));
            let kind = rng.weighted(&[
                ("managed_services", 50),
                ("backup", 15),
                ("security", 15),
                ("project", 10),
                ("break_fix", 10),
            ]);
            let base = match kind {
                "managed_services" => (1_500, 18_000),
                "security" => (400, 4_000),
                "backup" => (150, 1_500),
                "project" => (2_000, 25_000),
                _ => (100, 900),
            };
            let cents = rng.range(base.0 * 100, base.1 * 100);
            let status = if start > end - 30 * DAY {
                "pending"
            } else if renewal < end {
                if rng.chance(80) {
                    "expired"
                } else {
                    "cancelled"
                }
            } else if rng.chance(5) {
                "cancelled"
            } else {
                "active"
            };
            let updated = updated_at(
                spec.seed,
                stream.name,
                i,
                total,
                start + rng.range(0, 3 * DAY),
            );
            vec![
                Param::Int(id),
                Param::Int(client(&mut rng)),
                Param::Text(kind.into()),
                Param::Text(format!("{}.{:02}", cents / 100, cents % 100)),
                Param::Text("USD".into()),
                Param::Int(term),
                Param::Text(format_date(start)),
                Param::Text(format_date(renewal)),
                Param::Text(status.into()),
                Param::Bool(rng.chance(70)),
                ts(d, start),
                ts(d, updated),
            ]
        }
        _ => Vec::new(),
    }
}

fn client_row(
    rng: &mut Rng,
    spec: &SampleSpec,
    d: Dialect,
    id: i64,
    i: u64,
    total: u64,
) -> Vec<Param> {
    // Clients were signed over the first half of the span; profiles get edited later.
    let (start, end) = span();
    let created =
        start + ((end - start) / 2) / (total.max(1) as i64) * i as i64 + rng.range(0, DAY);
    let natural = created + rng.range(0, (end - created).max(1));
    let updated = updated_at(spec.seed, "client_profiles", i, total, natural);
    let who = identity(spec.seed, i);
    let industry = rng.pick(&INDUSTRIES);
    // The domain comes from the name without its legal suffix.
    let base = who
        .company_name
        .rsplit_once(' ')
        .map_or(who.company_name.as_str(), |(b, _)| b);
    let slug: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let (city, region, country, prefix) = CITIES[rng.below(CITIES.len() as u64) as usize];
    vec![
        Param::Int(id),
        Param::Text(who.company_name.clone()),
        Param::Text(industry.into()),
        Param::Int(rng.range(5, 480)),
        Param::Text(format!(
            "{} {} {}",
            rng.range(10, 9999),
            rng.pick(&STREETS),
            rng.pick(&["St", "Ave", "Rd", "Blvd", "Way"])
        )),
        Param::Text(city.into()),
        Param::Text(region.into()),
        Param::Text(format!("{prefix}{:03}", rng.below(1000))),
        Param::Text(country.into()),
        Param::Text(format!(
            "+1-{}-555-{:04}",
            rng.range(201, 989),
            rng.below(10_000)
        )),
        Param::Text(format!("{slug}-{id}.com")),
        Param::Text(
            rng.weighted(&[
                ("essentials", 30),
                ("professional", 40),
                ("enterprise", 20),
                ("premium", 10),
            ])
            .into(),
        ),
        Param::Text(rng.pick(&ACCOUNT_MANAGERS).into()),
        Param::Text(
            rng.weighted(&[("active", 85), ("churned", 10), ("onboarding", 5)])
                .into(),
        ),
        // Ids in the other systems (see `roster`).
        opt_text(who.superops_account_id, Kind::Text),
        opt_text(who.quickbooks_customer_id, Kind::Text),
        ts(d, created),
        ts(d, updated.max(created / MICROS_PER_SEC * MICROS_PER_SEC)),
    ]
}

const TECHNICIANS: [&str; 12] = [
    "Alex Rivera",
    "Priya Nair",
    "Sam Okafor",
    "Jordan Lee",
    "Maria Gonzalez",
    "Chen Wei",
    "Fatima Hassan",
    "Liam O'Brien",
    "Sofia Rossi",
    "Noah Kim",
    "Ava Patel",
    "Ethan Brooks",
];
const CATEGORIES: [&str; 10] = [
    "network",
    "security",
    "hardware",
    "software",
    "email",
    "backup",
    "user_access",
    "onboarding",
    "printing",
    "cloud",
];
const RESOLUTIONS: [&str; 8] = [
    "Replaced faulty hardware",
    "Applied vendor patch",
    "Reset credentials and enforced MFA",
    "Reconfigured firewall rule",
    "Restored files from backup",
    "Updated driver",
    "Escalated to vendor and confirmed fix",
    "User training provided",
];
const COMMENTS: [&str; 8] = [
    "Quick and professional response",
    "Took longer than expected",
    "Great communication throughout",
    "Issue came back after a week",
    "Technician was very knowledgeable",
    "Would like more proactive updates",
    "Excellent service as always",
    "Pricing is getting hard to justify",
];
const SUBJECTS: [&str; 10] = [
    "Quarterly business review",
    "Ticket follow-up",
    "Invoice question",
    "Security awareness training",
    "Contract renewal",
    "New employee onboarding",
    "Outage notification",
    "Backup report",
    "Hardware refresh proposal",
    "Satisfaction survey",
];
const ACCOUNT_MANAGERS: [&str; 6] = [
    "Dana Whitfield",
    "Marcus Bell",
    "Elena Petrova",
    "Kwame Mensah",
    "Hannah Schultz",
    "Ravi Shah",
];
const INDUSTRIES: [&str; 10] = [
    "healthcare",
    "legal",
    "accounting",
    "manufacturing",
    "retail",
    "education",
    "nonprofit",
    "construction",
    "real_estate",
    "logistics",
];
const STREETS: [&str; 8] = [
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
];
const CITIES: [(&str, &str, &str, &str); 8] = [
    ("Austin", "TX", "US", "78"),
    ("Denver", "CO", "US", "80"),
    ("Columbus", "OH", "US", "43"),
    ("Raleigh", "NC", "US", "27"),
    ("Portland", "OR", "US", "97"),
    ("Toronto", "ON", "CA", "M5"),
    ("Manchester", "England", "GB", "M1"),
    ("Phoenix", "AZ", "US", "85"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_shaped() {
        let spec = SampleSpec::with_clients(10, 7);
        for s in streams::ALL {
            let total = spec.row_counts()[s.name];
            for i in 0..total {
                let a = row(s, &spec, Dialect::Sqlite, i, total);
                assert_eq!(a.len(), s.columns.len(), "{}", s.name);
                assert_eq!(a, row(s, &spec, Dialect::Sqlite, i, total));
            }
        }
        let other = SampleSpec::with_clients(10, 8);
        let s = streams::find("service_history").expect("stream");
        assert_ne!(
            row(s, &spec, Dialect::Sqlite, 3, 400),
            row(s, &other, Dialect::Sqlite, 3, 400)
        );
    }

    #[test]
    fn updated_at_within_span_and_after_creation() {
        let spec = SampleSpec::with_clients(20, 1);
        let (start, end) = span();
        let (lo, hi) = (format_micros(start), format_micros(end));
        for s in streams::ALL {
            let total = spec.row_counts()[s.name];
            let ci = s
                .columns
                .iter()
                .position(|c| c.name == "created_at")
                .expect("created_at");
            let ui = s
                .columns
                .iter()
                .position(|c| c.name == "updated_at")
                .expect("updated_at");
            for i in 0..total {
                let r = row(s, &spec, Dialect::Sqlite, i, total);
                let (Param::Text(c), Param::Text(u)) = (&r[ci], &r[ui]) else {
                    panic!("text")
                };
                assert!(
                    u >= c && *u <= hi && *c >= lo,
                    "{} row {i}: {c} {u}",
                    s.name
                );
            }
        }
    }
}
