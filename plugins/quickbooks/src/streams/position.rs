//! The exact incremental position: the newest `LastUpdatedTime` emitted plus every
//! (Id, SyncToken) already emitted at exactly that instant.
//!
//! QuickBooks timestamps have one-second resolution and many objects share one. Resuming
//! with `> t` misses objects written later in the same second; `>= t` re-emits the ones
//! already read. Resuming with `>= t` and skipping the remembered pairs does neither, and
//! keeping the SyncToken means an object edited twice within the same second is still
//! emitted again.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::parse::{parse_time, Row};

/// Position in one entity's change history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// `MetaData.LastUpdatedTime` of the newest emitted object, as QuickBooks wrote it.
    #[serde(default)]
    pub last_updated: Option<String>,
    /// Id to SyncToken (empty for deleted stubs) of objects emitted at exactly that time.
    #[serde(default)]
    pub ids: BTreeMap<String, String>,
}

impl Position {
    /// A position just before `at` (nothing at `at` emitted yet).
    pub fn at(at: String) -> Self {
        Position {
            last_updated: Some(at),
            ids: BTreeMap::new(),
        }
    }

    /// The instant, if any.
    pub fn instant(&self) -> Option<DateTime<FixedOffset>> {
        self.last_updated.as_deref().and_then(parse_time)
    }

    /// Whether `row` was already emitted (or is older than the position).
    pub fn seen(&self, row: &Row<'_>) -> bool {
        match (self.instant(), row.updated) {
            (Some(cur), Some(t)) if t < cur => true,
            (Some(cur), Some(t)) if t == cur => {
                self.ids.get(&row.id).is_some_and(|s| *s == sync_key(row))
            }
            _ => false,
        }
    }

    /// Moves the position over `row`.
    pub fn advance(&mut self, row: &Row<'_>) {
        let Some(t) = row.updated else { return };
        match self.instant() {
            Some(cur) if t < cur => {}
            Some(cur) if t == cur => {
                self.ids.insert(row.id.clone(), sync_key(row));
            }
            _ => {
                self.last_updated = row.updated_raw.clone();
                self.ids.clear();
                self.ids.insert(row.id.clone(), sync_key(row));
            }
        }
    }

    /// The saved state of a stream; a state this version cannot read is a config error
    /// that tells how to reset it.
    pub fn from_state(stream: &str, state: Option<serde_json::Value>) -> Result<Position> {
        match state {
            None | Some(serde_json::Value::Null) => Ok(Position::default()),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::Config(format!("saved state of stream {stream} is not understood ({e}); reset it or run with --full-refresh"))
            }),
        }
    }
}

fn sync_key(row: &Row<'_>) -> String {
    if row.deleted {
        "deleted".to_string()
    } else {
        row.sync_token.clone().unwrap_or_default()
    }
}
