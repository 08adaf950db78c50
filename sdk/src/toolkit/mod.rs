//! Reusable pieces for connectors: retry with backoff, a client-side request budget, and
//! the schedule of reconciliation passes. They compile into each plugin; nothing here
//! crosses the boundary.

mod backoff;
mod budget;
mod reconcile;
mod watermark;

pub use backoff::{retry, Backoff};
pub use budget::{RateBudget, RateBudgetConfig};
pub use reconcile::ReconcileEvery;
pub use watermark::Watermark;
