//! Changes over time, shared by both emulators: what one change is ([`Change`]), the
//! timer that makes them ([`MutateConfig`]), and counters tests can wait on
//! ([`Monitor`]) instead of sleeping.
//!
//! Each emulator supplies the change itself (QuickBooks: `Store`, SuperOps: `Tenant`); the
//! timer only decides when, so a timed change and one a test asks for take the same path.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What happened to an entity, in QuickBooks webhook terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A new object.
    Create,
    /// An edit (for QuickBooks list entities, also what a delete does to the row: it
    /// becomes inactive).
    Update,
    /// A deletion.
    Delete,
}

impl Operation {
    /// The legacy webhook `operation`: `Create`, `Update`, `Delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Update => "Update",
            Operation::Delete => "Delete",
        }
    }

    /// The verb of a CloudEvents `type` (`qbo.invoice.<verb>.v1`).
    pub fn past_tense(self) -> &'static str {
        match self {
            Operation::Create => "created",
            Operation::Update => "updated",
            Operation::Delete => "deleted",
        }
    }
}

/// One change an emulator made to its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entity: QuickBooks names (`Invoice`, `Customer`, `Payment`), SuperOps type
    /// names (`Ticket`, `Worklog`).
    pub entity: String,
    /// The object's id, as the API sends it.
    pub id: String,
    /// What happened to it.
    pub operation: Operation,
}

/// Change data on a timer: one small realistic change every `every`, at most `max` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutateConfig {
    /// Time between two changes.
    pub every: Duration,
    /// Seed of the choice of change (which kind, which object), so a run can be replayed.
    pub seed: u64,
    /// Changes the timer makes before it stops (changes asked for on demand do not count).
    pub max: u64,
}

impl MutateConfig {
    /// A change every `every`, at most `max` of them, seed 1.
    pub fn new(every: Duration, max: u64) -> Self {
        MutateConfig {
            every,
            seed: 1,
            max,
        }
    }
}

/// The mutation timer's command-line options, shared by both emulators' commands.
#[derive(Debug, Clone, clap::Args)]
pub struct MutateArgs {
    /// Change data every this many milliseconds (a small realistic change each time);
    /// off unless given.
    #[arg(long, value_name = "MS")]
    pub mutate_every: Option<u64>,
    /// Seed of the timer's choice of changes.
    #[arg(long, default_value_t = 1)]
    pub mutate_seed: u64,
    /// Changes the timer makes before it stops.
    #[arg(long, default_value_t = 1000)]
    pub mutate_max: u64,
}

impl MutateArgs {
    /// The timer these options describe, if `--mutate-every` was given.
    pub fn config(&self) -> Option<MutateConfig> {
        self.mutate_every.map(|ms| MutateConfig {
            every: Duration::from_millis(ms.max(1)),
            seed: self.mutate_seed,
            max: self.mutate_max,
        })
    }
}

/// Counts of the changes an emulator made through [`MutateConfig`]'s timer or on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutationStats {
    /// Changes made by the timer.
    pub timed: u64,
    /// Changes made on demand (`Emulator::mutate`).
    pub on_demand: u64,
    /// The timer has made its last change (its maximum, or nothing left to change).
    pub timer_finished: bool,
}

/// A value behind a mutex with a condition variable: writers bump it, tests wait until
/// it satisfies a predicate (bounded by a timeout), so no test synchronises by sleeping.
#[derive(Debug, Default)]
pub struct Monitor<T> {
    value: Mutex<T>,
    changed: Condvar,
}

impl<T: Clone> Monitor<T> {
    /// A monitor holding `value`.
    pub fn new(value: T) -> Self {
        Monitor {
            value: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.lock().clone()
    }

    /// Changes the value and wakes every waiter.
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Blocks until `until` holds or `timeout` passes; returns the last value seen and
    /// whether `until` held. Blocking: call it from a test thread, not a runtime worker.
    pub fn wait(&self, timeout: Duration, until: impl Fn(&T) -> bool) -> (T, bool) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        // Bounded by the deadline: every pass either returns or waits out part of it.
        loop {
            if until(&guard) {
                return (guard.clone(), true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (guard.clone(), false);
            }
            guard = self
                .changed
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Runs the mutation timer: calls `change` every `config.every`, at most `config.max`
/// times, then marks the timer finished in `stats`. It ends early if `change` returns
/// `None` (nothing left to change). Spawn it on the emulator's runtime: it stops with it.
pub(crate) async fn run_timer(
    config: MutateConfig,
    stats: std::sync::Arc<Monitor<MutationStats>>,
    mut change: impl FnMut() -> Option<Change>,
) {
    let mut ticks = tokio::time::interval(config.every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the first change comes one period after start.
    ticks.tick().await;
    for _ in 0..config.max {
        ticks.tick().await;
        match change() {
            Some(c) => {
                tracing::debug!(entity = %c.entity, id = %c.id, operation = c.operation.as_str(), "timed change");
                stats.update(|s| s.timed += 1);
            }
            None => break,
        }
    }
    stats.update(|s| s.timer_finished = true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_when_the_predicate_holds_or_times_out() {
        let m = std::sync::Arc::new(Monitor::new(0u32));
        let writer = m.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..3 {
                writer.update(|v| *v += 1);
            }
        });
        let (v, ok) = m.wait(Duration::from_secs(5), |v| *v == 3);
        assert!(ok);
        assert_eq!(v, 3);
        let _ = t.join();
        let (_, ok) = m.wait(Duration::from_millis(10), |v| *v == 4);
        assert!(!ok);
    }
}
