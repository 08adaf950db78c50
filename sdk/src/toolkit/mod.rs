//! Reusable pieces for connectors: retry with backoff, the per-credential request budget,
//! the HTTP request loop (feature `http`), and the schedule of reconciliation passes.
//! They compile into each plugin; nothing here crosses the boundary.

mod backoff;
pub mod budget;
#[cfg(feature = "http")]
pub mod http;
mod reconcile;
mod watermark;

pub use backoff::{retry, Backoff};
pub use budget::{Budget, Limits};
pub use reconcile::ReconcileEvery;
pub use watermark::Watermark;
