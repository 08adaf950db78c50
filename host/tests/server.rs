//! The watch server on a real loopback socket: webhooks (signature, shapes, duplicates,
//! limits, a blocking trigger), the `/events` feed (auth, filters, `since`, lag, a client
//! that stops reading), `/health`, `/metrics`, the page and `tail`. Every wait is
//! bounded and waits on an event, not a sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use tributary::events::{ChangeEvent, EventBus, Op};
use tributary::server::tail::{tail, TailArgs};
use tributary::server::webhooks::{entity_of_type, parse_payload, verify_signature};
use tributary::server::{self, QuickBooksWebhook, ServerConfig, ServerState, Trigger};
use tributary::watch::metrics::{Metrics, StreamLabels};
use tributary::watch::status::{Health, Registry};

/// The verifier token of Intuit's test vector.
const VERIFIER: &str = "00faeec4-08d0-4996-bb37-698ae19f0149";
/// `quickbooks-samples/Webhook_legacy_payload.json`, the exact 264 bytes.
const LEGACY: &str = r#"{"eventNotifications":[{"realmId":"1269959970","dataChangeEvent":{"entities":[{"name":"Vendor","id":"40","operation":"Update","lastUpdated":"2016-10-05T03:09:04.000Z"},{"name":"Customer","id":"43","operation":"Create","lastUpdated":"2016-10-05T03:07:04.000Z"}]}}]}"#;
/// Its `intuit-signature`.
const LEGACY_SIGNATURE: &str = "6q+xGyMirJupwKTh2/WBl2NcdxzxqdIbk3sneKTxLWM=";
/// `quickbooks-samples/Webhook_cloudevents_payload.json`.
const CLOUDEVENTS: &str = r#"[{"specversion":"1.0","id":"d1a3aedd-9670-41bf-a4f9-c148a1cc4e03","source":"intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=","type":"qbo.class.created.v1","time":"2025-10-07T19:59:07.034359333Z","intuitentityid":"1234","intuitaccountid":"310687","data":{"alternative_ids":[{"id":"djQuMTo5MTMwMzUyMjI1NzM5NDQ2OjlkNjk5ZTk2MDg:400000381","namespace":"Intuit.sbseg.v4"}]}}]"#;
const EVENTS_TOKEN: &str = "s3cret-events-token";
const WAIT: Duration = Duration::from_secs(10);

type Call = (String, Vec<String>);

/// Records every fetch request.
struct Recorder(mpsc::UnboundedSender<Call>);

impl Trigger for Recorder {
    fn fetch_now(&self, source: &str, entities: Vec<String>) {
        let _ = self.0.send((source.to_string(), entities));
    }
}

/// Blocks every fetch until released, then records it.
struct Blocking {
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    calls: mpsc::UnboundedSender<Call>,
}

impl Trigger for Blocking {
    fn fetch_now(&self, source: &str, entities: Vec<String>) {
        let _ = self
            .release
            .lock()
            .expect("lock")
            .recv_timeout(Duration::from_secs(30));
        let _ = self.calls.send((source.to_string(), entities));
    }
}

struct Server {
    addr: std::net::SocketAddr,
    bus: Arc<EventBus>,
    status: Arc<Registry>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws(&self, query: &str) -> String {
        format!("ws://{}/events{query}", self.addr)
    }

    async fn webhook(&self, body: &str, signature: Option<&str>) -> reqwest::StatusCode {
        let mut req = self
            .http
            .post(self.url("/webhooks/quickbooks"))
            .header("content-type", "application/cloudevents+json")
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("intuit-signature", sig);
        }
        req.send().await.expect("webhook sent").status()
    }

    async fn metrics_text(&self) -> String {
        self.metrics.encode(chrono::Utc::now())
    }
}

fn config() -> ServerConfig {
    let mut config = ServerConfig::new(([127, 0, 0, 1], 0).into(), EVENTS_TOKEN);
    config.webhooks = vec![
        QuickBooksWebhook {
            source: "qb".into(),
            realm_id: "1269959970".into(),
            verifier_token: VERIFIER.into(),
        },
        QuickBooksWebhook {
            source: "qb2".into(),
            realm_id: "310687".into(),
            verifier_token: VERIFIER.into(),
        },
    ];
    config
}

async fn start_with(config: ServerConfig, bus: Arc<EventBus>, trigger: Arc<dyn Trigger>) -> Server {
    let status = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let state = ServerState::new(
        config,
        bus.clone(),
        status.clone(),
        metrics.clone(),
        trigger,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        bus,
        status,
        metrics,
        http: reqwest::Client::new(),
        stop,
        serving,
    }
}

async fn start() -> (Server, mpsc::UnboundedReceiver<Call>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = start_with(config(), EventBus::new(100, 64), Arc::new(Recorder(tx))).await;
    (server, rx)
}

fn sign(body: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(VERIFIER.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn cloud_event(id: &str, kind: &str, realm: &str) -> String {
    format!(
        r#"[{{"specversion":"1.0","id":"{id}","source":"intuit.x","type":"{kind}","time":"2026-01-01T00:00:00Z","intuitentityid":"1","intuitaccountid":"{realm}","data":{{}}}}]"#
    )
}

async fn next_call(calls: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    tokio::time::timeout(WAIT, calls.recv())
        .await
        .expect("the trigger is called in time")
        .expect("trigger channel open")
}

fn event(source: &str, stream: &str, pk: &str, client: Option<&str>) -> ChangeEvent {
    ChangeEvent {
        seq: 0,
        source: source.into(),
        stream: stream.into(),
        op: Op::Upsert,
        pk: pk.into(),
        cursor: Some("2026-01-01T00:00:00Z".into()),
        client: client.map(String::from),
        record: RawValue::from_string(format!(r#"{{"id":"{pk}"}}"#)).expect("json"),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

/// The next text message, as JSON.
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("message");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("json message");
        }
    }
}

/// Polls `done` (cheap, in-memory) until true, within [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn the_reference_test_vector_verifies() {
    assert_eq!(LEGACY.len(), 264);
    assert!(verify_signature(
        VERIFIER,
        LEGACY.as_bytes(),
        LEGACY_SIGNATURE
    ));
    assert!(!verify_signature(
        "another-token",
        LEGACY.as_bytes(),
        LEGACY_SIGNATURE
    ));
    let tampered = LEGACY.replace("\"40\"", "\"41\"");
    assert!(!verify_signature(
        VERIFIER,
        tampered.as_bytes(),
        LEGACY_SIGNATURE
    ));
    assert!(!verify_signature(
        VERIFIER,
        LEGACY.as_bytes(),
        "not base64!"
    ));
}

#[test]
fn both_payload_shapes_parse_into_realm_entity_and_key() {
    let legacy = parse_payload(LEGACY.as_bytes()).expect("legacy");
    let entities: Vec<_> = legacy
        .iter()
        .map(|n| (n.realm.as_str(), n.entity.as_str()))
        .collect();
    assert_eq!(
        entities,
        [("1269959970", "Vendor"), ("1269959970", "Customer")]
    );
    assert_ne!(legacy[0].key, legacy[1].key);
    let cloud = parse_payload(CLOUDEVENTS.as_bytes()).expect("cloudevents");
    assert_eq!(
        (cloud[0].realm.as_str(), cloud[0].entity.as_str()),
        ("310687", "Class")
    );
    let single = r#"{"id":"x","type":"qbo.journalentry.updated.v1","intuitaccountid":"9"}"#;
    assert_eq!(
        parse_payload(single.as_bytes()).expect("one event")[0].entity,
        "JournalEntry"
    );
    assert_eq!(entity_of_type("qbo.invoice.updated.v1"), "Invoice");
    assert_eq!(entity_of_type("qbo.widget.created.v1"), "Widget");
    assert!(parse_payload(b"{\"hello\":1}").is_err());
    assert!(parse_payload(b"not json").is_err());
}

#[tokio::test]
async fn signed_legacy_and_cloudevents_webhooks_trigger_their_sources() {
    let (server, mut calls) = start().await;
    assert_eq!(server.webhook(LEGACY, Some(LEGACY_SIGNATURE)).await, 200);
    let (source, entities) = next_call(&mut calls).await;
    assert_eq!(
        (source.as_str(), entities),
        ("qb", vec!["Customer".to_string(), "Vendor".into()])
    );

    assert_eq!(
        server.webhook(CLOUDEVENTS, Some(&sign(CLOUDEVENTS))).await,
        200
    );
    assert_eq!(
        next_call(&mut calls).await,
        ("qb2".into(), vec!["Class".into()])
    );

    let invoice = cloud_event("e-1", "qbo.invoice.updated.v1", "1269959970");
    assert_eq!(server.webhook(&invoice, Some(&sign(&invoice))).await, 200);
    assert_eq!(
        next_call(&mut calls).await,
        ("qb".into(), vec!["Invoice".into()])
    );
    let text = server.metrics_text().await;
    assert!(
        text.contains(r#"tributary_webhooks_total{source="qb",outcome="accepted"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_webhooks_are_refused_and_trigger_nothing() {
    let (server, mut calls) = start().await;
    assert_eq!(server.webhook(LEGACY, None).await, 401);
    assert_eq!(server.webhook(LEGACY, Some("AAAA")).await, 401);
    assert_eq!(
        server.webhook(LEGACY, Some(&sign("another body"))).await,
        401
    );
    // A body signed with a token nobody configured.
    let forged = cloud_event("f-1", "qbo.bill.created.v1", "1269959970");
    assert_eq!(server.webhook(&forged, Some(LEGACY_SIGNATURE)).await, 401);

    // The next call the trigger sees is the valid request made after the refused ones.
    let marker = cloud_event("m-1", "qbo.payment.created.v1", "1269959970");
    assert_eq!(server.webhook(&marker, Some(&sign(&marker))).await, 200);
    assert_eq!(
        next_call(&mut calls).await,
        ("qb".into(), vec!["Payment".into()])
    );
    assert!(calls.try_recv().is_err(), "nothing else was triggered");
    let text = server.metrics_text().await;
    assert!(
        text.contains(r#"tributary_webhooks_total{source="unknown",outcome="bad_signature"} 4"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_repeated_cloudevent_id_triggers_once_and_counts_a_duplicate() {
    let (server, mut calls) = start().await;
    let once = cloud_event("dup-1", "qbo.invoice.updated.v1", "1269959970");
    assert_eq!(server.webhook(&once, Some(&sign(&once))).await, 200);
    assert_eq!(
        server.webhook(&once, Some(&sign(&once))).await,
        200,
        "retries are acknowledged"
    );
    assert_eq!(server.webhook(LEGACY, Some(LEGACY_SIGNATURE)).await, 200);
    assert_eq!(server.webhook(LEGACY, Some(LEGACY_SIGNATURE)).await, 200);
    let marker = cloud_event("m-2", "qbo.item.created.v1", "1269959970");
    assert_eq!(server.webhook(&marker, Some(&sign(&marker))).await, 200);

    // Each accepted webhook triggers its fetch off the request path, so the three calls
    // may come in any order; the retries were refused before any was made.
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_call(&mut calls).await.1);
    }
    got.sort();
    assert_eq!(
        got,
        [vec!["Customer", "Vendor"], vec!["Invoice"], vec!["Item"]],
        "one fetch per distinct notification"
    );
    let text = server.metrics_text().await;
    assert!(
        text.contains(r#"tributary_webhooks_total{source="qb",outcome="duplicate"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn oversized_malformed_and_unknown_realm_webhooks() {
    let (tx, mut calls) = mpsc::unbounded_channel();
    let mut config = config();
    config.max_body_bytes = 4096;
    let server = start_with(config, EventBus::new(10, 10), Arc::new(Recorder(tx))).await;

    let big = format!("[{}]", " ".repeat(8192));
    assert_eq!(server.webhook(&big, Some(&sign(&big))).await, 413);
    assert_eq!(
        server.webhook("{not json", Some(&sign("{not json"))).await,
        400
    );
    let stranger = cloud_event("u-1", "qbo.invoice.updated.v1", "999");
    assert_eq!(server.webhook(&stranger, Some(&sign(&stranger))).await, 200);

    let marker = cloud_event("m-3", "qbo.term.created.v1", "1269959970");
    assert_eq!(server.webhook(&marker, Some(&sign(&marker))).await, 200);
    assert_eq!(next_call(&mut calls).await.1, ["Term"]);
    assert!(calls.try_recv().is_err());
    let text = server.metrics_text().await;
    for outcome in ["too_large", "malformed", "unknown"] {
        let line = format!(r#"tributary_webhooks_total{{source="unknown",outcome="{outcome}"}} 1"#);
        assert!(text.contains(&line), "{line} in {text}");
    }
}

#[tokio::test]
async fn the_webhook_is_answered_at_once_while_the_trigger_blocks() {
    let (release, released) = std::sync::mpsc::channel();
    let (tx, mut calls) = mpsc::unbounded_channel();
    let trigger = Blocking {
        release: std::sync::Mutex::new(released),
        calls: tx,
    };
    let server = start_with(config(), EventBus::new(10, 10), Arc::new(trigger)).await;
    for id in ["b-1", "b-2"] {
        let body = cloud_event(id, "qbo.invoice.updated.v1", "1269959970");
        let started = Instant::now();
        assert_eq!(server.webhook(&body, Some(&sign(&body))).await, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered in {:?}",
            started.elapsed()
        );
    }
    assert!(calls.try_recv().is_err(), "the fetches are still blocked");
    release.send(()).expect("release one");
    release.send(()).expect("release two");
    next_call(&mut calls).await;
    next_call(&mut calls).await;
}

#[tokio::test]
async fn events_refuse_a_missing_or_wrong_token_before_upgrading() {
    let (server, _calls) = start().await;
    for url in [server.ws(""), server.ws("?token=wrong")] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    let mut request = server.ws("").into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", "Bearer wrong".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    let plain = server
        .http
        .get(server.url("/events"))
        .send()
        .await
        .expect("get");
    assert_eq!(plain.status(), 401);

    // The right token as a header works too.
    let mut request = server.ws("").into_client_request().expect("request");
    let bearer = format!("Bearer {EVENTS_TOKEN}");
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[tokio::test]
async fn events_deliver_only_what_the_filters_select() {
    let (server, _calls) = start().await;
    let mut socket = subscribe(&server.ws(&format!(
        "?token={EVENTS_TOKEN}&source=a&stream=x,y&client=c1&client=c3"
    )))
    .await;
    server.bus.publish(vec![
        event("a", "x", "1", Some("c1")),
        event("b", "x", "2", Some("c1")),
        event("a", "z", "3", Some("c1")),
        event("a", "y", "4", None),
        event("a", "y", "5", Some("c2")),
        event("a", "y", "6", Some("c3")),
    ]);
    let first = next_json(&mut socket).await;
    assert_eq!(first["type"], "change");
    assert_eq!(
        (first["pk"].as_str(), first["seq"].as_u64()),
        (Some("1"), Some(1))
    );
    assert_eq!(first["record"]["id"], "1");
    assert_eq!(
        (first["source"].as_str(), first["stream"].as_str()),
        (Some("a"), Some("x"))
    );
    assert_eq!(
        (first["op"].as_str(), first["client"].as_str()),
        (Some("upsert"), Some("c1"))
    );
    assert_eq!(next_json(&mut socket).await["pk"], "6");
    server.bus.publish(vec![
        event("b", "y", "7", Some("c1")),
        event("a", "x", "8", Some("c3")),
    ]);
    assert_eq!(
        next_json(&mut socket).await["pk"],
        "8",
        "nothing unselected came between"
    );
    assert_eq!(server.metrics.subscribers.get(), 1);
}

#[tokio::test]
async fn since_replays_the_backlog_then_live_events_without_a_gap() {
    let (tx, _calls) = mpsc::unbounded_channel();
    let server = start_with(config(), EventBus::new(5, 64), Arc::new(Recorder(tx))).await;
    server.bus.publish(
        (1..=8)
            .map(|i| event("a", "x", &i.to_string(), None))
            .collect(),
    );

    // seq 1..3 are gone: a gap notice, then 4..8 from the buffer, then live 9 and 10.
    let mut socket = subscribe(&server.ws(&format!("?token={EVENTS_TOKEN}&since=1"))).await;
    let gap = next_json(&mut socket).await;
    assert_eq!(
        (gap["type"].as_str(), gap["oldest"].as_u64()),
        (Some("gap"), Some(4))
    );
    server.bus.publish(
        (9..=10)
            .map(|i| event("a", "x", &i.to_string(), None))
            .collect(),
    );
    let mut seqs = Vec::new();
    for _ in 4..=10 {
        seqs.push(next_json(&mut socket).await["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());

    // Within the buffer: no notice, just what follows.
    let mut socket = subscribe(&server.ws(&format!("?token={EVENTS_TOKEN}&since=8"))).await;
    let next = next_json(&mut socket).await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("change"), Some(9))
    );
}

#[tokio::test]
async fn a_subscriber_that_lags_is_told_and_closed() {
    let (tx, _calls) = mpsc::unbounded_channel();
    let server = start_with(config(), EventBus::new(0, 4), Arc::new(Recorder(tx))).await;
    let mut socket = subscribe(&server.ws(&format!("?token={EVENTS_TOKEN}"))).await;
    wait_until("the subscription", || server.bus.subscribers() == 1).await;
    // One publish of many, on this (single) thread: the session cannot keep up.
    server.bus.publish(
        (0..50)
            .map(|i| event("a", "x", &i.to_string(), None))
            .collect(),
    );
    let lagged = next_json(&mut socket).await;
    assert_eq!(
        (lagged["type"].as_str(), lagged["missed"].as_u64()),
        (Some("lagged"), Some(46))
    );
    let closed = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None),
        "expected a close frame, got {closed:?}"
    );
    wait_until("the drop", || server.metrics.subscriber_drops.get() == 1).await;
    wait_until("the gauge", || server.metrics.subscribers.get() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_while_others_get_everything() {
    let (tx, _calls) = mpsc::unbounded_channel();
    let mut config = config();
    config.send_timeout = Duration::from_millis(300);
    let server = start_with(config, EventBus::new(0, 4096), Arc::new(Recorder(tx))).await;
    let url = server.ws(&format!("?token={EVENTS_TOKEN}"));
    let _stalled = subscribe(&url).await; // never read
    let mut reader = subscribe(&url).await;
    wait_until("both subscriptions", || server.bus.subscribers() == 2).await;

    // Large records fill the stalled client's socket buffers within a few MB.
    let padding = "x".repeat(64 * 1024);
    let big = |i: u64| {
        let mut e = event("a", "x", &i.to_string(), None);
        e.record =
            RawValue::from_string(format!(r#"{{"id":"{i}","pad":"{padding}"}}"#)).expect("json");
        e
    };
    let mut slowest_publish = Duration::ZERO;
    let mut seq = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metrics.subscriber_drops.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never dropped"
        );
        seq += 1;
        let started = Instant::now();
        server.bus.publish(vec![big(seq)]);
        slowest_publish = slowest_publish.max(started.elapsed());
        // The reading client keeps pace, event by event.
        assert_eq!(next_json(&mut reader).await["seq"].as_u64(), Some(seq));
    }
    assert!(
        slowest_publish < Duration::from_millis(200),
        "publish waited {slowest_publish:?}"
    );
    assert_eq!(server.metrics.subscriber_drops.get(), 1);
    wait_until("one subscriber left", || {
        server.metrics.subscribers.get() == 1
    })
    .await;
    server.bus.publish(vec![big(seq + 1)]);
    assert_eq!(next_json(&mut reader).await["seq"].as_u64(), Some(seq + 1));
}

#[tokio::test]
async fn health_is_503_once_a_source_fails_enough_cycles_in_a_row() {
    let (server, _calls) = start().await;
    server.status.add("qb", "quickbooks", 60.0);
    let health = || async {
        let r = server
            .http
            .get(server.url("/health"))
            .send()
            .await
            .expect("health");
        let code = r.status().as_u16();
        (code, r.json::<Value>().await.expect("json"))
    };
    let (code, body) = health().await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(body["sources"][0]["source"], "qb");
    server.status.update("qb", |v| {
        v.health = Health::Failing;
        v.consecutive_failures = 2;
    });
    assert_eq!(health().await.0, 200, "below the threshold of 3");
    server.status.update("qb", |v| v.consecutive_failures = 3);
    let (code, body) = health().await;
    assert_eq!((code, body["status"].as_str()), (503, Some("failing")));
}

#[tokio::test]
async fn metrics_name_records_webhooks_and_subscribers() {
    let (server, mut calls) = start().await;
    server
        .metrics
        .records
        .get_or_create(&StreamLabels {
            source: "qb".into(),
            stream: "invoices".into(),
        })
        .inc_by(7);
    assert_eq!(server.webhook(LEGACY, Some(LEGACY_SIGNATURE)).await, 200);
    next_call(&mut calls).await;
    let _socket = subscribe(&server.ws(&format!("?token={EVENTS_TOKEN}"))).await;
    wait_until("the gauge", || server.metrics.subscribers.get() == 1).await;

    let r = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = r.text().await.expect("text");
    for needle in [
        r#"tributary_records_total{source="qb",stream="invoices"} 7"#,
        r#"tributary_webhooks_total{source="qb",outcome="accepted"} 2"#,
        "tributary_subscribers 1",
        "tributary_subscriber_drops_total 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

#[tokio::test]
async fn tail_prints_the_filtered_events() {
    let (server, _calls) = start().await;
    server.bus.publish(vec![
        event("a", "x", "1", None),
        event("b", "x", "2", None),
        event("a", "y", "3", Some("c")),
    ]);
    let args = TailArgs {
        url: format!("ws://{}", server.addr),
        token: Some(EVENTS_TOKEN.into()),
        source: vec!["a".into()],
        stream: vec![],
        client: vec![],
        since: Some(0),
        count: Some(2),
    };
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tail(&args, &mut out))
        .await
        .expect("tail ends in time")
        .expect("tail");
    let lines: Vec<Value> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let pks: Vec<&str> = lines.iter().filter_map(|l| l["pk"].as_str()).collect();
    assert_eq!(pks, ["1", "3"]);

    let refused = TailArgs {
        token: Some("wrong".into()),
        ..args
    };
    assert!(tail(&refused, Vec::new()).await.is_err());
}

#[tokio::test]
async fn the_page_needs_the_token_and_lists_the_sources() {
    let (server, _calls) = start().await;
    server.status.add("qb", "quickbooks", 60.0);
    server.status.add("ops <&>", "superops", 30.0);
    server.status.update("qb", |v| {
        v.health = Health::Ok;
        v.streams.entry("invoices".into()).or_default().records = 12;
    });

    let r = server.http.get(server.url("/")).send().await.expect("page");
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .get(server.url(&format!("/?token={EVENTS_TOKEN}")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cookie.contains("HttpOnly"));
    let html = r.text().await.expect("html");
    for needle in [
        r#"id="sources""#,
        r#"<tr data-source="qb""#,
        r#"<tr data-source="ops &lt;&amp;&gt;""#,
        r#"data-stream="invoices""#,
        r#"id="feed""#,
        "data-pk",
        "new WebSocket",
    ] {
        assert!(html.contains(needle), "{needle} in the page");
    }

    // The cookie alone opens the page and its JSON.
    let cookie = cookie.split(';').next().expect("name=value").to_string();
    let r = server
        .http
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let status: Value = server
        .http
        .get(server.url("/status.json"))
        .bearer_auth(EVENTS_TOKEN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["sources"][1]["source"], "qb");
    assert_eq!(status["sources"][1]["streams"]["invoices"]["records"], 12);
    let r = server
        .http
        .get(server.url("/status.json"))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn shutdown_closes_subscribers_and_serve_returns() {
    let (server, _calls) = start().await;
    let mut socket = subscribe(&server.ws(&format!("?token={EVENTS_TOKEN}"))).await;
    wait_until("the session", || server.metrics.subscribers.get() == 1).await;
    server.stop.send(()).expect("server running");
    let closed = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None),
        "expected a close frame, got {closed:?}"
    );
    tokio::time::timeout(WAIT, server.serving)
        .await
        .expect("serve returns in time")
        .expect("serve task")
        .expect("serve");
    assert_eq!(server.metrics.subscriber_drops.get(), 0);
}
