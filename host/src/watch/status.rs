//! What `watch` knows about each source, shared with the HTTP server (`/health`, the
//! status page) and kept current by the source loops and the writer.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A source's health as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No cycle has finished yet.
    Starting,
    /// The last cycle completed every stream.
    Ok,
    /// The last cycles failed; the loop is backing off.
    Failing,
}

/// One stream of a source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamView {
    /// Records committed since `watch` started.
    pub records: u64,
    /// Deletions committed since `watch` started.
    pub deletes: u64,
    /// When the last cycle that completed this stream ended.
    pub last_success: Option<DateTime<Utc>>,
    /// The newest cursor committed, as the source wrote it.
    pub newest_cursor: Option<String>,
    /// The last failure, when the last cycle did not complete the stream.
    pub last_error: Option<String>,
}

/// One source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Manifest name.
    pub source: String,
    /// Plugin name.
    pub plugin: String,
    /// Seconds between cycles when healthy.
    pub interval_secs: f64,
    /// Health.
    pub health: Health,
    /// Failed cycles in a row.
    pub consecutive_failures: u32,
    /// When the last fully successful cycle ended.
    pub last_success: Option<DateTime<Utc>>,
    /// The last cycle's error, when it failed: `kind: message`.
    pub last_error: Option<String>,
    /// When the next cycle starts (absent while one runs).
    pub next_cycle: Option<DateTime<Utc>>,
    /// Cycles run.
    pub cycles: u64,
    /// Per stream.
    pub streams: BTreeMap<String, StreamView>,
}

/// Every source's view, behind one lock (updates are a few per cycle).
#[derive(Debug, Default)]
pub struct Registry {
    sources: Mutex<BTreeMap<String, SourceView>>,
}

impl Registry {
    /// Registers a source before its first cycle.
    pub fn add(&self, source: &str, plugin: &str, interval_secs: f64) {
        self.lock().insert(
            source.to_string(),
            SourceView {
                source: source.to_string(),
                plugin: plugin.to_string(),
                interval_secs,
                health: Health::Starting,
                consecutive_failures: 0,
                last_success: None,
                last_error: None,
                next_cycle: None,
                cycles: 0,
                streams: BTreeMap::new(),
            },
        );
    }

    /// Applies `change` to `source`'s view (nothing when it is unknown).
    pub fn update(&self, source: &str, change: impl FnOnce(&mut SourceView)) {
        if let Some(view) = self.lock().get_mut(source) {
            change(view);
        }
    }

    /// A copy of every view, by source name.
    pub fn snapshot(&self) -> Vec<SourceView> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceView>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}
