//! A stream's record limit for one read (`window.limit`), counted as records are admitted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The record limit of one stream in one read, and the count against it.
///
/// The [`Driver`](super::Driver) makes one per stream (in [`StreamRun::limit`]) and logs,
/// when the stream ends, how many records it admitted and whether the limit stopped it.
/// The connector asks [`Limit::admit`] before it puts a record in a batch and stops
/// reading once [`Limit::reached`]. Clones share the count, so a stream's helpers can
/// each hold one.
///
/// [`StreamRun::limit`]: super::StreamRun::limit
#[derive(Debug, Clone, Default)]
pub struct Limit {
    cap: Option<u64>,
    admitted: Arc<AtomicU64>,
}

impl Limit {
    /// At most `cap` records; `None` for no limit.
    pub fn new(cap: Option<u64>) -> Limit {
        Limit {
            cap,
            admitted: Arc::default(),
        }
    }

    /// No limit.
    pub fn unlimited() -> Limit {
        Limit::new(None)
    }

    /// Counts one more record; `false` (and nothing counted) when the limit is already
    /// reached, in which case the record must not be emitted.
    pub fn admit(&self) -> bool {
        match self.cap {
            None => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(cap) => self
                .admitted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// Counts up to `n` more records at once; returns how many fit (emit that many of the
    /// batch and drop the rest).
    pub fn take(&self, n: usize) -> usize {
        let n = n as u64;
        let Some(cap) = self.cap else {
            self.admitted.fetch_add(n, Ordering::Relaxed);
            return n as usize;
        };
        match self
            .admitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |had| {
                (had < cap).then(|| had.saturating_add(n).min(cap))
            }) {
            Ok(had) => (had.saturating_add(n).min(cap) - had) as usize,
            Err(_) => 0,
        }
    }

    /// Whether no more records may be emitted: stop reading.
    pub fn reached(&self) -> bool {
        self.cap.is_some_and(|cap| self.admitted() >= cap)
    }

    /// Records admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// The limit, if any.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_clones_share_the_count() {
        let limit = Limit::new(Some(2));
        let clone = limit.clone();
        assert!(!limit.reached());
        assert!(limit.admit());
        assert!(clone.admit());
        assert!(limit.reached() && clone.reached());
        assert!(!limit.admit(), "a third record is refused");
        assert_eq!(limit.admitted(), 2, "a refused record is not counted");
    }

    #[test]
    fn take_lets_through_what_fits_of_a_batch() {
        let limit = Limit::new(Some(5));
        assert_eq!(limit.take(3), 3);
        assert_eq!(limit.take(3), 2, "only two more fit");
        assert_eq!(limit.take(3), 0);
        assert_eq!(limit.admitted(), 5);
        assert_eq!(Limit::unlimited().take(7), 7);
    }

    #[test]
    fn a_zero_limit_admits_nothing_and_no_limit_admits_everything() {
        let zero = Limit::new(Some(0));
        assert!(zero.reached());
        assert!(!zero.admit());
        let all = Limit::unlimited();
        assert!((0..1000).all(|_| all.admit()));
        assert!(!all.reached());
        assert_eq!(all.admitted(), 1000);
    }
}
