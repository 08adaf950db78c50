//! The host side of the boundary: load a plugin library and call it with plain Rust types.
//!
//! The host binary uses only this module; `abi_stable` stays inside the SDK.
//!
//! Every entry point of a [`Plugin`] blocks the calling thread until the plugin returns,
//! so call them from a dedicated thread (the plugin runs its own async runtime inside).
//!
//! - [`load`](load()) opens a library and checks its SDK version and layout ([`Plugin`]).
//! - [`HostHandler`] is what the host does with a plugin's output ([`RecordBatch`],
//!   [`KeyBatch`]).
//! - [`InProcess`] calls a connector compiled into the current binary through the same glue.
//! - [`CollectingHandler`] keeps everything in memory, for tests.

mod collect;
mod handler;
mod in_process;
mod load;

pub use collect::{Collected, CollectedRecord, CollectingHandler};
pub use handler::{HostHandler, KeyBatch, RecordBatch, RecordRef};
pub use in_process::InProcess;
pub use load::{load, LoadError, Plugin};
