//! The reads: in full, resumed from early checkpoints, with a limit and resumed from
//! its state, from a start date, and cancelled on the first batch.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::session::{records_of, Called};
use super::Run;
use crate::protocol::{
    Catalog, ConfiguredCatalog, ConfiguredStream, StreamStatus, SyncMode, Window,
};
use crate::testkit::checks::{self, resume::ResumedStream};
use crate::testkit::recorder::{Event, SeenRecord};
use crate::testkit::report::CheckResult;

impl Run {
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

    pub(super) fn reads(&mut self, catalog: &Catalog) {
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
