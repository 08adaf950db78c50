//! Reusable pieces for connectors that talk to remote APIs: retry with backoff and a
//! client-side request budget. They compile into each plugin; nothing here crosses the
//! boundary.

mod backoff;
mod budget;

pub use backoff::{retry, Backoff};
pub use budget::{RateBudget, RateBudgetConfig};
