//! The emulator's clock: real time plus an offset a test can move forward, as if weeks
//! had passed on the server. Every server-side "now" (envelope `time`, the stamps of
//! changes, the CDC horizon, report defaults) reads it; token lifetimes stay on the real
//! monotonic clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::data::{company_offset, local_date};

/// Server time: the real clock shifted by an adjustable number of seconds.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// Server now.
    pub fn now_utc(&self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Server now, epoch seconds.
    pub fn now(&self) -> i64 {
        self.now_utc().timestamp()
    }

    /// Moves server time forward by `secs` (negative moves it back).
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }

    /// `2013-08-06T03:04:31.099-07:00`: the envelope `time`, with milliseconds.
    pub fn envelope_time(&self) -> String {
        self.now_utc()
            .with_timezone(&company_offset())
            .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string()
    }

    /// The company-local date `days` before server now.
    pub fn days_ago(&self, days: i64) -> NaiveDate {
        local_date((self.now_utc() - Duration::days(days)).timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_reading() {
        let c = Clock::default();
        let before = c.now();
        c.advance(40 * 86_400);
        assert!(c.now() - before >= 40 * 86_400);
        assert!(c.days_ago(0) > local_date(before + 39 * 86_400));
    }
}
