//! `tributary watch`: every enabled source in incremental sync on its own interval, each
//! committed batch through the same destination, state, deletion and quality rules as
//! `run`, and the committed changes published as events.

pub mod metrics;
pub mod schedule;
pub mod status;
