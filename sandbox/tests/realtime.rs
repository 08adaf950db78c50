//! The emulators' real-time support, over real HTTP on loopback: signed QuickBooks
//! webhooks (both shapes, re-sends, batching, a receiver that is down or slow) and the
//! mutation timer of both emulators. Every wait is on a counter or a channel, with a
//! timeout; nothing synchronises by sleeping.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tributary_sandbox::mutate::{Change, MutateConfig, Operation};
use tributary_sandbox::quickbooks::{
    self, webhook_signature, Counts, Emulator, EmulatorConfig, WebhookConfig, WebhookError,
    WebhookShape,
};
use tributary_sandbox::superops;

const TOKEN: &str = "00faeec4-08d0-4996-bb37-698ae19f0149";
const WAIT: Duration = Duration::from_secs(10);

/// One POST the receiver got.
#[derive(Debug)]
struct Delivery {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// A tiny webhook receiver on 127.0.0.1: answers 200 and hands every request to the test.
struct Receiver {
    addr: SocketAddr,
    got: mpsc::Receiver<Delivery>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, got) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            // Bounded: a test sends far fewer; Drop wakes the accept to end it early.
            for stream in listener.incoming().take(10_000) {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                if let Some(d) = read_request(&mut stream) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    if tx.send(d).is_err() {
                        return;
                    }
                }
            }
        });
        Receiver { addr, got, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/webhooks/quickbooks", self.addr)
    }

    fn next(&self) -> Delivery {
        self.got
            .recv_timeout(WAIT)
            .expect("a webhook within the wait")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Delivery> {
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(Delivery {
        path,
        headers,
        body,
    })
}

/// One HTTP/1.1 exchange; returns the status and body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn host(emu: &Emulator) -> String {
    emu.base_url().trim_start_matches("http://").to_string()
}

/// An access token from the emulator's token endpoint.
fn access_token(emu: &Emulator) -> String {
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
        emu.initial_refresh_token(),
        emu.client_id(),
        emu.client_secret()
    );
    let (status, body) = http(
        &host(emu),
        &format!("POST /oauth2/v1/tokens/bearer HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}", form.len()),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Ids (entity, id, deleted?) CDC reports for `entities` changed since `since`.
fn cdc(emu: &Emulator, token: &str, entities: &str, since: &str) -> Vec<(String, String, bool)> {
    let (status, body) = http(
        &host(emu),
        &format!("GET /v3/company/{}/cdc?entities={entities}&changedSince={since} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\naccept: application/json\r\nconnection: close\r\n\r\n", emu.realm_id()),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("cdc json");
    let mut out = Vec::new();
    for block in v["CDCResponse"][0]["QueryResponse"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (entity, rows) in block.as_object().into_iter().flatten() {
            for r in rows.as_array().into_iter().flatten() {
                out.push((
                    entity.clone(),
                    r["Id"].as_str().unwrap_or("").to_string(),
                    r["status"] == "Deleted",
                ));
            }
        }
    }
    out
}

fn small() -> EmulatorConfig {
    EmulatorConfig {
        counts: Counts {
            customers: 10,
            invoices: 30,
            payments: 10,
            ..Counts::default()
        },
        ..EmulatorConfig::default()
    }
}

/// The signature both ways: the crate's function and HMAC-SHA256 by hand.
fn assert_signed(d: &Delivery, token: &str) {
    let sig = d.header("intuit-signature");
    assert_eq!(sig, webhook_signature(token, &d.body));
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(&d.body);
    let raw = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(sig, raw);
}

/// Legacy entities of one payload: (name, id, operation).
fn legacy_entities(v: &Value) -> Vec<(String, String, String)> {
    v["eventNotifications"][0]["dataChangeEvent"]["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_string(),
                e["id"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn triple(c: &Change) -> (String, String, String) {
    (
        c.entity.clone(),
        c.id.clone(),
        c.operation.as_str().to_string(),
    )
}

#[test]
fn every_kind_of_change_sends_a_signed_legacy_webhook() {
    let receiver = Receiver::start();
    let emu = Emulator::start(small()).expect("emulator");
    // Set after start: the receiver's port is known only once it is bound.
    emu.set_webhook(Some(WebhookConfig::new(receiver.url(), TOKEN)))
        .expect("loopback target");

    let mut expected = Vec::new();
    let changed = emu.mutate().expect("a change");
    expected.push(triple(&changed));
    let invoice = emu.ids("Invoice")[0].clone();
    assert!(emu.update("Invoice", &invoice));
    expected.push(("Invoice".into(), invoice.clone(), "Update".into()));
    assert!(emu.delete("Invoice", &invoice));
    expected.push(("Invoice".into(), invoice, "Delete".into()));
    let created = emu.create("Customer", 1);
    expected.push(("Customer".into(), created[0].clone(), "Create".into()));

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let d = receiver.next();
        assert_eq!(d.path, "/webhooks/quickbooks");
        assert_eq!(d.header("content-type"), "application/json");
        assert_signed(&d, TOKEN);
        let v = d.json();
        assert_eq!(v["eventNotifications"][0]["realmId"], emu.realm_id());
        for e in v["eventNotifications"][0]["dataChangeEvent"]["entities"]
            .as_array()
            .expect("entities")
        {
            // `2016-10-05T03:09:04.000Z`, as the reference sample.
            let t = e["lastUpdated"].as_str().expect("lastUpdated");
            assert_eq!(t.len(), 24, "{t}");
            assert!(t.ends_with(".000Z"), "{t}");
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        }
        seen.extend(legacy_entities(&v));
    }
    assert_eq!(seen, expected);
    let stats = emu
        .wait_for_webhooks(WAIT, |s| s.delivered == s.payloads && s.events == 4)
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    assert_eq!((stats.failed, stats.dropped, stats.overflowed), (0, 0, 0));
}

#[test]
fn cloudevents_webhooks_are_signed_and_resent_with_the_same_id() {
    let receiver = Receiver::start();
    let emu = Emulator::start(EmulatorConfig {
        webhook: Some(
            WebhookConfig::new(receiver.url(), TOKEN)
                .shape(WebhookShape::CloudEvents)
                .resends(2),
        ),
        ..small()
    })
    .expect("emulator");
    let change = emu.mutate().expect("a change");
    let copies: Vec<Delivery> = (0..3).map(|_| receiver.next()).collect();
    for d in &copies {
        assert_signed(d, TOKEN);
        assert_eq!(d.header("content-type"), "application/cloudevents+json");
        assert_eq!(d.body, copies[0].body, "a re-send is the same bytes");
    }
    let v = copies[0].json();
    let events = v.as_array().expect("a JSON array");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(
        e["type"],
        format!(
            "qbo.{}.{}.v1",
            change.entity.to_lowercase(),
            change.operation.past_tense()
        )
    );
    assert_eq!(e["intuitentityid"], change.id.as_str());
    assert_eq!(e["intuitaccountid"], emu.realm_id());
    assert!(e["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("intuit.")));
    assert_eq!(e["id"].as_str().map(str::len), Some(36));
    assert_eq!(e["data"], json!({}));
    // `2025-10-07T19:59:07.034359333Z`: nanoseconds, UTC.
    let t = e["time"].as_str().expect("time");
    assert_eq!(t.len(), 30, "{t}");
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    let ids: Vec<&Value> = copies.iter().map(|_| &e["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
    let stats = emu
        .wait_for_webhooks(WAIT, |s| s.delivered == 3)
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    assert_eq!((stats.payloads, stats.events), (1, 1));

    // A second change gets a new id.
    emu.mutate().expect("a change");
    let next = receiver.next().json();
    assert_ne!(next[0]["id"], e["id"]);
}

#[test]
fn a_burst_of_changes_is_batched_at_most_100_per_post() {
    let receiver = Receiver::start();
    let emu = Emulator::start(small()).expect("emulator");
    emu.set_webhook(Some(WebhookConfig::new(receiver.url(), TOKEN)))
        .expect("target");
    let ids = emu.create("Invoice", 250);
    let mut seen = Vec::new();
    let mut posts = 0;
    while seen.len() < ids.len() {
        let d = receiver.next();
        assert_signed(&d, TOKEN);
        let entities = legacy_entities(&d.json());
        assert!(!entities.is_empty() && entities.len() <= quickbooks::MAX_BATCH);
        seen.extend(entities.into_iter().map(|(_, id, _)| id));
        posts += 1;
    }
    assert_eq!(seen, ids);
    assert!(posts >= 3, "{posts} posts for 250 events");
}

#[test]
fn the_timer_stops_after_its_maximum_and_every_api_sees_its_changes() {
    let receiver = Receiver::start();
    let emu = Emulator::start(EmulatorConfig {
        mutate: Some(MutateConfig {
            every: Duration::from_millis(5),
            seed: 9,
            max: 12,
        }),
        webhook: Some(WebhookConfig::new(receiver.url(), TOKEN)),
        ..small()
    })
    .expect("emulator");
    let since = (emu.now() - chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let done = emu
        .wait_for_mutations(WAIT, |s| s.timer_finished)
        .unwrap_or_else(|| panic!("{:?}", emu.mutation_stats()));
    assert_eq!((done.timed, done.on_demand), (12, 0));
    // Finished means the loop has returned: no change can follow.
    let stats = emu
        .wait_for_webhooks(WAIT, |s| s.events == 12 && s.delivered == s.payloads)
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    assert_eq!(stats.failed, 0);
    let mut announced = Vec::new();
    while announced.len() < 12 {
        announced.extend(legacy_entities(&receiver.next().json()));
    }
    // CDC reports each announced object, deleted ones as tombstones.
    let token = access_token(&emu);
    let changed = cdc(&emu, &token, "Invoice,Customer,Payment", &since);
    for (name, id, op) in &announced {
        let deleted = op == "Delete" && name != "Customer";
        assert!(
            changed.contains(&(name.clone(), id.clone(), deleted))
                // A later change of the same object shows as that later change.
                || changed.iter().any(|(n, i, _)| n == name && i == id),
            "{name} {id} {op} not in CDC: {changed:?}"
        );
    }
}

#[test]
fn a_receiver_that_is_down_does_not_block_the_api() {
    // A port that was free a moment ago: connections are refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let emu = Emulator::start(small()).expect("emulator");
    let mut config = WebhookConfig::new(format!("http://{closed}/hook"), TOKEN);
    config.attempts = 3;
    config.backoff = Duration::from_millis(300);
    emu.set_webhook(Some(config)).expect("target");
    for _ in 0..3 {
        emu.mutate().expect("a change");
    }
    emu.wait_for_webhooks(WAIT, |s| s.failed >= 1)
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    // Deliveries are failing and backing off now; the API answers all the same.
    let started = Instant::now();
    let token = access_token(&emu);
    let (status, body) = http(
        &host(&emu),
        &format!("GET /v3/company/{}/query?query=SELECT%20*%20FROM%20Invoice%20MAXRESULTS%205 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n", emu.realm_id()),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(emu.mutate().is_some());
    let stats = emu
        .wait_for_webhooks(WAIT, |s| s.events == 4 && s.dropped == s.payloads)
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.failed, stats.dropped * 3);
}

#[test]
fn a_receiver_that_never_answers_does_not_block_changes() {
    // Accepts connections (the kernel does) but never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let emu = Emulator::start(small()).expect("emulator");
    let mut config = WebhookConfig::new(
        format!("http://{}/", silent.local_addr().expect("addr")),
        TOKEN,
    );
    config.attempts = 2;
    config.backoff = Duration::from_millis(10);
    config.timeout = Duration::from_millis(200);
    emu.set_webhook(Some(config)).expect("target");
    let started = Instant::now();
    for _ in 0..20 {
        emu.mutate().expect("a change");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let stats = emu
        .wait_for_webhooks(WAIT, |s| {
            s.payloads >= 1 && s.dropped == s.payloads && s.events == 20
        })
        .unwrap_or_else(|| panic!("{:?}", emu.webhook_stats()));
    assert_eq!(stats.delivered, 0);
    drop(silent);
}

#[test]
fn only_loopback_http_receivers_are_accepted() {
    let emu = Emulator::start(small()).expect("emulator");
    for url in [
        "http://192.168.1.10/hook",
        "http://localhost:8080/",
        "https://127.0.0.1/",
    ] {
        assert!(
            emu.set_webhook(Some(WebhookConfig::new(url, TOKEN)))
                .is_err(),
            "{url}"
        );
    }
    assert!(matches!(
        emu.set_webhook(Some(WebhookConfig::new("http://127.0.0.1:9/", ""))),
        Err(WebhookError::EmptyToken)
    ));
    assert!(Emulator::start(EmulatorConfig {
        webhook: Some(WebhookConfig::new("http://10.1.2.3:80/", TOKEN)),
        ..small()
    })
    .is_err());
    // Without a receiver nothing is queued.
    emu.mutate().expect("a change");
    assert_eq!(emu.webhook_stats().events, 0);
}

#[test]
fn the_receiver_can_be_set_over_http_too() {
    let receiver = Receiver::start();
    let emu = Emulator::start(small()).expect("emulator");
    let post = |body: &str| {
        http(
            &host(&emu),
            &format!("POST /emulator/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()),
        )
    };
    let refused = json!({"url": "http://203.0.113.9/hook", "verifier_token": TOKEN}).to_string();
    assert_eq!(post(&refused).0, 400);
    let set =
        json!({"url": receiver.url(), "verifier_token": TOKEN, "shape": "cloudevents"}).to_string();
    assert_eq!(post(&set).0, 204);
    let change = emu.mutate().expect("a change");
    let d = receiver.next();
    assert_signed(&d, TOKEN);
    assert_eq!(d.json()[0]["intuitentityid"], change.id.as_str());
    assert_eq!(post("{}").0, 204);
    emu.mutate().expect("a change");
    assert_eq!(
        emu.webhook_stats().events,
        1,
        "cleared: nothing more is queued"
    );
}

fn superops_tickets_by_update(emu: &superops::Emulator) -> Vec<Value> {
    let body = json!({
        "query": "query getTicketList($input: ListInfoInput!) { getTicketList(input: $input) { tickets { ticketId status updatedTime } listInfo { hasMore } } }",
        "variables": {"input": {"page": 1, "pageSize": 3, "sort": {"attribute": "updatedTime", "order": "DESC"}}}
    })
    .to_string();
    let (status, text) = http(
        &emu.addr().to_string(),
        &format!("POST /msp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncustomersubdomain: {}\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", emu.subdomain(), emu.token(), body.len()),
    );
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["data"]["getTicketList"]["tickets"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn superops_changes_on_demand_show_in_the_ticket_list() {
    let emu = superops::Emulator::start(superops::EmulatorConfig::default()).expect("emulator");
    let mut ticket_changes = 0;
    for _ in 0..30 {
        let change = emu.mutate();
        if change.entity != "Ticket" {
            assert_eq!(
                (change.entity.as_str(), change.operation),
                ("Worklog", Operation::Create)
            );
            continue;
        }
        // The newest updatedTime is the ticket just changed.
        let top = superops_tickets_by_update(&emu);
        assert_eq!(top[0]["ticketId"], change.id.as_str(), "{change:?}");
        ticket_changes += 1;
    }
    assert!(ticket_changes > 0);
    assert_eq!(emu.mutation_stats().on_demand, 30);
}

#[test]
fn superops_timer_stops_after_its_maximum() {
    let emu = superops::Emulator::start(superops::EmulatorConfig {
        mutate: Some(MutateConfig::new(Duration::from_millis(5), 8)),
        ..superops::EmulatorConfig::default()
    })
    .expect("emulator");
    let done = emu
        .wait_for_mutations(WAIT, |s| s.timer_finished)
        .unwrap_or_else(|| panic!("{:?}", emu.mutation_stats()));
    assert_eq!(done.timed, 8);
    assert_eq!(done.on_demand, 0);
    // Finished means the loop has returned: the next change is the one asked for.
    let change = emu.mutate();
    assert_eq!(emu.mutation_stats().timed, 8);
    if change.entity == "Ticket" {
        assert_eq!(
            superops_tickets_by_update(&emu)[0]["ticketId"],
            change.id.as_str()
        );
    }
}
