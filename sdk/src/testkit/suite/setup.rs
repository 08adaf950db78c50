//! The calls before any read: `spec`, `check` with the config and with bad
//! credentials, and `discover`.

use serde_json::{json, Value};

use super::session::Called;
use super::Run;
use crate::error::ErrorKind;
use crate::protocol::Catalog;
use crate::testkit::checks;
use crate::testkit::recorder::Recorder;
use crate::testkit::report::CheckResult;
use crate::testkit::secrets::{self, Secrets};

impl Run {
    pub(super) fn all(&mut self) {
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
}
