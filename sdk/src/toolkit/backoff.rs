use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{ConnectorError, ErrorKind};

/// Exponential backoff with full jitter and a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): uniform in `[0, min(max, initial·2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let ceiling = exp.min(self.max);
        let millis = ceiling.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis.max(1)))
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or `policy` runs out.
///
/// [`ErrorKind::Transient`] errors back off exponentially; [`ErrorKind::RateLimited`]
/// errors are expected to have waited already (the caller knows the server's Retry-After)
/// and are retried at once, within the same attempt budget.
pub async fn retry<T, F, Fut>(policy: &Backoff, mut op: F) -> Result<T, ConnectorError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ConnectorError>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind.is_retryable() && attempt < policy.max_attempts => {
                if e.kind == ErrorKind::Transient {
                    let delay = policy.delay(attempt);
                    tracing::warn!(
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "retrying after transient error: {}",
                        e.message
                    );
                    tokio::time::sleep(delay).await;
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
