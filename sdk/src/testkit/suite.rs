//! The conformance run: calls the connector the way the host would, records everything,
//! and hands the recordings to [`super::checks`].

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::checks::{self, leaks::CallOutput, resume::ResumedStream};
use super::recorder::{ControlHook, Event, Recorder, SeenRecord};
use super::report::{CheckResult, Report};
use super::secrets::{self, Secrets};
use super::subject::Subject;
use crate::error::{ConnectorError, ErrorKind};
use crate::host::HostHandler;
use crate::protocol::{
    Catalog, ConfiguredCatalog, ConfiguredStream, ControlMessage, ReadRequest, StreamStatus,
    SyncMode, Window,
};

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

/// How a call ended.
enum Called<T> {
    Returned(Result<T, ConnectorError>),
    /// Still running after the allowed time; its thread is left behind.
    TimedOut(Duration),
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

/// Records of one read, per stream.
fn records_of(events: &[Event]) -> BTreeMap<String, Vec<SeenRecord>> {
    let mut out: BTreeMap<String, Vec<SeenRecord>> = BTreeMap::new();
    for event in events {
        if let Event::Records { stream, records } = event {
            out.entry(stream.clone())
                .or_default()
                .extend(records.iter().cloned());
        }
    }
    out
}

impl Run {
    fn push(&mut self, result: CheckResult) {
        let reason = self.secrets.redact(&result.reason);
        self.results.push(CheckResult { reason, ..result });
    }

    /// Calls the connector on a thread of its own and waits a bounded time: the call
    /// timeout, or the cancel grace once `recorder` has cancelled.
    fn call<T: Send + 'static>(
        &mut self,
        label: &str,
        recorder: Arc<Recorder>,
        f: impl FnOnce(&dyn Subject, Arc<dyn HostHandler>) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Called<T> {
        self.calls += 1;
        let (tx, rx) = mpsc::channel();
        let subject = self.suite.subject.clone();
        let handler: Arc<dyn HostHandler> = recorder.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conformance {label}"))
            .spawn(move || {
                let _ = tx.send(f(&*subject, handler));
            });
        let started = Instant::now();
        let called = match spawned {
            Err(e) => Called::Returned(Err(ConnectorError::system(format!(
                "cannot start a thread: {e}"
            )))),
            Ok(_) => loop {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(result) => break Called::Returned(result),
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break Called::Returned(Err(ConnectorError::system(
                            "the call's thread ended without a result",
                        )))
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                let deadline = match recorder.cancelled_at() {
                    Some(at) => at + self.suite.cancel_grace,
                    None => started + self.suite.call_timeout,
                };
                if Instant::now() >= deadline {
                    break Called::TimedOut(started.elapsed());
                }
            },
        };
        self.observe(label, &recorder, &called);
        called
    }

    /// Takes note of what a call produced: rotated secrets (adopted into the config only
    /// from a recorder that acts on them), panics, its output.
    fn observe<T>(&mut self, label: &str, recorder: &Recorder, called: &Called<T>) {
        let events = recorder.events();
        for event in &events {
            match event {
                Event::Control(ControlMessage::ConfigUpdate { values }) => {
                    for (key, value) in values {
                        // A rotated token is secret; its expiry time, say, is not.
                        if secrets::marked_secret(&self.spec["properties"][key.as_str()]) {
                            self.secrets.add(&format!("{key} (rotated)"), value);
                        }
                        if !recorder.adopts_control() {
                            continue;
                        }
                        if let Some(config) = self.config.as_object_mut() {
                            config.insert(key.clone(), Value::String(value.clone()));
                        }
                    }
                }
                Event::Status {
                    stream,
                    status: StreamStatus::Incomplete { error },
                } if error.kind == ErrorKind::Panic => self
                    .panics
                    .push(format!("{label}, stream `{stream}`: {}", error.message)),
                _ => {}
            }
        }
        let returned = match called {
            Called::Returned(Err(e)) => {
                if e.kind == ErrorKind::Panic {
                    self.panics.push(format!("{label}: {}", e.message));
                }
                Some(e.message.clone())
            }
            _ => None,
        };
        self.outputs.push(CallOutput {
            call: label.to_string(),
            events,
            returned,
        });
    }

    fn recorder(&self) -> Arc<Recorder> {
        Recorder::new(self.suite.on_control.clone())
    }

    fn read(
        &mut self,
        label: &str,
        request: ReadRequest,
        cancel: bool,
    ) -> (Called<()>, Arc<Recorder>) {
        let recorder = if cancel {
            Recorder::cancelling(self.suite.on_control.clone())
        } else {
            self.recorder()
        };
        let called = self.call(label, recorder.clone(), move |s, h| s.read(&request, h));
        (called, recorder)
    }

    fn request(&self, catalog: &ConfiguredCatalog, window: Window) -> ReadRequest {
        ReadRequest {
            config: self.config.clone(),
            catalog: catalog.clone(),
            state: BTreeMap::new(),
            window,
        }
    }

    fn describe<T>(&self, called: &Called<T>) -> Option<String> {
        match called {
            Called::Returned(Ok(_)) => None,
            Called::Returned(Err(e)) => Some(format!("failed ({}): {}", e.kind, e.message)),
            Called::TimedOut(after) => Some(format!(
                "did not return within {} s",
                after.as_secs_f64().round()
            )),
        }
    }

    fn all(&mut self) {
        let spec = self.spec();
        self.secrets = Secrets::of(&spec, &self.suite.config);
        self.spec = spec.clone();
        self.checks(&spec);
        if let Some(catalog) = self.discover() {
            self.reads(&catalog);
        }
        let panics = std::mem::take(&mut self.panics);
        self.push(if panics.is_empty() {
            CheckResult::pass(
                checks::NO_PANIC,
                format!("{} call(s), none panicked", self.calls),
            )
        } else {
            CheckResult::fail(checks::NO_PANIC, panics.join("; "))
        });
        let leaks = checks::leaks::not_in_output(&self.secrets, &self.outputs);
        self.push(leaks);
    }

    fn spec(&mut self) -> Value {
        let called = self.call("spec", self.recorder(), |s, _| s.spec());
        let spec = match called {
            Called::Returned(Ok(spec)) => spec,
            ref other => {
                let why = self.describe(other).unwrap_or_default();
                self.push(CheckResult::fail(
                    checks::SPEC_SCHEMA,
                    format!("spec {why}"),
                ));
                return json!({});
            }
        };
        self.push(checks::spec::valid_schema(&spec));
        self.push(checks::spec::config_validates(
            &spec,
            &self.suite.config,
            &Secrets::of(&spec, &self.suite.config),
        ));
        spec
    }

    fn checks(&mut self, spec: &Value) {
        let config = self.config.clone();
        let called = self.call("check", self.recorder(), move |s, h| s.check(&config, h));
        self.push(match self.describe(&called) {
            None => CheckResult::pass(checks::CHECK_ACCEPTS, "check passes with the config"),
            Some(why) => CheckResult::fail(checks::CHECK_ACCEPTS, format!("check {why}")),
        });

        let bad = self
            .suite
            .bad_config
            .clone()
            .or_else(|| secrets::with_wrong_secrets(spec, &self.config));
        let Some(bad) = bad else {
            self.push(CheckResult::skip(
                checks::CHECK_REJECTS,
                "no bad config given and the spec marks no field secret",
            ));
            return;
        };
        // Its CONTROL messages (if any) are not the source's: neither persisted nor merged.
        let recorder = Recorder::ignoring_control();
        let called = self.call("check with bad credentials", recorder, move |s, h| {
            s.check(&bad, h)
        });
        self.push(match called {
            Called::Returned(Ok(())) => CheckResult::fail(
                checks::CHECK_REJECTS,
                "check accepted a config with bad credentials",
            ),
            Called::Returned(Err(e)) if matches!(e.kind, ErrorKind::Config | ErrorKind::Auth) => {
                CheckResult::pass(
                    checks::CHECK_REJECTS,
                    format!("refused ({}): {}", e.kind, e.message),
                )
            }
            Called::Returned(Err(e)) => CheckResult::fail(
                checks::CHECK_REJECTS,
                format!(
                    "refused as {} where config or auth is due: {}",
                    e.kind, e.message
                ),
            ),
            Called::TimedOut(after) => CheckResult::fail(
                checks::CHECK_REJECTS,
                format!(
                    "check with bad credentials did not return within {} s",
                    after.as_secs()
                ),
            ),
        });
    }

    fn discover(&mut self) -> Option<Catalog> {
        let config = self.config.clone();
        let called = self.call("discover", self.recorder(), move |s, h| {
            s.discover(&config, h)
        });
        let catalog = match called {
            Called::Returned(Ok(catalog)) => catalog,
            ref other => {
                let why = self.describe(other).unwrap_or_default();
                self.push(CheckResult::fail(
                    checks::DISCOVER_CATALOG,
                    format!("discover {why}"),
                ));
                self.push(CheckResult::fail(
                    checks::READ_COMPLETES,
                    "no catalog to read",
                ));
                return None;
            }
        };
        if let Some(last) = self.outputs.last_mut() {
            last.returned = serde_json::to_string(&catalog).ok();
        }
        self.push(checks::catalog::catalog(&catalog));
        Some(catalog)
    }

    fn configured(&mut self, catalog: &Catalog) -> Option<ConfiguredCatalog> {
        let wanted = self.suite.streams.clone();
        if let Some(wanted) = &wanted {
            let unknown: Vec<&String> = wanted
                .iter()
                .filter(|w| !catalog.streams.iter().any(|s| &s.name == *w))
                .collect();
            if !unknown.is_empty() {
                self.push(CheckResult::fail(
                    checks::READ_COMPLETES,
                    format!("streams not in the catalog: {unknown:?}"),
                ));
                return None;
            }
        }
        let streams = catalog
            .streams
            .iter()
            .filter(|s| wanted.as_ref().is_none_or(|w| w.contains(&s.name)))
            .map(|s| ConfiguredStream {
                name: s.name.clone(),
                sync_mode: if s.sync_modes.contains(&SyncMode::Incremental) {
                    SyncMode::Incremental
                } else {
                    SyncMode::FullRefresh
                },
            })
            .collect();
        Some(ConfiguredCatalog { streams })
    }

    fn reads(&mut self, catalog: &Catalog) {
        let Some(configured) = self.configured(catalog) else {
            return;
        };
        let (called, recorder) = self.read(
            "full read",
            self.request(&configured, Window::default()),
            false,
        );
        let events = recorder.events();
        let incomplete: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Status {
                    stream,
                    status: StreamStatus::Incomplete { error },
                } => Some(format!("stream `{stream}` incomplete: {}", error.message)),
                _ => None,
            })
            .collect();
        let full = records_of(&events);
        let total: usize = full.values().map(Vec::len).sum();
        self.push(match self.describe(&called) {
            Some(why) => CheckResult::fail(checks::READ_COMPLETES, format!("read {why}")),
            None if !incomplete.is_empty() => {
                CheckResult::fail(checks::READ_COMPLETES, incomplete.join("; "))
            }
            None => CheckResult::pass(
                checks::READ_COMPLETES,
                format!(
                    "{total} record(s) from {} stream(s)",
                    configured.streams.len()
                ),
            ),
        });
        self.push(checks::records::match_schema(catalog, &full));
        self.push(checks::records::carry_key(catalog, &full));
        self.ordering(&configured, &events, &full);
        if total == 0 {
            for name in [
                checks::READ_RESUME,
                checks::READ_LIMIT,
                checks::READ_WINDOW,
                checks::READ_CANCEL,
            ] {
                self.push(CheckResult::skip(name, "the full read emitted no records"));
            }
            return;
        }
        self.limited_and_resumed(&configured, &full);
        self.window(&configured, &full);
        self.cancel(&configured);
    }

    /// Resumes each incremental stream from its earliest checkpoint with records after it.
    fn ordering(
        &mut self,
        configured: &ConfiguredCatalog,
        events: &[Event],
        full: &BTreeMap<String, Vec<SeenRecord>>,
    ) {
        let incremental: Vec<String> = configured
            .streams
            .iter()
            .filter(|s| s.sync_mode == SyncMode::Incremental)
            .map(|s| s.name.clone())
            .collect();
        let early = checks::ordering::earliest_checkpoints(events, &incremental);
        let resumed = if early.is_empty() {
            Ok(BTreeMap::new())
        } else {
            let catalog = ConfiguredCatalog {
                streams: early
                    .iter()
                    .map(|cp| ConfiguredStream {
                        name: cp.stream.clone(),
                        sync_mode: SyncMode::Incremental,
                    })
                    .collect(),
            };
            let mut request = self.request(&catalog, Window::default());
            request.state = early
                .iter()
                .map(|cp| (cp.stream.clone(), cp.state.clone()))
                .collect();
            let (called, recorder) =
                self.read("read resumed from early checkpoints", request, false);
            match self.describe(&called) {
                Some(why) => Err(why),
                None => Ok(records_of(&recorder.events())),
            }
        };
        let result = checks::ordering::state_after_records(
            events,
            full,
            &early,
            resumed.as_ref().map_err(Clone::clone),
        );
        self.push(result);
    }

    fn limited_and_resumed(
        &mut self,
        configured: &ConfiguredCatalog,
        full: &BTreeMap<String, Vec<SeenRecord>>,
    ) {
        let limit = self.suite.limit.unwrap_or_else(|| {
            let smallest = full
                .values()
                .map(Vec::len)
                .filter(|n| *n > 0)
                .min()
                .unwrap_or(2);
            (smallest as u64 / 2).max(1)
        });
        let window = Window {
            limit: Some(limit),
            ..Window::default()
        };
        let label = format!("read with limit {limit}");
        let (called, recorder) = self.read(&label, self.request(configured, window), false);
        let events = recorder.events();
        let limited = records_of(&events);
        match self.describe(&called) {
            Some(why) => {
                self.push(CheckResult::fail(
                    checks::READ_LIMIT,
                    format!("{label} {why}"),
                ));
                self.push(CheckResult::skip(
                    checks::READ_RESUME,
                    "the limited read failed",
                ));
                return;
            }
            None => self.push(checks::window::limit(limit, &limited)),
        }

        // Per incremental stream cut short: its last checkpoint and the records before it.
        let mut cut = BTreeMap::new();
        for stream in configured
            .streams
            .iter()
            .filter(|s| s.sync_mode == SyncMode::Incremental)
        {
            let full_count = full.get(&stream.name).map_or(0, Vec::len);
            let limited_count = limited.get(&stream.name).map_or(0, Vec::len);
            if limited_count >= full_count {
                continue;
            }
            let last_state = events
                .iter()
                .rposition(|e| matches!(e, Event::State { stream: s, .. } if s == &stream.name));
            if let Some(at) = last_state {
                let Event::State { state, .. } = &events[at] else {
                    continue;
                };
                let state: Value = serde_json::from_str(state).unwrap_or(Value::Null);
                let before: Vec<SeenRecord> = records_of(&events[..at])
                    .remove(&stream.name)
                    .unwrap_or_default();
                cut.insert(stream.name.clone(), (state, before));
            }
        }
        if cut.is_empty() {
            self.push(CheckResult::skip(
                checks::READ_RESUME,
                format!(
                    "no incremental stream was cut short and checkpointed by a limit of {limit}"
                ),
            ));
            return;
        }
        let resumed_catalog = ConfiguredCatalog {
            streams: cut
                .keys()
                .map(|name| ConfiguredStream {
                    name: name.clone(),
                    sync_mode: SyncMode::Incremental,
                })
                .collect(),
        };
        let mut request = self.request(&resumed_catalog, Window::default());
        request.state = cut
            .iter()
            .map(|(k, (s, _))| (k.clone(), s.clone()))
            .collect();
        let (called, recorder) = self.read("resumed read", request, false);
        if let Some(why) = self.describe(&called) {
            self.push(CheckResult::fail(
                checks::READ_RESUME,
                format!("resumed read {why}"),
            ));
            return;
        }
        let after = records_of(&recorder.events());
        let empty = Vec::new();
        let streams: Vec<ResumedStream<'_>> = cut
            .iter()
            .map(|(name, (_, before))| ResumedStream {
                stream: name,
                full: full.get(name).unwrap_or(&empty),
                before,
                after: after.get(name).unwrap_or(&empty),
            })
            .collect();
        let result = checks::resume::no_gap_no_duplicate(&streams);
        self.push(result);
    }

    fn window(&mut self, configured: &ConfiguredCatalog, full: &BTreeMap<String, Vec<SeenRecord>>) {
        let mut instants: Vec<DateTime<Utc>> = full
            .values()
            .flatten()
            .filter_map(|r| r.cursor.as_deref().and_then(checks::window::instant))
            .collect();
        if instants.is_empty() {
            self.push(CheckResult::skip(
                checks::READ_WINDOW,
                "no record has a timestamp cursor",
            ));
            return;
        }
        instants.sort_unstable();
        let start = instants[instants.len() / 2];
        let window = Window {
            start: Some(start),
            ..Window::default()
        };
        let (called, recorder) = self.read(
            "read with a start date",
            self.request(configured, window),
            false,
        );
        if let Some(why) = self.describe(&called) {
            self.push(CheckResult::fail(
                checks::READ_WINDOW,
                format!("read with a start date {why}"),
            ));
            return;
        }
        let windowed = records_of(&recorder.events());
        self.push(checks::window::window(start, full, &windowed));
    }

    fn cancel(&mut self, configured: &ConfiguredCatalog) {
        let grace = self.suite.cancel_grace;
        let (called, recorder) = self.read(
            "cancelled read",
            self.request(configured, Window::default()),
            true,
        );
        let Some(cancelled_at) = recorder.cancelled_at() else {
            self.push(CheckResult::skip(
                checks::READ_CANCEL,
                "the read sent no records to cancel on",
            ));
            return;
        };
        self.push(match called {
            Called::TimedOut(_) => CheckResult::fail(
                checks::READ_CANCEL,
                format!(
                    "the read went on for more than {} s after the host cancelled it",
                    grace.as_secs_f64()
                ),
            ),
            Called::Returned(_) => CheckResult::pass(
                checks::READ_CANCEL,
                format!(
                    "stopped {} ms after the host cancelled it",
                    cancelled_at.elapsed().as_millis()
                ),
            ),
        });
    }
}
