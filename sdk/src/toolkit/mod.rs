//! Reusable pieces for connectors: declared streams, the stream driver and its per-stream
//! record limit, retry with backoff, the per-credential request budget, the HTTP request
//! loop (feature `http`), and the schedule of reconciliation passes.
//! They compile into each plugin; nothing here crosses the boundary.

mod backoff;
pub mod budget;
pub mod driver;
#[cfg(feature = "http")]
pub mod http;
mod limit;
mod reconcile;
pub mod streams;
mod watermark;

pub use backoff::{retry, Backoff};
pub use budget::{Budget, Limits};
pub use driver::{Driver, StreamError, StreamRun};
pub use limit::Limit;
pub use reconcile::ReconcileEvery;
pub use streams::Streams;
pub use watermark::Watermark;
