//! The connector against a small API served on loopback by this test: every item read,
//! in order, with the state to resume from; a resumed read gets only what changed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tributary_example_http::ExampleHttp;
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::testkit::{in_process, Suite};
use tributary_sdk::{ConfiguredCatalog, ConfiguredStream, ErrorKind, ReadRequest, SyncMode};

const TOKEN: &str = "test-token";
const PAGE: usize = 3;

/// The test API's data: items (id, updated_at), and an update to apply right after the
/// next page is served (to change an item in the middle of a read).
#[derive(Default)]
struct Items {
    list: Vec<(u32, String)>,
    after_next_page: Option<(u32, String)>,
}

/// Serves `GET /items?updated_since=S&page=N` from `items`, in `(updated_at, id)` order,
/// until the test ends; answers 401 to any other token.
fn serve(items: Arc<Mutex<Items>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut head = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                head.push(std::mem::take(&mut line));
            }
            let target = head.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("");
            let query = |key: &str| {
                target
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                    .map(|v| v.replace("%3A", ":"))
            };
            let authorized = head
                .iter()
                .any(|h| h.trim() == format!("authorization: Bearer {TOKEN}"));
            let (status, body) = if !authorized {
                ("401 Unauthorized", "{}".to_string())
            } else {
                let since = query("updated_since").unwrap_or_default();
                let page: usize = query("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let mut items = items.lock().expect("items");
                items.list.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
                let newer: Vec<_> = items.list.iter().filter(|(_, at)| *at >= since).collect();
                let chunk: Vec<_> = newer.iter().skip((page - 1) * PAGE).take(PAGE)
                    .map(|(id, at)| json!({"id": id, "updated_at": at, "name": format!("item {id}")}))
                    .collect();
                let next = (page * PAGE < newer.len()).then_some(page + 1);
                let body = json!({"items": chunk, "next_page": next}).to_string();
                if let Some((id, at)) = items.after_next_page.take() {
                    items.list.retain(|(i, _)| *i != id);
                    items.list.push((id, at));
                }
                ("200 OK", body)
            };
            let _ = write!(&stream, "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
}

/// Items `ids` at `at(id)`.
fn items(ids: std::ops::RangeInclusive<u32>, at: impl Fn(u32) -> String) -> Arc<Mutex<Items>> {
    let list = ids.map(|i| (i, at(i))).collect();
    Arc::new(Mutex::new(Items {
        list,
        after_next_page: None,
    }))
}

/// A full read: the records' keys in order, and the final state.
fn read_all(
    url: &str,
    state: Option<serde_json::Value>,
) -> (Vec<(String, String)>, serde_json::Value) {
    let handler = CollectingHandler::new();
    InProcess::<ExampleHttp>::read(&request(url, TOKEN, state), handler.clone()).expect("read");
    let got = handler.collected();
    let records = got.records.get("items").cloned().unwrap_or_default();
    let keys = records
        .iter()
        .map(|r| (r.pk.clone(), r.cursor.clone().unwrap_or_default()))
        .collect();
    (keys, got.state["items"].clone())
}

fn request(url: &str, token: &str, state: Option<serde_json::Value>) -> ReadRequest {
    ReadRequest {
        config: json!({"base_url": url, "api_token": token}),
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: "items".into(),
                sync_mode: SyncMode::Incremental,
            }],
        },
        state: state
            .map(|s| [("items".to_string(), s)].into_iter().collect())
            .unwrap_or_default(),
        window: Default::default(),
    }
}

#[test]
fn reads_every_page_then_resumes_from_its_state() {
    let items = items(1..=8, |i| format!("2026-01-0{i}T00:00:00Z"));
    let url = serve(items.clone());

    let (got, state) = read_all(&url, None);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(state, json!({"at": "2026-01-08T00:00:00Z", "keys": ["8"]}));

    // Item 3 changes: the next read asks since 01-08 and sends only item 3 (8 was sent).
    items.lock().expect("items").list[2].1 = "2026-01-09T00:00:00Z".into();
    let (got, _) = read_all(&url, Some(state));
    assert_eq!(got, [("3".to_string(), "2026-01-09T00:00:00Z".to_string())]);
}

/// Paging by `page=N` under a fixed `updated_since` lost an item here: item 1, updated
/// after the first page, moved to the end, item 4 shifted onto page 1's last offset and
/// page 2 began after it; the watermark then moved past item 4 for good.
#[test]
fn an_item_updated_mid_read_neither_hides_another_nor_is_lost() {
    let items = items(1..=8, |i| format!("2026-01-0{i}T00:00:00Z"));
    items.lock().expect("items").after_next_page = Some((1, "2026-01-09T00:00:00Z".into()));
    let url = serve(items.clone());

    let (got, state) = read_all(&url, None);
    let mut latest = std::collections::BTreeMap::new();
    for (id, at) in &got {
        latest.insert(id.parse::<u32>().expect("numeric id"), at.clone());
    }
    let expected: std::collections::BTreeMap<u32, String> =
        items.lock().expect("items").list.iter().cloned().collect();
    assert_eq!(
        latest, expected,
        "every item at its latest version: {got:?}"
    );
    assert_eq!(
        got.len(),
        9,
        "item 1 twice (both versions), the rest once: {got:?}"
    );
    assert_eq!(state, json!({"at": "2026-01-09T00:00:00Z", "keys": ["1"]}));
}

/// More items share one instant than a page holds: the page number walks them, and a read
/// resumed in the middle of them gets the rest once.
#[test]
fn more_items_at_one_instant_than_a_page_holds() {
    let tie = "2026-01-01T00:00:00Z";
    let items = items(1..=10, |i| match i {
        1..=8 => tie.to_string(),
        i => format!("2026-01-{i:02}T00:00:00Z"),
    });
    let url = serve(items.clone());
    let (got, state) = read_all(&url, None);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    assert_eq!(state["at"], "2026-01-10T00:00:00Z");

    // Stopped after 4 of the 8 items at the tie: the next read sends 5..=10, once each.
    let request = |state| ReadRequest {
        window: tributary_sdk::Window {
            limit: Some(4),
            ..Default::default()
        },
        ..request(&url, TOKEN, state)
    };
    let handler = CollectingHandler::new();
    InProcess::<ExampleHttp>::read(&request(None), handler.clone()).expect("read");
    let state = handler.collected().state["items"].clone();
    assert_eq!(state, json!({"at": tie, "keys": ["1", "2", "3", "4"]}));
    let (got, _) = read_all(&url, Some(state));
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["5", "6", "7", "8", "9", "10"]);
}

/// `spec` is derived from the config type: both keys required, the token marked secret.
#[test]
fn the_spec_is_the_config_type() {
    use tributary_sdk::Connector;
    let spec = ExampleHttp.spec();
    assert_eq!(spec["required"], json!(["base_url", "api_token"]));
    assert_eq!(spec["additionalProperties"], false);
    assert_eq!(spec["properties"]["api_token"]["secret"], true);
}

#[test]
fn a_refused_token_is_an_auth_error_that_does_not_show_the_token() {
    let url = serve(Arc::default());
    let err = InProcess::<ExampleHttp>::read(
        &request(&url, "wrong-secret", None),
        CollectingHandler::new(),
    )
    .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(!err.message.contains("wrong-secret"), "{}", err.message);
}

/// The invariants every connector keeps (the SDK's conformance kit): spec, check with a
/// wrong token, catalog, records against schema and key, state after records, a resumed
/// read without gap or duplicate, limit, window, cancel, no secret in any output.
#[test]
fn conforms() {
    let url = serve(items(1..=20, |i| format!("2026-01-{i:02}T00:00:00Z")));
    Suite::new(
        in_process::<ExampleHttp>(),
        json!({"base_url": url, "api_token": TOKEN}),
    )
    .run()
    .assert_passed();
}
