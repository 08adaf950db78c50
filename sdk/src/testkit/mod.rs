//! The conformance kit: the invariants every connector must keep, checked by calling the
//! connector the way the host does (feature `testkit`).
//!
//! # Overview
//!
//! - [`Subject`] is the connector under test: a loaded [`crate::host::Plugin`], or a
//!   connector compiled into the test via [`in_process`].
//! - [`Suite`] runs it with a working config: `spec`, `check` (with the config, then with
//!   wrong credentials), `discover`, then a full read, a read with a record limit, a read
//!   resumed from that read's state, a read with a start date and a read the host cancels.
//!   Every call runs on a thread of its own with a bounded wait.
//! - [`checks`] holds the invariants, each a function of what was recorded; the table in
//!   its documentation lists them by name.
//! - [`Report`] is one [`CheckResult`] per check (pass, fail or skip, with the reason);
//!   it serializes to JSON and [`Report::assert_passed`] fails a test with every reason.
//!
//! # From `cargo test`
//!
//! ```no_run
//! use tributary_sdk::testkit::{in_process, Suite};
//! # #[derive(Default)] struct MyConnector;
//! # impl tributary_sdk::Connector for MyConnector {
//! #   fn info(&self) -> tributary_sdk::ConnectorInfo { unimplemented!() }
//! #   fn spec(&self) -> serde_json::Value { unimplemented!() }
//! #   async fn check(&self, _: serde_json::Value, _: tributary_sdk::Emitter) -> tributary_sdk::Result<()> { unimplemented!() }
//! #   async fn discover(&self, _: serde_json::Value, _: tributary_sdk::Emitter) -> tributary_sdk::Result<tributary_sdk::Catalog> { unimplemented!() }
//! #   async fn read(&self, _: tributary_sdk::ReadRequest, _: tributary_sdk::Emitter) -> tributary_sdk::Result<()> { unimplemented!() }
//! # }
//! let config = serde_json::json!({"api_url": "http://127.0.0.1:8080", "api_token": "t0ken-for-tests"});
//! Suite::new(in_process::<MyConnector>(), config).run().assert_passed();
//! ```

pub mod checks;
mod recorder;
mod report;
mod secrets;
mod subject;
mod suite;
#[cfg(test)]
mod tests;

pub use recorder::{ControlHook, Event, Recorder, SeenRecord};
pub use report::{CheckResult, Outcome, Report};
pub use secrets::{marked_secret, with_wrong_secrets, Secrets, MIN_SECRET_LEN};
pub use subject::{in_process, InProcessSubject, Subject};
pub use suite::{Suite, DEFAULT_CALL_TIMEOUT, DEFAULT_CANCEL_GRACE};
