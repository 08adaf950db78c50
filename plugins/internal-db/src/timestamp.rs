//! The canonical timestamp text shared by every dialect: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
//!
//! Fixed width and always UTC, so string order is time order (SQLite stores it as TEXT and
//! compares it directly) and a cursor saved from one database resumes on another.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;

/// The canonical text of an instant.
pub fn canonical(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses any RFC 3339 timestamp (saved state, user input) into canonical text.
pub fn parse_canonical(text: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| canonical(t.with_timezone(&Utc)))
}

/// Canonical text of `micros` since the Unix epoch. Hand-rolled because the sample
/// generator formats millions of them and chrono's formatter is several times slower.
pub fn format_micros(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(27);
    push_num(&mut s, y, 4);
    s.push('-');
    push_num(&mut s, m, 2);
    s.push('-');
    push_num(&mut s, d, 2);
    s.push('T');
    push_num(&mut s, sod / 3600, 2);
    s.push(':');
    push_num(&mut s, sod / 60 % 60, 2);
    s.push(':');
    push_num(&mut s, sod % 60, 2);
    s.push('.');
    push_num(&mut s, frac, 6);
    s.push('Z');
    s
}

/// `YYYY-MM-DD` of the UTC day containing `micros`.
pub fn format_date(micros: i64) -> String {
    let (y, m, d) = civil_from_days(micros.div_euclid(MICROS_PER_SEC * 86_400));
    let mut s = String::with_capacity(10);
    push_num(&mut s, y, 4);
    s.push('-');
    push_num(&mut s, m, 2);
    s.push('-');
    push_num(&mut s, d, 2);
    s
}

fn push_num(s: &mut String, v: i64, width: u32) {
    let mut div = 10i64.pow(width - 1);
    while div > 0 {
        s.push(char::from(b'0' + (v / div % 10) as u8));
        div /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Micros since the epoch of midnight UTC on `y-m-d`; inverse of [`civil_from_days`].
pub fn micros_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 * MICROS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_formatter_matches_chrono() {
        let mut t = micros_from_civil(1999, 12, 31);
        for _ in 0..20_000 {
            let dt = DateTime::from_timestamp_micros(t).expect("in range");
            assert_eq!(format_micros(t), canonical(dt));
            assert_eq!(format_date(t), dt.format("%Y-%m-%d").to_string());
            t += 7_777_777_777_123;
        }
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            micros_from_civil(2024, 1, 1),
            1_704_067_200 * MICROS_PER_SEC
        );
    }

    #[test]
    fn parses_offsets_into_utc() {
        assert_eq!(
            parse_canonical("2024-03-01T10:00:00+02:00").as_deref(),
            Some("2024-03-01T08:00:00.000000Z")
        );
        assert_eq!(parse_canonical("yesterday"), None);
    }
}
