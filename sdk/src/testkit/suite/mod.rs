//! The conformance run: calls the connector the way the host would, records everything,
//! and hands the recordings to [`super::checks`].
//!
//! - this module: the [`Suite`] builder and the state of one run;
//! - `session`: one bounded call on a thread of its own, and what it produced;
//! - `setup`: `spec`, `check` (good and bad credentials) and `discover`;
//! - `reads`: the full, resumed, limited, windowed and cancelled reads.

mod reads;
mod session;
mod setup;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::checks::leaks::CallOutput;
use super::recorder::ControlHook;
use super::report::{CheckResult, Report};
use super::secrets::Secrets;
use super::subject::Subject;
use crate::protocol::ControlMessage;

/// How long one call may take by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a read may go on after the host cancelled it, by default.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(10);

/// A conformance run of one connector with one config. Build it, then [`Suite::run`].
///
/// ```no_run
/// # fn demo(plugin: tributary_sdk::host::Plugin) {
/// use tributary_sdk::testkit::Suite;
/// let report = Suite::new(plugin, serde_json::json!({"api_token": "..."})).run();
/// report.assert_passed();
/// # }
/// ```
pub struct Suite {
    subject: Arc<dyn Subject>,
    config: Value,
    bad_config: Option<Value>,
    streams: Option<Vec<String>>,
    limit: Option<u64>,
    call_timeout: Duration,
    cancel_grace: Duration,
    on_control: Option<ControlHook>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds secrets: never print it.
        f.debug_struct("Suite")
            .field("connector", &self.subject.name())
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Suite {
    /// A run of `subject` with `config` (the config a working source would have).
    pub fn new(subject: impl Subject, config: Value) -> Self {
        Suite {
            subject: Arc::new(subject),
            config,
            bad_config: None,
            streams: None,
            limit: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            on_control: None,
        }
    }

    /// A config with bad credentials that `check` must refuse. Without one, the kit
    /// replaces every field the spec marks secret with a wrong value.
    pub fn bad_config(mut self, config: Value) -> Self {
        self.bad_config = Some(config);
        self
    }

    /// Reads only these streams (default: every stream in the catalog).
    pub fn streams<S: Into<String>>(mut self, streams: impl IntoIterator<Item = S>) -> Self {
        self.streams = Some(streams.into_iter().map(Into::into).collect());
        self
    }

    /// The record limit of the limited read (default: half the smallest non-empty stream).
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit.max(1));
        self
    }

    /// How long any one call may take before it counts as hung.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a read may go on after the host cancelled it.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Acts on CONTROL messages (a rotated refresh token) before the connector goes on,
    /// as the host does by persisting them. The kit also merges them into its config.
    pub fn on_control(
        mut self,
        hook: impl Fn(&ControlMessage) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.on_control = Some(Arc::new(hook));
        self
    }

    /// Runs every check. Never panics on the connector's behalf: a panic, an error or a
    /// hang of the connector is a failed check.
    pub fn run(self) -> Report {
        let mut run = Run {
            connector: self.subject.name(),
            secrets: Secrets::default(),
            config: self.config.clone(),
            spec: Value::Null,
            outputs: Vec::new(),
            panics: Vec::new(),
            calls: 0,
            results: Vec::new(),
            suite: self,
        };
        run.all();
        Report {
            connector: run.connector,
            checks: run.results,
        }
    }
}

/// The state of one conformance run.
struct Run {
    suite: Suite,
    connector: String,
    /// The config with every CONTROL update merged, as the host would pass it next time.
    config: Value,
    /// The connector's spec, once read: it says which rotated values are secret.
    spec: Value,
    secrets: Secrets,
    outputs: Vec<CallOutput>,
    panics: Vec<String>,
    calls: usize,
    results: Vec<CheckResult>,
}
