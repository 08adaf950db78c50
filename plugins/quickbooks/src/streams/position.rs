//! The exact incremental position: the newest `LastUpdatedTime` emitted plus every
//! (Id, SyncToken) already emitted at exactly that instant.
//!
//! QuickBooks timestamps have one-second resolution and many objects share one. Resuming
//! with `> t` misses objects written later in the same second; `>= t` re-emits the ones
//! already read. Resuming with `>= t` and skipping the remembered pairs does neither, and
//! keeping the SyncToken means an object edited twice within the same second is still
//! emitted again.
//!
//! A deletion is never "older than the position": CDC stubs are stamped with the time of
//! the deletion, which can lie before the newest change already read (a deletion that
//! happened while a reconciliation scan was running, say). Only the exact pair
//! (Id, deleted) remembered at the position's second marks a stub as already emitted.

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

    /// Whether `row` was already emitted: an object older than the position, or the exact
    /// (Id, SyncToken) at its second. Deletion stubs only by the exact pair.
    pub fn seen(&self, row: &Row<'_>) -> bool {
        match (self.instant(), row.updated) {
            (Some(cur), Some(t)) if t < cur => !row.deleted,
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

    /// The later of two positions; at the same second, the objects of both.
    pub fn max_merge(a: &Position, b: &Position) -> Position {
        match (a.instant(), b.instant()) {
            (None, _) => b.clone(),
            (_, None) => a.clone(),
            (Some(x), Some(y)) if x > y => a.clone(),
            (Some(x), Some(y)) if x < y => b.clone(),
            _ => {
                let mut m = a.clone();
                m.ids
                    .extend(b.ids.iter().map(|(k, v)| (k.clone(), v.clone())));
                m
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn row<'a>(raw: &'a RawValue, deleted: bool) -> Row<'a> {
        let mut r = crate::parse::query_row(raw).expect("row");
        r.deleted = deleted;
        r
    }

    #[test]
    fn deletions_are_never_older_than_the_position() {
        let at = |t: &str, id: &str| {
            RawValue::from_string(format!(
                r#"{{"Id":"{id}","SyncToken":"3","MetaData":{{"LastUpdatedTime":"{t}"}}}}"#
            ))
            .expect("raw")
        };
        let mut pos = Position::default();
        let newest = at("2024-05-01T10:00:05-07:00", "9");
        pos.advance(&row(&newest, false));
        let older = at("2024-05-01T10:00:01-07:00", "4");
        assert!(
            pos.seen(&row(&older, false)),
            "a live object before the position"
        );
        assert!(
            !pos.seen(&row(&older, true)),
            "a deletion before the position"
        );
        // At the position's second: the exact pair only.
        let same = at("2024-05-01T10:00:05-07:00", "9");
        assert!(pos.seen(&row(&same, false)));
        assert!(!pos.seen(&row(&same, true)), "deleted after being read");
        pos.advance(&row(&same, true));
        assert!(pos.seen(&row(&same, true)), "the same deletion again");
        let other = at("2024-05-01T10:00:05-07:00", "10");
        assert!(!pos.seen(&row(&other, true)));
    }

    #[test]
    fn max_merge_keeps_the_later_second_and_unions_ties() {
        let mut a = Position::at("2024-05-01T10:00:05-07:00".into());
        a.ids.insert("1".into(), "0".into());
        let mut b = Position::at("2024-05-01T17:00:05Z".into());
        b.ids.insert("2".into(), "1".into());
        let m = Position::max_merge(&a, &b);
        assert_eq!(m.ids.len(), 2, "same instant, different spelling");
        let later = Position::at("2024-05-01T10:00:06-07:00".into());
        assert_eq!(Position::max_merge(&a, &later), later);
        assert_eq!(Position::max_merge(&later, &a), later);
        assert_eq!(Position::max_merge(&Position::default(), &a), a);
    }
}
