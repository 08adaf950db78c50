//! SuperOps timestamps: zone-less UTC in several precisions on the way in, RFC 3339 on the
//! way out.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses `2022-06-28T05:25:10`, `2021-12-18T15:35`, `…:16.270`, `…:22.833009`,
/// `2022-06-14`, and (defensively) anything RFC 3339 with a zone, as UTC.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The cursor form: RFC 3339 UTC with a fixed six-digit fraction, so that text order is
/// time order.
pub fn to_cursor(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The request form: zone-less, whole seconds (rounded down, which only widens a filter).
pub fn to_api(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        for (s, want) in [
            ("2022-06-28T05:25:10", "2022-06-28T05:25:10.000000Z"),
            ("2021-12-18T15:35", "2021-12-18T15:35:00.000000Z"),
            ("2022-11-29T15:54:16.270", "2022-11-29T15:54:16.270000Z"),
            ("2026-04-20T10:38:22.833009", "2026-04-20T10:38:22.833009Z"),
            ("2022-06-14", "2022-06-14T00:00:00.000000Z"),
            ("2022-06-14T10:00:00+02:00", "2022-06-14T08:00:00.000000Z"),
        ] {
            assert_eq!(parse(s).map(to_cursor).as_deref(), Some(want), "{s}");
        }
        assert!(parse("yesterday").is_none());
    }
}
