//! The NATS JetStream sink against a real server (`TRIBUTARY_TEST_NATS_URL`, see
//! `tests/tests/common/services.rs`), and its `[sinks.nats]` manifest section. Each test
//! uses a stream and subject prefix of its own, deleted at the end, so tests run in
//! parallel on one server.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tributary::events::{ChangeEvent, CommitSink, Op};
use tributary::manifest::{self, NatsSinkConfig};
use tributary::sinks::{NatsSink, SinkError};
use tributary::watch::metrics::{Metrics, SinkLabels};

#[path = "../../tests/tests/common/services.rs"]
mod services;

/// A stream and subject prefix of this test's own, and a client to inspect them; the
/// stream is deleted on drop.
struct Fixture {
    config: NatsSinkConfig,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let url = services::service_url("TRIBUTARY_TEST_NATS_URL")?;
        let unique = services::unique_suffix();
        let mut config = NatsSinkConfig::new(url.clone());
        config.stream = format!("T_{unique}");
        config.subject_prefix = format!("t{unique}.events");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt
            .block_on(async_nats::connect(url))
            .expect("test client connects");
        // Inside the runtime: the context spawns its ack handler.
        let js = rt.block_on(async { jetstream::new(client) });
        Some(Fixture { config, rt, js })
    }

    fn stream(&self) -> jetstream::stream::Stream {
        self.rt
            .block_on(self.js.get_stream(&self.config.stream))
            .expect("the sink created the stream")
    }

    fn message_count(&self) -> u64 {
        let mut stream = self.stream();
        self.rt
            .block_on(stream.info())
            .expect("stream info")
            .state
            .messages
    }

    /// Every message of the stream, through a pull consumer, oldest first.
    fn consume(&self, expected: usize) -> Vec<jetstream::Message> {
        let stream = self.stream();
        self.rt.block_on(async {
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::Config {
                    filter_subject: format!("{}.>", self.config.subject_prefix),
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let mut batch = consumer
                .fetch()
                .max_messages(expected + 1)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("fetch");
            let mut out = Vec::new();
            while let Some(message) = batch.next().await {
                let message = message.expect("message");
                message.ack().await.expect("ack");
                out.push(message);
            }
            out
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.js.delete_stream(&self.config.stream));
    }
}

fn event(source: &str, stream: &str, pk: &str, cursor: &str) -> ChangeEvent {
    ChangeEvent {
        seq: 0,
        source: source.into(),
        stream: stream.into(),
        op: Op::Upsert,
        pk: pk.into(),
        cursor: Some(cursor.into()),
        client: Some("c1".into()),
        record: RawValue::from_string(format!(r#"{{"id":"{pk}","name":"n{pk}"}}"#)).expect("json"),
    }
}

fn batch() -> Vec<ChangeEvent> {
    let mut events: Vec<ChangeEvent> = (1..=20)
        .map(|i| {
            event(
                "superops",
                "tickets",
                &i.to_string(),
                "2026-01-01T00:00:00Z",
            )
        })
        .collect();
    // A name with every character a subject token cannot hold.
    events.push(event("internal db", "client.profiles*>", "7", "c"));
    let mut deleted = event("quickbooks", "invoices", "9", "2026-01-02T00:00:00Z");
    deleted.op = Op::Delete;
    events.push(deleted);
    events
}

#[test]
fn publish_delivers_every_event_on_its_subject_with_its_message_id() {
    let Some(fx) = Fixture::new() else { return };
    let metrics = std::sync::Arc::new(Metrics::new());
    let mut sink = NatsSink::connect(&fx.config)
        .expect("connects")
        .with_metrics(metrics.clone());
    let events = batch();
    CommitSink::publish(&mut sink, &events).expect("every event acknowledged");
    assert_eq!(CommitSink::name(&sink), "nats");

    let received = fx.consume(events.len());
    assert_eq!(
        received.len(),
        events.len(),
        "exactly the batch, nothing more"
    );
    let prefix = &fx.config.subject_prefix;
    for (sent, got) in events.iter().zip(&received) {
        let subject = format!(
            "{prefix}.{}.{}",
            sent.source.replace(' ', "_"),
            sent.stream.replace(['.', '*', '>'], "_")
        );
        assert_eq!(got.subject.as_str(), subject);
        assert_eq!(sink.subject(&sent.source, &sent.stream), subject);
        let id = got
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string());
        assert_eq!(id.as_deref(), Some(sent.message_id().as_str()));
        let payload: serde_json::Value = serde_json::from_slice(&got.payload).expect("json");
        assert_eq!(payload, serde_json::to_value(sent).expect("json"));
    }
    assert_eq!(
        received[20].subject.as_str(),
        format!("{prefix}.internal_db.client_profiles__")
    );
    let acknowledged = metrics
        .sink_events
        .get_or_create(&SinkLabels {
            sink: "nats".into(),
        })
        .get();
    assert_eq!(acknowledged, events.len() as u64);
}

#[test]
fn a_resent_batch_is_acknowledged_and_not_stored_twice() {
    let Some(fx) = Fixture::new() else { return };
    let events = batch();
    let mut sink = NatsSink::connect(&fx.config).expect("connects");
    let first = sink.send(&events).expect("first delivery");
    assert_eq!((first.acknowledged, first.duplicates), (events.len(), 0));
    assert_eq!(fx.message_count(), events.len() as u64);

    // A crash after the acknowledgement but before the commit: a new process re-reads the
    // source and sends the same changes again (and a seq the bus renumbered).
    drop(sink);
    let mut again = NatsSink::connect(&fx.config).expect("reconnects");
    let resent: Vec<ChangeEvent> = events
        .iter()
        .cloned()
        .map(|mut e| {
            e.seq = 1000;
            e
        })
        .collect();
    let second = again
        .send(&resent)
        .expect("duplicates are acknowledged too");
    assert_eq!(
        (second.acknowledged, second.duplicates),
        (events.len(), events.len())
    );
    CommitSink::publish(&mut again, &resent).expect("publish returns Ok");
    assert_eq!(
        fx.message_count(),
        events.len() as u64,
        "no message stored twice"
    );

    // A later change of the same row is new.
    again
        .send(&[event("superops", "tickets", "1", "2026-01-03T00:00:00Z")])
        .expect("new change");
    assert_eq!(fx.message_count(), events.len() as u64 + 1);
}

#[test]
fn an_existing_stream_keeps_its_settings_and_gains_the_window() {
    let Some(mut fx) = Fixture::new() else { return };
    fx.rt
        .block_on(fx.js.create_stream(jetstream::stream::Config {
            name: fx.config.stream.clone(),
            subjects: vec![format!("{}.>", fx.config.subject_prefix)],
            duplicate_window: Duration::from_secs(10),
            max_messages: 12_345,
            ..Default::default()
        }))
        .expect("operator's stream");
    fx.config.duplicate_window_secs = 300;
    NatsSink::connect(&fx.config).expect("connects");
    let info = fx.stream().cached_info().config.clone();
    assert_eq!(info.duplicate_window, Duration::from_secs(300));
    assert_eq!(info.max_messages, 12_345, "the operator's limit is kept");

    let mut missing = fx.config.clone();
    missing.create_stream = false;
    missing.stream.push_str("_MISSING");
    let err = NatsSink::connect(&missing).expect_err("a missing stream is refused");
    let msg = err.to_string();
    assert!(matches!(err, SinkError::Stream { .. }), "{msg}");
    assert!(
        msg.contains("does not exist") && msg.contains("create_stream"),
        "{msg}"
    );
}

#[test]
fn publish_fails_clearly_when_the_stream_is_gone() {
    let Some(mut fx) = Fixture::new() else { return };
    fx.config.ack_timeout_secs = 3;
    let mut sink = NatsSink::connect(&fx.config).expect("connects");
    fx.rt
        .block_on(fx.js.delete_stream(&fx.config.stream))
        .expect("deleted");
    let started = Instant::now();
    let err = CommitSink::publish(&mut sink, &batch()).expect_err("nothing can store them");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(err.contains("sink `nats`"), "{err}");
    assert!(err.contains("22 of 22 event(s) not acknowledged"), "{err}");
}

#[test]
fn an_unreachable_server_fails_fast_with_a_clear_error() {
    // A port with nothing listening: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = NatsSinkConfig::new(format!("nats://user:hunter2@127.0.0.1:{port}"));
    config.ack_timeout_secs = 2;
    let started = Instant::now();
    let err = NatsSink::connect(&config).expect_err("nothing listens");
    let msg = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SinkError::Connect { .. }), "{msg}");
    assert!(
        msg.contains(&format!("cannot connect to nats://127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");

    // A server that accepts but never speaks: the timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    config.url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let err = NatsSink::connect(&config).expect_err("no INFO from the server");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn nats_section_defaults_interpolation_and_refusals() {
    let parse = |text: &str| manifest::parse(text, Path::new("connectors.toml"));

    let m = parse("[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\n").expect("minimal");
    let nats = m.sinks.nats.expect("section");
    assert_eq!(nats.stream, "TRIBUTARY");
    assert_eq!(nats.subject_prefix, "tributary");
    assert_eq!(nats.duplicate_window_secs, 120);
    assert_eq!(nats.ack_timeout_secs, 10);
    assert!(nats.create_stream);
    assert!(nats.credentials.is_none() && nats.token.is_none() && nats.user.is_none());
    assert!(parse("").expect("no sinks").sinks.nats.is_none());

    std::env::set_var("TRIBUTARY_TEST_NATS_TOKEN_VALUE", "s3cr3t-token");
    std::env::set_var("TRIBUTARY_TEST_NATS_HOST", "nats.example.com");
    let m = parse(
        "[sinks.nats]\nurl = \"tls://${TRIBUTARY_TEST_NATS_HOST}:4222\"\ntoken = \"${TRIBUTARY_TEST_NATS_TOKEN_VALUE}\"\nstream = \"MSP_EVENTS\"\nsubject_prefix = \"acme.msp\"\nduplicate_window_secs = 600\ncreate_stream = false\n",
    )
    .expect("interpolated");
    let nats = m.sinks.nats.expect("section");
    assert_eq!(nats.url, "tls://nats.example.com:4222");
    assert_eq!(nats.token.as_deref(), Some("s3cr3t-token"));
    assert_eq!(
        (nats.stream.as_str(), nats.subject_prefix.as_str()),
        ("MSP_EVENTS", "acme.msp")
    );
    assert_eq!(nats.duplicate_window_secs, 600);
    assert!(!nats.create_stream);
    assert!(
        !format!("{nats:?}").contains("s3cr3t"),
        "secrets are never printed"
    );
    assert_eq!(
        nats.credentials_path(Path::new("/etc/tributary")),
        None,
        "no credentials file"
    );

    let msg = parse("[sinks.nats]\nurl = \"nats://h\"\nsubjects = \"x\"\n")
        .expect_err("unknown key")
        .to_string();
    assert!(msg.contains("line 3") && msg.contains("subjects"), "{msg}");
    let msg = parse("[sinks.kafka]\nurl = \"x\"\n")
        .expect_err("unknown sink")
        .to_string();
    assert!(msg.contains("kafka"), "{msg}");
    let msg = parse("[sinks.nats]\nstream = \"S\"\n")
        .expect_err("url is required")
        .to_string();
    assert!(msg.contains("url"), "{msg}");
    let msg = parse("[sinks.nats]\nurl = \"nats://h\"\nduplicate_window_secs = 0\n")
        .expect_err("zero window")
        .to_string();
    assert!(msg.contains("duplicate_window_secs"), "{msg}");

    let msg = parse(
        "[sinks.nats]\nurl = \"http://u:hunter2@h\"\nstream = \"a.b\"\nsubject_prefix = \"x.*\"\ntoken = \"t\"\nuser = \"u\"\n",
    )
    .expect_err("bad values")
    .to_string();
    for expected in [
        "key `sinks.nats.url`: expected `nats://host:port`",
        "key `sinks.nats.stream`: `.` cannot be in a stream name",
        "key `sinks.nats.subject_prefix`: '*' cannot be in a subject prefix",
        "choose one way to authenticate, not `token` and `user`",
        "key `sinks.nats.user`: `user` needs `password`",
    ] {
        assert!(msg.contains(expected), "{expected} in {msg}");
    }
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = parse("[sinks.nats]\nurl = \"nats://h\"\nsubject_prefix = \"a..b\"\n")
        .expect_err("empty token")
        .to_string();
    assert!(msg.contains("none of them empty"), "{msg}");
}
