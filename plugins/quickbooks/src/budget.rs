//! The client-side request budget per realm: sliding windows per second and per
//! "minute" plus a concurrency cap, shared by every stream (and every source block) that
//! reads the same realm in this process.
//!
//! It extends the SDK's `RateBudget` with a configurable window length (so benchmarks can
//! scale the 60-second limit down) and a safety margin: the server counts requests when
//! they arrive, we count them when they leave, and a request that left late but arrived
//! early would otherwise make the server see one request too many in its window.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Limits of one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Requests per `window` (0 = unlimited).
    pub per_window: u32,
    /// The long window (60 s in production).
    pub window: Duration,
    /// Requests per second (0 = unlimited).
    pub per_second: u32,
    /// Requests in flight (0 = unlimited).
    pub concurrency: u32,
}

/// A shared request budget.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    log: Mutex<VecDeque<Instant>>,
    inflight: Option<Arc<Semaphore>>,
    sent: AtomicU64,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
}

fn margin(window: Duration) -> Duration {
    // 2% of the window, at least 50 ms: well above loopback or LAN jitter, and it costs
    // at most 2% of the allowed rate.
    (window / 50).max(Duration::from_millis(50))
}

impl Budget {
    /// A budget with these limits.
    pub fn new(limits: Limits) -> Self {
        let inflight =
            (limits.concurrency > 0).then(|| Arc::new(Semaphore::new(limits.concurrency as usize)));
        Budget {
            limits,
            log: Mutex::new(VecDeque::new()),
            inflight,
            sent: AtomicU64::new(0),
        }
    }

    /// The budget shared by everyone reading `key` (realm and API host) with these limits.
    pub fn shared(key: &str, limits: Limits) -> Arc<Budget> {
        type Registry = Mutex<HashMap<(String, Limits), Arc<Budget>>>;
        static BUDGETS: OnceLock<Registry> = OnceLock::new();
        let map = BUDGETS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((key.to_string(), limits.clone()))
            .or_insert_with(|| Arc::new(Budget::new(limits)))
            .clone()
    }

    /// Requests started through this budget so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until one more request fits, then counts it.
    pub async fn acquire(&self) -> Permit {
        let slot = match &self.inflight {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        let long = self.limits.window + margin(self.limits.window);
        let short = Duration::from_secs(1) + margin(Duration::from_secs(1));
        loop {
            let wait = {
                let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let keep = long.max(short);
                while log.front().is_some_and(|t| now.duration_since(*t) >= keep) {
                    log.pop_front();
                }
                let mut wait = Duration::ZERO;
                if self.limits.per_window > 0 {
                    let n = self.limits.per_window as usize;
                    let in_window = log
                        .iter()
                        .rev()
                        .take_while(|t| now.duration_since(**t) < long)
                        .count();
                    if in_window >= n {
                        if let Some(t) = log.iter().rev().nth(n - 1) {
                            wait = wait.max(long.saturating_sub(now.duration_since(*t)));
                        }
                    }
                }
                if self.limits.per_second > 0 {
                    let n = self.limits.per_second as usize;
                    let recent = log
                        .iter()
                        .rev()
                        .take_while(|t| now.duration_since(**t) < short)
                        .count();
                    if recent >= n {
                        if let Some(t) = log.iter().rev().nth(n - 1) {
                            wait = wait.max(short.saturating_sub(now.duration_since(*t)));
                        }
                    }
                }
                if wait.is_zero() {
                    log.push_back(now);
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    return Permit { _slot: slot };
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_window() {
        let b = Budget::new(Limits {
            per_window: 5,
            window: Duration::from_secs(10),
            per_second: 3,
            concurrency: 0,
        });
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            let _p = b.acquire().await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[..=i]
                .iter()
                .filter(|u| t.saturating_sub(**u) < Duration::from_secs(10))
                .count();
            assert!(in_window <= 5, "{times:?}");
            let in_second = times[..=i]
                .iter()
                .filter(|u| t.saturating_sub(**u) < Duration::from_secs(1))
                .count();
            assert!(in_second <= 3, "{times:?}");
        }
    }
}
