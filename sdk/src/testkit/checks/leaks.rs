//! `secrets.not_in_output`: no secret config value leaves the connector except where the
//! protocol carries secrets by design (a CONTROL config update, bound for the credentials
//! store).

use super::{verdict, NO_SECRETS};
use crate::protocol::StreamStatus;
use crate::testkit::recorder::Event;
use crate::testkit::report::CheckResult;
use crate::testkit::secrets::Secrets;

/// Everything one call produced.
#[derive(Debug, Clone)]
pub struct CallOutput {
    /// Which call (`check`, `read (limit 5)`, ...).
    pub call: String,
    /// What it sent to the host.
    pub events: Vec<Event>,
    /// What it returned as text: the error message or the catalog.
    pub returned: Option<String>,
}

/// Searches every output for every secret. Reasons name the secret field and the place,
/// never the value.
pub fn not_in_output(secrets: &Secrets, outputs: &[CallOutput]) -> CheckResult {
    if secrets.is_empty() {
        return CheckResult::skip(
            NO_SECRETS,
            "the spec marks no field secret and no URL holds a password",
        );
    }
    let mut problems = Vec::new();
    for output in outputs {
        let mut found = |place: &str, text: &str| {
            if let Some(name) = secrets.found_in(text) {
                let problem = format!("`{name}` appears in {place} of {}", output.call);
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        };
        if let Some(text) = &output.returned {
            found("what the call returned", text);
        }
        for event in &output.events {
            match event {
                Event::Records { stream, records } => {
                    for r in records {
                        found(&format!("a record of `{stream}`"), &r.data);
                        found(&format!("a record key of `{stream}`"), &r.pk);
                        if let Some(c) = &r.cursor {
                            found(&format!("a record cursor of `{stream}`"), c);
                        }
                    }
                }
                Event::State { stream, state } => found(&format!("the state of `{stream}`"), state),
                Event::Log { text, .. } => found("a log line", text),
                Event::Keys { stream, keys } => {
                    for k in keys {
                        found(&format!("a snapshot key of `{stream}`"), k);
                    }
                }
                Event::Status {
                    stream,
                    status: StreamStatus::Incomplete { error },
                } => found(&format!("the error of stream `{stream}`"), &error.message),
                // Config updates carry rotated secrets to the credentials store by design.
                Event::Control(_) | Event::Status { .. } | Event::Snapshot { .. } => {}
            }
        }
    }
    let names: Vec<&str> = secrets.names().collect();
    verdict(
        NO_SECRETS,
        problems,
        format!(
            "no value of {} in any record, state, log, error or catalog",
            names.join(", ")
        ),
    )
}
