use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Limits of a [`RateBudget`].
#[derive(Debug, Clone)]
pub struct RateBudgetConfig {
    /// Requests allowed in any sliding 60-second window (0 = unlimited).
    pub per_minute: u32,
    /// Requests allowed in any sliding 1-second window (0 = unlimited).
    pub per_second: u32,
    /// Requests in flight at once (0 = unlimited).
    pub concurrency: u32,
}

/// A client-side request budget: sliding-window limits per second and per minute plus a
/// concurrency cap, so a healthy run stays under the server's throttle instead of
/// discovering it through 429s.
///
/// Sliding windows (a log of recent request times) are exact where a token bucket would
/// allow a burst of twice the limit across a window boundary.
#[derive(Debug, Clone)]
pub struct RateBudget {
    config: RateBudgetConfig,
    log: Arc<Mutex<VecDeque<Instant>>>,
    inflight: Option<Arc<Semaphore>>,
}

/// Held while a request is in flight; dropping it frees a concurrency slot.
#[derive(Debug)]
pub struct BudgetPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl RateBudget {
    /// A budget with the given limits.
    pub fn new(config: RateBudgetConfig) -> Self {
        let inflight =
            (config.concurrency > 0).then(|| Arc::new(Semaphore::new(config.concurrency as usize)));
        RateBudget {
            config,
            log: Arc::new(Mutex::new(VecDeque::new())),
            inflight,
        }
    }

    /// Waits until one more request fits the budget, then records it.
    pub async fn acquire(&self) -> BudgetPermit {
        let permit = match &self.inflight {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        loop {
            let wait = {
                let mut log = self.log.lock().await;
                let now = Instant::now();
                while log
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    log.pop_front();
                }
                let minute_wait =
                    if self.config.per_minute > 0 && log.len() >= self.config.per_minute as usize {
                        log.front()
                            .map(|t| Duration::from_secs(60).saturating_sub(now.duration_since(*t)))
                    } else {
                        None
                    };
                let second_wait = if self.config.per_second > 0 {
                    let n = self.config.per_second as usize;
                    let recent = log
                        .iter()
                        .rev()
                        .take_while(|t| now.duration_since(**t) < Duration::from_secs(1))
                        .count();
                    if recent >= n {
                        log.iter()
                            .rev()
                            .nth(n - 1)
                            .map(|t| Duration::from_secs(1).saturating_sub(now.duration_since(*t)))
                    } else {
                        None
                    }
                } else {
                    None
                };
                match minute_wait.max(second_wait) {
                    Some(w) if !w.is_zero() => w,
                    _ => {
                        log.push_back(now);
                        return BudgetPermit { _permit: permit };
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
