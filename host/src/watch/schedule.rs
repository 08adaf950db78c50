//! When a source's next cycle starts, and what wakes it early.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The wait before a source's next cycle: its interval while healthy; after `failures`
/// failed cycles in a row, the interval doubled per failure, capped at `max`.
pub fn next_wait(interval: Duration, failures: u32, max: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 2u32.saturating_pow(failures.min(16));
    interval.saturating_mul(factor).min(max.max(interval))
}

/// Why a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Woken {
    /// The wait ran out: a scheduled cycle.
    Due,
    /// A webhook asked for these streams now (empty: every stream).
    Fetch(BTreeSet<String>),
    /// `watch` is stopping.
    Stop,
}

#[derive(Debug, Default)]
struct Pending {
    fetch: Option<BTreeSet<String>>,
    stop: bool,
}

/// Wakes one source's loop early: a webhook's fetch, or shutdown.
#[derive(Debug, Default)]
pub struct Wake {
    pending: Mutex<Pending>,
    signal: Condvar,
}

impl Wake {
    /// Asks for a cycle of `streams` now (none: all); requests made during a wait merge.
    pub fn fetch(&self, streams: impl IntoIterator<Item = String>) {
        let mut p = self.lock();
        let streams: BTreeSet<String> = streams.into_iter().collect();
        p.fetch = Some(match p.fetch.take() {
            // An earlier "everything" stays everything.
            Some(prev) if prev.is_empty() || streams.is_empty() => BTreeSet::new(),
            Some(mut prev) => {
                prev.extend(streams);
                prev
            }
            None => streams,
        });
        self.signal.notify_all();
    }

    /// Ends every wait, now and later.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.signal.notify_all();
    }

    /// Waits up to `timeout` for a fetch or a stop; a fetch asked before the wait began
    /// ends it at once.
    pub fn wait(&self, timeout: Duration) -> Woken {
        let deadline = Instant::now() + timeout;
        let mut p = self.lock();
        loop {
            if p.stop {
                return Woken::Stop;
            }
            if let Some(streams) = p.fetch.take() {
                return Woken::Fetch(streams);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woken::Due;
            }
            p = self
                .signal
                .wait_timeout(p, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn backoff_doubles_from_the_interval_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(next_wait(s(5), 0, s(300)), s(5));
        assert_eq!(next_wait(s(5), 1, s(300)), s(10));
        assert_eq!(next_wait(s(5), 3, s(300)), s(40));
        assert_eq!(next_wait(s(5), 10, s(300)), s(300));
        assert_eq!(next_wait(s(5), u32::MAX, s(300)), s(300));
        // A cap below the interval never makes a failing source poll faster.
        assert_eq!(next_wait(s(30), 2, s(10)), s(30));
    }

    #[test]
    fn a_fetch_or_a_stop_ends_a_wait_and_requests_merge() {
        let wake = Arc::new(Wake::default());
        wake.fetch(["invoices".to_string()]);
        wake.fetch(["payments".to_string()]);
        let both: BTreeSet<String> = ["invoices", "payments"].map(String::from).into();
        assert_eq!(wake.wait(Duration::from_secs(30)), Woken::Fetch(both));
        wake.fetch(["invoices".to_string()]);
        wake.fetch(Vec::new());
        assert_eq!(wake.wait(Duration::ZERO), Woken::Fetch(BTreeSet::new()));
        assert_eq!(wake.wait(Duration::from_millis(1)), Woken::Due);
        let waiter = {
            let wake = wake.clone();
            std::thread::spawn(move || wake.wait(Duration::from_secs(60)))
        };
        wake.stop();
        assert_eq!(waiter.join().expect("no panic"), Woken::Stop);
    }
}
