//! The saved state of an entity stream: the exact position ([`Position`]) plus when the
//! stream was last known complete.
//!
//! `complete_at` is the server's `time` at the start of the last read that saw every
//! change (a CDC read that finished, or a reconciliation pass that listed every object),
//! less `cdc_margin_secs`. The next run asks CDC for changes since then, however old the
//! newest object is: a stream quiet for a month still gets its deletions. The position
//! only de-duplicates what CDC returns again.
//!
//! `deleted` remembers the deletions emitted since `complete_at`. QuickBooks never reuses
//! an Id, so a stub whose Id is listed was emitted already; without it, every deletion in
//! the margin would be emitted again by every following run.
//!
//! States written before `complete_at` existed load with it empty: "no complete read
//! known", which makes the next run reconcile.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::position::Position;
use crate::error::{Error, Result};
use crate::parse::{format_time, parse_time};

/// The saved state of one entity stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState {
    /// The newest change emitted (`last_updated`, `ids`).
    #[serde(flatten)]
    pub position: Position,
    /// Server time at the start of the last complete read, less the margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_at: Option<String>,
    /// Deletions emitted at or after `complete_at`: Id to the stub's `LastUpdatedTime`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<String, String>,
}

/// The same, borrowed, for checkpoints taken while the position is being moved.
#[derive(Debug, Serialize)]
pub struct StateRef<'a> {
    /// See [`EntityState::position`].
    #[serde(flatten)]
    pub position: &'a Position,
    /// See [`EntityState::complete_at`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_at: &'a Option<String>,
    /// See [`EntityState::deleted`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: &'a BTreeMap<String, String>,
}

impl EntityState {
    /// The saved state of `stream`; a state this version cannot read is a config error
    /// that tells how to reset it.
    pub fn from_state(stream: &str, state: Option<serde_json::Value>) -> Result<EntityState> {
        match state {
            None | Some(serde_json::Value::Null) => Ok(EntityState::default()),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::Config(format!("saved state of stream {stream} is not understood ({e}); reset it or run with --full-refresh"))
            }),
        }
    }

    /// `complete_at` as an instant, if known and readable.
    pub fn complete_instant(&self) -> Option<DateTime<Utc>> {
        self.complete_at
            .as_deref()
            .and_then(parse_time)
            .map(|t| t.with_timezone(&Utc))
    }

    /// Records a complete read that started at server time `started`: the next CDC read
    /// starts `margin` before it, and deletions older than that are forgotten (CDC from
    /// there cannot return them).
    pub fn completed(&mut self, started: DateTime<Utc>, margin: chrono::Duration) {
        let at = started - margin;
        self.complete_at = Some(format_time(&at));
        self.deleted
            .retain(|_, t| parse_time(t).is_none_or(|t| t.with_timezone(&Utc) >= at));
    }

    /// This state, borrowed.
    pub fn as_ref(&self) -> StateRef<'_> {
        StateRef {
            position: &self.position,
            complete_at: &self.complete_at,
            deleted: &self.deleted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_states_load_as_no_complete_read() {
        let old =
            serde_json::json!({"last_updated": "2024-01-01T00:00:00-08:00", "ids": {"7": "2"}});
        let s = EntityState::from_state("invoices", Some(old)).expect("loads");
        assert_eq!(s.position.ids.get("7").map(String::as_str), Some("2"));
        assert_eq!(s.complete_at, None);
        let back = serde_json::to_value(s.as_ref()).expect("serializes");
        assert_eq!(back["last_updated"], "2024-01-01T00:00:00-08:00");
        assert!(back.get("complete_at").is_none() && back.get("deleted").is_none());
    }

    #[test]
    fn completing_moves_the_cdc_start_and_forgets_older_deletions() {
        let mut s = EntityState::default();
        s.deleted
            .insert("1".into(), "2024-05-01T09:00:00-07:00".into());
        s.deleted
            .insert("2".into(), "2024-05-01T09:58:00-07:00".into());
        let started = parse_time("2024-05-01T17:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        s.completed(started, chrono::Duration::seconds(300));
        assert_eq!(
            s.complete_instant(),
            Some(started - chrono::Duration::seconds(300))
        );
        assert_eq!(s.deleted.keys().collect::<Vec<_>>(), vec!["2"]);
        let round = EntityState::from_state(
            "invoices",
            Some(serde_json::to_value(s.as_ref()).expect("json")),
        )
        .expect("loads");
        assert_eq!(round, s);
    }
}
