//! When to run a reconciliation pass (a listing of every live key, from which the host
//! proves hard deletions): an interval from the config, checked against the time of the
//! last completed pass that the connector keeps in its state.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How often a reconciliation pass runs: `"24h"`, `"30m"`, `"90s"`, `"7d"`; `"always"`
/// (every run) or `"never"`. Written as text in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileEvery {
    /// On every run.
    Always,
    /// When the last completed pass is at least this old (or there was none).
    Every(Duration),
    /// Only when the host asks for a full refresh.
    Never,
}

impl ReconcileEvery {
    /// Parses the manifest form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t {
            "always" | "0" | "0s" => return Ok(ReconcileEvery::Always),
            "never" => return Ok(ReconcileEvery::Never),
            _ => {}
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: i64 = number.parse().map_err(|_| {
            format!("`{text}` is not an interval like \"24h\", \"always\" or \"never\"")
        })?;
        let d = match unit.trim() {
            "s" => Duration::seconds(n),
            "m" => Duration::minutes(n),
            "h" => Duration::hours(n),
            "d" => Duration::days(n),
            _ => {
                return Err(format!(
                    "`{text}`: unit must be s, m, h or d (e.g. \"24h\")"
                ))
            }
        };
        Ok(if d.is_zero() {
            ReconcileEvery::Always
        } else {
            ReconcileEvery::Every(d)
        })
    }

    /// Whether a pass is due, given when the last one completed.
    pub fn due(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match self {
            ReconcileEvery::Always => true,
            ReconcileEvery::Never => false,
            ReconcileEvery::Every(d) => last.is_none_or(|l| now - l >= *d),
        }
    }
}

impl fmt::Display for ReconcileEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileEvery::Always => f.write_str("always"),
            ReconcileEvery::Never => f.write_str("never"),
            ReconcileEvery::Every(d) => {
                let s = d.num_seconds();
                if s % 86_400 == 0 {
                    write!(f, "{}d", s / 86_400)
                } else if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

impl Serialize for ReconcileEvery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReconcileEvery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ReconcileEvery::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What [`ReconcileEvery::parse`] accepts, for config schemas.
#[cfg(feature = "schema")]
pub const RECONCILE_EVERY_PATTERN: &str = r"^\s*(always|never|0|[0-9]+\s*[smhd])\s*$";

/// Text matching [`RECONCILE_EVERY_PATTERN`].
#[cfg(feature = "schema")]
impl schemars::JsonSchema for ReconcileEvery {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReconcileEvery".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": RECONCILE_EVERY_PATTERN})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decides() {
        let now = Utc::now();
        let day = ReconcileEvery::parse("24h").expect("valid");
        assert_eq!(day, ReconcileEvery::Every(Duration::hours(24)));
        assert!(day.due(None, now));
        assert!(!day.due(Some(now - Duration::hours(23)), now));
        assert!(day.due(Some(now - Duration::hours(24)), now));
        assert!(ReconcileEvery::parse("always")
            .expect("valid")
            .due(Some(now), now));
        assert!(!ReconcileEvery::parse("never")
            .expect("valid")
            .due(None, now));
        assert_eq!(ReconcileEvery::parse("0s"), Ok(ReconcileEvery::Always));
        assert!(ReconcileEvery::parse("3 weeks").is_err());
        assert!(ReconcileEvery::parse("h").is_err());
        assert_eq!(
            ReconcileEvery::parse("90m").expect("valid").to_string(),
            "90m"
        );
    }
}
