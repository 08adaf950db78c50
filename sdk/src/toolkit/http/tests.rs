//! The loop against a scripted loopback server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::error::ErrorKind;
use crate::toolkit::{Backoff, Budget, Limits};

/// Answers each request with the next `(status, retry_after)` or, for a request carrying
/// `authorization: Bearer stale`, with 401. Returns the base URL and the request count.
async fn server(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let script = script.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let stale = String::from_utf8_lossy(&buf)
                    .to_ascii_lowercase()
                    .contains("authorization: bearer stale");
                let (status, retry_after) = if stale {
                    (401, None)
                } else {
                    script.lock().unwrap().pop_front().unwrap_or((200, None))
                };
                let extra = retry_after
                    .map(|r| format!("retry-after: {r}\r\n"))
                    .unwrap_or_default();
                let body = format!("status {status}");
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

fn policy(attempts: u32, throttle_waits: u32) -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            max_attempts: attempts,
        },
        max_throttle_waits: throttle_waits,
        throttle_wait: Duration::from_millis(1),
        throttle_wait_doubles: true,
    }
}

fn budget(learn: bool) -> Arc<Budget> {
    Arc::new(Budget::new(Limits {
        per_window: 0,
        window: Duration::from_secs(60),
        per_second: 0,
        concurrency: 0,
        margin: Duration::from_millis(50),
        learn,
    }))
}

fn http() -> reqwest::Client {
    client(&ClientSettings {
        user_agent: "tributary-test".into(),
        timeout: Duration::from_secs(10),
        connect_timeout: None,
    })
    .unwrap()
}

const TABLE: Table = Table {
    rules: &[
        Rule::new(Status::Range(200, 299), Code::Any, Action::Accept),
        Rule::new(Status::Is(429), Code::Any, Action::Wait),
        Rule::new(Status::Is(401), Code::Any, Action::Refresh),
        Rule::new(Status::Range(500, 599), Code::Any, Action::Retry),
    ],
    otherwise: Action::Fail(ErrorKind::Config),
};

fn classify(reply: Reply) -> Result<String, (Action, String)> {
    let status = reply.status;
    match TABLE.decide(status, &[]) {
        Action::Accept => Ok(reply.into_text()),
        action => Err((action, format!("http {status}"))),
    }
}

async fn get<S: TokenSource>(
    r: &Requester<S>,
    url: &str,
) -> Result<String, Failure<String, S::Error>> {
    r.send(
        "test request",
        |http, token| http.get(url).bearer_auth(token),
        classify,
    )
    .await
}

fn token() -> StaticToken {
    StaticToken(Secret::new("key"))
}

#[tokio::test]
async fn passing_server_errors_are_retried_until_a_success() {
    let (url, seen) = server(vec![(503, None), (500, None), (200, None)]).await;
    let r = Requester::new("test", http(), budget(false), token(), policy(3, 0));
    assert_eq!(get(&r, &url).await.unwrap(), "status 200");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(r.stats.retried.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn retries_stop_at_the_policy_with_the_last_error() {
    let (url, seen) = server(vec![(503, None), (502, None), (200, None)]).await;
    let r = Requester::new("test", http(), budget(false), token(), policy(2, 0));
    match get(&r, &url).await {
        Err(Failure::GaveUp {
            action: Action::Retry,
            error,
            attempts: 2,
        }) => assert_eq!(error, "http 502"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failure_is_not_retried() {
    let (url, seen) = server(vec![(404, None), (200, None)]).await;
    let r = Requester::new("test", http(), budget(false), token(), policy(5, 5));
    assert!(matches!(get(&r, &url).await, Err(Failure::Failed(e)) if e == "http 404"));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn throttles_are_waited_out_up_to_the_policy() {
    for learn in [false, true] {
        let (url, _) = server(vec![(429, Some("0")), (429, Some("0.01")), (200, None)]).await;
        let r = Requester::new("test", http(), budget(learn), token(), policy(1, 2));
        assert_eq!(get(&r, &url).await.unwrap(), "status 200", "learn {learn}");
        assert_eq!(r.stats.throttled.load(Ordering::Relaxed), 2);
        assert_eq!(r.budget().throttles(), 2);

        let (url, _) = server(vec![(429, Some("0")), (429, Some("0")), (200, None)]).await;
        let r = Requester::new("test", http(), budget(learn), token(), policy(1, 1));
        assert!(matches!(
            get(&r, &url).await,
            Err(Failure::GaveUp {
                action: Action::Wait,
                attempts: 2,
                ..
            })
        ));
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_failure_after_the_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let r = Requester::new("test", http(), budget(false), token(), policy(2, 0));
    match get(&r, &url).await {
        Err(Failure::Transport {
            message,
            attempts: 2,
        }) => assert!(message.starts_with("could not connect"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// Hands out `stale` until refreshed, then `fresh`; counts refreshes.
#[derive(Default)]
struct Rotating {
    generation: tokio::sync::Mutex<u64>,
    refreshes: AtomicU64,
    refuse_all: bool,
}

impl TokenSource for Rotating {
    type Error = String;
    async fn token(&self) -> Result<(String, u64), String> {
        let g = *self.generation.lock().await;
        let token = if g == 0 || self.refuse_all {
            "stale"
        } else {
            "fresh"
        };
        Ok((token.to_string(), g))
    }
    async fn refresh(&self, seen: u64) -> Result<(String, u64), String> {
        {
            let mut g = self.generation.lock().await;
            if *g == seen {
                // Long enough for every concurrent request to be refused meanwhile.
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                *g += 1;
            }
        }
        self.token().await
    }
}

#[tokio::test]
async fn concurrent_rejections_share_one_refresh() {
    let (url, _) = server(vec![]).await;
    let r = Requester::new(
        "test",
        http(),
        budget(false),
        Rotating::default(),
        policy(3, 0),
    );
    let results = futures_join(&r, &url).await;
    assert!(
        results.iter().all(|r| r.as_deref() == Ok("status 200")),
        "{results:?}"
    );
    assert_eq!(r.tokens().refreshes.load(Ordering::SeqCst), 1);
}

async fn futures_join(r: &Requester<Rotating>, url: &str) -> Vec<Result<String, String>> {
    let (a, b, c, d) = tokio::join!(get(r, url), get(r, url), get(r, url), get(r, url));
    [a, b, c, d]
        .into_iter()
        .map(|r| r.map_err(|e| format!("{e:?}")))
        .collect()
}

#[tokio::test]
async fn a_fresh_token_that_is_refused_fails_as_auth_at_once() {
    let (url, seen) = server(vec![]).await;
    let tokens = Rotating {
        refuse_all: true,
        ..Rotating::default()
    };
    let r = Requester::new("test", http(), budget(false), tokens, policy(5, 0));
    match get(&r, &url).await {
        Err(Failure::GaveUp {
            action: Action::Refresh,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "one refresh, then the verdict"
    );
    assert_eq!(Action::Refresh.kind(), ErrorKind::Auth);
}
