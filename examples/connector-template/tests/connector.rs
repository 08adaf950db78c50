//! The connector against a small API served on loopback by this test: every item read,
//! in order, with the state to resume from; a resumed read gets only what changed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tributary_example_http::ExampleHttp;
use tributary_sdk::host::{CollectingHandler, InProcess};
use tributary_sdk::{ConfiguredCatalog, ConfiguredStream, ErrorKind, ReadRequest, SyncMode};

const TOKEN: &str = "test-token";
const PAGE: usize = 3;

/// Serves `GET /items?updated_since=S&page=N` from `items` ((id, updated_at), in cursor
/// order) until the test ends; answers 401 to any other token.
fn serve(items: Arc<Mutex<Vec<(u32, String)>>>) -> String {
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
                let all = items.lock().expect("items");
                let newer: Vec<_> = all.iter().filter(|(_, at)| *at >= since).collect();
                let chunk: Vec<_> = newer.iter().skip((page - 1) * PAGE).take(PAGE)
                    .map(|(id, at)| json!({"id": id, "updated_at": at, "name": format!("item {id}")}))
                    .collect();
                let next = (page * PAGE < newer.len()).then_some(page + 1);
                (
                    "200 OK",
                    json!({"items": chunk, "next_page": next}).to_string(),
                )
            };
            let _ = write!(&stream, "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
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
    let items: Vec<(u32, String)> = (1..=8)
        .map(|i| (i, format!("2026-01-0{i}T00:00:00Z")))
        .collect();
    let items = Arc::new(Mutex::new(items));
    let url = serve(items.clone());

    let handler = CollectingHandler::new();
    InProcess::<ExampleHttp>::read(&request(&url, TOKEN, None), handler.clone()).expect("read");
    let got = handler.collected();
    let ids: Vec<&str> = got.records["items"].iter().map(|r| r.pk.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    let state = got.state["items"].clone();
    assert_eq!(state, json!("2026-01-08T00:00:00Z"));

    // Item 3 changes: the next read starts from the state and gets it (and the boundary).
    items.lock().expect("items")[2].1 = "2026-01-09T00:00:00Z".into();
    items.lock().expect("items").sort_by(|a, b| a.1.cmp(&b.1));
    let handler = CollectingHandler::new();
    InProcess::<ExampleHttp>::read(&request(&url, TOKEN, Some(state)), handler.clone())
        .expect("read");
    let ids: Vec<String> = handler.collected().records["items"]
        .iter()
        .map(|r| r.pk.clone())
        .collect();
    assert_eq!(ids, ["8", "3"]);
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
