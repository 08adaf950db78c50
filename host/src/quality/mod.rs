//! Data quality: every run measures each stream as its records pass, and `tributary
//! quality` measures the warehouse again from its rows alone.
//!
//! - [`tracker`] follows one stream through a run: schema violations (against the
//!   discovered JSON Schema, compiled once), field completeness, duplicate keys, cursor
//!   regressions and freshness.
//! - [`warehouse`] recomputes the per-stream figures from a destination's live rows, and
//!   [`referential`] finds cross-source gaps (profiles, SuperOps, QuickBooks) there.
//! - [`thresholds`] turns the manifest's `[quality]` limits into breaches.
//! - [`assemble`] builds trackers before a run and reports after it or from the warehouse.
//! - [`report`] holds the serializable report types and the summary table.

pub mod assemble;
pub mod referential;
pub mod report;
pub mod thresholds;
pub mod tracker;
pub mod warehouse;

pub use report::{QualityReport, ReferentialGap, StreamQuality, ViolationSample};
pub use thresholds::{breaches, Breach};
pub use tracker::StreamTracker;

/// Exit code of `run` and `quality` when a `[quality]` threshold is breached (and every
/// stream is otherwise complete).
pub const EXIT_BREACH: u8 = 3;

/// Violation samples kept per stream.
pub const SAMPLES: usize = 5;

#[cfg(test)]
mod tests;
