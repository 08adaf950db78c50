//! One call of the connector: on a thread of its own, waited for a bounded time, with
//! everything it sent recorded and taken note of.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Run;
use crate::error::{ConnectorError, ErrorKind};
use crate::host::HostHandler;
use crate::protocol::{ConfiguredCatalog, ControlMessage, ReadRequest, StreamStatus, Window};
use crate::testkit::checks::leaks::CallOutput;
use crate::testkit::recorder::{Event, Recorder, SeenRecord};
use crate::testkit::report::CheckResult;
use crate::testkit::secrets;
use crate::testkit::subject::Subject;

/// How a call ended.
pub(super) enum Called<T> {
    Returned(Result<T, ConnectorError>),
    /// Still running after the allowed time; its thread is left behind.
    TimedOut(Duration),
}

/// Records of one read, per stream.
pub(super) fn records_of(events: &[Event]) -> BTreeMap<String, Vec<SeenRecord>> {
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
    pub(super) fn push(&mut self, result: CheckResult) {
        let reason = self.secrets.redact(&result.reason);
        self.results.push(CheckResult { reason, ..result });
    }

    /// Calls the connector on a thread of its own and waits a bounded time: the call
    /// timeout, or the cancel grace once `recorder` has cancelled.
    pub(super) fn call<T: Send + 'static>(
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
    pub(super) fn observe<T>(&mut self, label: &str, recorder: &Recorder, called: &Called<T>) {
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

    pub(super) fn recorder(&self) -> Arc<Recorder> {
        Recorder::new(self.suite.on_control.clone())
    }

    pub(super) fn read(
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

    pub(super) fn request(&self, catalog: &ConfiguredCatalog, window: Window) -> ReadRequest {
        ReadRequest {
            config: self.config.clone(),
            catalog: catalog.clone(),
            state: BTreeMap::new(),
            window,
        }
    }

    pub(super) fn describe<T>(&self, called: &Called<T>) -> Option<String> {
        match called {
            Called::Returned(Ok(_)) => None,
            Called::Returned(Err(e)) => Some(format!("failed ({}): {}", e.kind, e.message)),
            Called::TimedOut(after) => Some(format!(
                "did not return within {} s",
                after.as_secs_f64().round()
            )),
        }
    }
}
