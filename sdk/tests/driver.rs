//! The stream driver, through the same glue a loaded plugin uses: statuses, unknown names,
//! order, fatal-versus-continue, panics, the summary and the per-stream record limit.

use std::collections::HashMap;

use serde_json::{json, Value};
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::toolkit::{Driver, Streams};
use tributary_sdk::{
    Catalog, ConfiguredCatalog, ConfiguredStream, Connector, ConnectorError, ConnectorInfo,
    Emitter, ErrorKind, ReadRequest, Record, StreamDescriptor, StreamStatus, SyncMode, Window,
};

/// Streams `a`, `b`, `c`, each doing what the config says: `ok`, `fail` (transient),
/// `fatal` (auth), `panic`, `hang` (until stopped) or `many` (ten records, one at a time,
/// as the limit admits them). `concurrency` picks the driver.
#[derive(Default)]
struct Scripted;

fn streams() -> Streams<&'static str> {
    ["a", "b", "c"]
        .into_iter()
        .fold(Streams::new("scripted"), |s, name| {
            let schema = json!({"type": "object", "properties": {"id": {"type": "string"}}});
            s.with(
                StreamDescriptor::incremental(name, schema, &["id"], "id"),
                name,
            )
        })
}

impl Connector for Scripted {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new("scripted", "0.0.0", "driver test")
    }
    fn spec(&self) -> Value {
        json!({"type": "object"})
    }
    async fn check(&self, _config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn discover(&self, _config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        Ok(streams().catalog())
    }
    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let script: HashMap<String, String> =
            serde_json::from_value(request.config["script"].clone()).unwrap_or_default();
        let driver = match request.config["concurrency"].as_u64() {
            Some(n) => Driver::concurrent(n as usize),
            None => Driver::sequential(),
        };
        driver
            .run(&streams(), &request, &out, |run| {
                let what = script.get(&run.name).cloned().unwrap_or_default();
                let out = out.clone();
                async move {
                    // The state handed over, echoed: proves full refresh gets none.
                    let state = json!({"had": run.state, "stream": run.definition});
                    match what.as_str() {
                        "fail" => Err(ConnectorError::transient("the server is down")),
                        "fatal" => Err(ConnectorError::auth("the token was refused")),
                        "panic" => panic!("a bug in stream {}", run.name),
                        "hang" => std::future::pending().await,
                        "many" => {
                            for i in 0..10 {
                                if !run.limit.admit() {
                                    break;
                                }
                                let record = Record::from_json(i.to_string(), "{}".to_string());
                                out.records(&run.name, vec![record])?;
                            }
                            out.checkpoint(&run.name, &json!({"sent": run.limit.admitted()}))
                        }
                        _ => out.checkpoint(&run.name, &state),
                    }
                }
            })
            .await
    }
}

tributary_sdk::export_connector!(Scripted);

fn request(streams: &[(&str, SyncMode)], config: Value) -> ReadRequest {
    ReadRequest {
        config,
        catalog: ConfiguredCatalog {
            streams: streams
                .iter()
                .map(|(name, sync_mode)| ConfiguredStream {
                    name: name.to_string(),
                    sync_mode: *sync_mode,
                })
                .collect(),
        },
        state: [
            ("a".to_string(), json!({"at": 1})),
            ("b".to_string(), json!({"at": 2})),
        ]
        .into(),
        window: Default::default(),
    }
}

fn incomplete(status: Option<&StreamStatus>) -> ConnectorError {
    match status {
        Some(StreamStatus::Incomplete { error }) => error.clone(),
        other => panic!("expected incomplete, got {other:?}"),
    }
}

use SyncMode::{FullRefresh, Incremental};

#[test]
fn streams_run_in_manifest_order_with_their_state_and_complete() {
    let handler = CollectingHandler::new();
    let req = request(
        &[("c", Incremental), ("a", Incremental), ("b", FullRefresh)],
        json!({}),
    );
    InProcess::<Scripted>::read(&req, handler.clone()).expect("every stream completes");
    let got = handler.collected();
    let order: Vec<&str> = got.checkpoints.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(order, ["c", "a", "b"]);
    assert_eq!(got.state["a"], json!({"had": {"at": 1}, "stream": "a"}));
    assert_eq!(
        got.state["b"]["had"],
        Value::Null,
        "a full refresh starts over"
    );
    assert_eq!(got.state["c"]["had"], Value::Null, "no saved state");
    for s in ["a", "b", "c"] {
        assert_eq!(got.status.get(s), Some(&StreamStatus::Complete), "{s}");
    }
}

#[test]
fn a_failed_stream_does_not_stop_the_others_and_the_summary_names_every_failure() {
    let handler = CollectingHandler::new();
    let script = json!({"script": {"a": "fail", "b": "panic"}});
    let req = request(
        &[
            ("a", Incremental),
            ("zz", Incremental),
            ("b", Incremental),
            ("c", Incremental),
        ],
        script,
    );
    let e = InProcess::<Scripted>::read(&req, handler.clone()).expect_err("three failed");
    let got = handler.collected();
    assert_eq!(got.status.get("c"), Some(&StreamStatus::Complete));
    assert_eq!(incomplete(got.status.get("a")).kind, ErrorKind::Transient);
    let unknown = incomplete(got.status.get("zz"));
    assert_eq!(unknown.kind, ErrorKind::Config);
    assert_eq!(unknown.message, "unknown stream zz; scripted has a, b, c");
    let panicked = incomplete(got.status.get("b"));
    assert_eq!(panicked.kind, ErrorKind::Panic);
    assert!(panicked.message.contains("panicked"), "{panicked:?}");
    // Not fatal: the first failure (the unknown name) leads, every failure is named.
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    for name in ["zz", "a", "b"] {
        assert!(e.message.contains(name), "{e}");
    }
    assert!(e.message.starts_with("3 streams failed"), "{e}");
}

#[test]
fn a_fatal_error_stops_the_streams_waiting_behind_it() {
    let handler = CollectingHandler::new();
    let req = request(
        &[("a", Incremental), ("b", Incremental), ("c", Incremental)],
        json!({"script": {"b": "fatal"}}),
    );
    let e = InProcess::<Scripted>::read(&req, handler.clone()).expect_err("fatal");
    let got = handler.collected();
    assert_eq!(got.status.get("a"), Some(&StreamStatus::Complete));
    assert_eq!(incomplete(got.status.get("b")).kind, ErrorKind::Auth);
    let c = incomplete(got.status.get("c"));
    assert!(
        c.message.contains("stopped before it started") && c.message.contains("stream b"),
        "{c:?}"
    );
    assert!(
        !got.checkpoints.iter().any(|(s, _)| s == "c"),
        "c never ran"
    );
    // The fatal error explains the rest, so it is the one returned.
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
}

#[test]
fn a_fatal_error_stops_concurrent_streams_that_are_still_running() {
    let handler = CollectingHandler::new();
    let req = request(
        &[("a", Incremental), ("b", Incremental)],
        json!({"script": {"a": "hang", "b": "fatal"}, "concurrency": 2}),
    );
    // `a` would never end on its own: the read returning at all is the proof.
    let e = InProcess::<Scripted>::read(&req, handler.clone()).expect_err("fatal");
    let got = handler.collected();
    let a = incomplete(got.status.get("a"));
    assert!(a.message.contains("stopped before it finished"), "{a:?}");
    assert_eq!(e.kind, ErrorKind::Auth);
}

#[test]
fn each_stream_counts_against_its_own_record_limit() {
    let handler = CollectingHandler::new();
    let mut req = request(
        &[("a", Incremental), ("b", Incremental), ("c", Incremental)],
        json!({"script": {"a": "many", "b": "many"}, "concurrency": 2}),
    );
    req.window = Window {
        limit: Some(3),
        ..Window::default()
    };
    InProcess::<Scripted>::read(&req, handler.clone()).expect("limits are not failures");
    let got = handler.collected();
    for s in ["a", "b"] {
        assert_eq!(got.records[s].len(), 3, "stream {s} stops at the limit");
        assert_eq!(got.state[s], json!({"sent": 3}));
        assert_eq!(got.status.get(s), Some(&StreamStatus::Complete), "{s}");
    }
    let line = got
        .logs
        .iter()
        .find(|l| l.contains("stream a:"))
        .expect("the driver logs each stream's end");
    assert!(
        line.contains("3 records, stopped at its record limit of 3"),
        "{line}"
    );
}
