//! `GET /events`: the committed changes as a WebSocket feed.
//!
//! Each text message is one JSON object with a `type`:
//! - `change`: a [`ChangeEvent`](crate::events::ChangeEvent) (`seq`, `source`, `stream`, `op`, `pk`, `cursor`,
//!   `client`, `record`);
//! - `gap`: `since` asked for events the bus no longer keeps; `oldest` is the first
//!   seq still kept (sent before the backlog);
//! - `lagged`: the subscriber fell more than the bus's lag bound behind and missed
//!   `missed` events; a close frame follows and the server drops it.
//!
//! Filters (`source`, `stream`, `client`, each repeatable or comma-separated) select
//! events; within a kind any value matches, across kinds all must. A send that does not
//! complete within the configured timeout drops the subscriber too, so a client that
//! stops reading holds only its own task, never the bus or other subscribers.
//!
//! The session is generic over `Sink`/`Stream` of [`Message`] so it is testable without
//! a socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::routes::authorized;
use super::state::ServerState;
use crate::events::{Published, Subscription};
use crate::watch::metrics::Metrics;

/// Which events a subscriber wants; an empty list matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Source names.
    pub sources: Vec<String>,
    /// Stream names.
    pub streams: Vec<String>,
    /// Client ids (an event without a client never matches a client filter).
    pub clients: Vec<String>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Published) -> bool {
        let any = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        };
        any(&self.sources, Some(&event.source))
            && any(&self.streams, Some(&event.stream))
            && any(&self.clients, event.client.as_deref())
    }
}

/// The query of `/events`: filters, `since` and `token`.
#[derive(Debug, Default)]
pub struct FeedQuery {
    /// The filters.
    pub filter: Filter,
    /// Replay the kept events after this seq first.
    pub since: Option<u64>,
    /// The token, when given in the query (browsers cannot set WebSocket headers).
    pub token: Option<String>,
}

impl FeedQuery {
    /// Reads the query pairs; an unparsable `since` is an error.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<FeedQuery, String> {
        let mut q = FeedQuery::default();
        let split = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "source" => q.filter.sources.extend(split(&value)),
                "stream" => q.filter.streams.extend(split(&value)),
                "client" => q.filter.clients.extend(split(&value)),
                "since" => {
                    q.since = Some(
                        value
                            .parse()
                            .map_err(|_| format!("since must be a seq number, not {value:?}"))?,
                    )
                }
                "token" => q.token = Some(value),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The feed's messages besides changes (whose text [`Published`] carries).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Notice {
    Gap { oldest: u64 },
    Lagged { missed: u64 },
}

/// `GET /events`: 401 before any upgrade without the token.
pub(super) async fn events_subscribe(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let query = match FeedQuery::from_pairs(pairs) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if !authorized(&state, &headers, query.token.as_deref()) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let upgrade = match upgrade {
        // Sized for many subscribers that send almost nothing: the defaults (128 KiB to
        // read, 128 KiB written before a socket write) cost ~25 MB at 100 subscribers;
        // 32 KiB writes still carry ~60 events each.
        Ok(u) => u.read_buffer_size(4 * 1024).write_buffer_size(32 * 1024),
        Err(rejection) => return rejection.into_response(),
    };
    // Subscribed before the upgrade: nothing published from here on is missed.
    let subscription = state.bus.subscribe(query.since);
    let metrics = state.metrics.clone();
    let timeout = state.config.send_timeout;
    let mut closing = state.closing.subscribe();
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let (tx, rx) = socket.split();
        let stop = async move {
            // An error means the server state is gone: stop too.
            let _ = closing.wait_for(|closing| *closing).await;
        };
        session(tx, rx, subscription, query, metrics, timeout, stop).await;
    })
}

/// Decrements `tributary_subscribers` however the session ends.
struct Connected(Arc<Metrics>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.subscribers.dec();
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed or went away.
    Closed,
    /// Dropped: it lagged behind the bus or did not take a send in time.
    Dropped,
}

/// Feeds one subscriber: the gap notice, the backlog, then live events, until the
/// client closes, lags or stops reading, or `stop` completes (the server shuts down).
pub async fn session<Tx, Rx>(
    mut tx: Tx,
    mut rx: Rx,
    mut subscription: Subscription,
    query: FeedQuery,
    metrics: Arc<Metrics>,
    send_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Ended
where
    Tx: Sink<Message> + Unpin,
    Rx: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    tokio::pin!(stop);
    metrics.subscribers.inc();
    let _connected = Connected(metrics.clone());
    let filter = &query.filter;

    let gap = match (query.since, subscription.oldest) {
        (Some(since), Some(oldest)) if since.saturating_add(1) < oldest => Some(oldest),
        _ => None,
    };
    if let Some(oldest) = gap {
        if !send(&mut tx, send_timeout, Notice::Gap { oldest }).await {
            return drop_subscriber(&metrics);
        }
    }
    // The replay is written in one go and flushed once, like a live burst.
    let mut replayed = 0u64;
    for event in std::mem::take(&mut subscription.backlog) {
        if filter.matches(&event) {
            if !queue(&mut tx, send_timeout, event.text.clone()).await {
                return drop_subscriber(&metrics);
            }
            replayed += 1;
        }
    }
    if !matches!(
        tokio::time::timeout(send_timeout, tx.flush()).await,
        Ok(Ok(()))
    ) {
        return drop_subscriber(&metrics);
    }
    metrics.events.inc_by(replayed);
    loop {
        tokio::select! {
            received = subscription.live.recv() => match received {
                Ok(event) => {
                    // What else is already waiting goes out in the same write: one flush
                    // per burst, not one per event.
                    let mut next = Some(event);
                    let mut sent = 0u64;
                    let mut written = 0usize;
                    while let Some(event) = next.take() {
                        if filter.matches(&event) {
                            if !queue(&mut tx, send_timeout, event.text.clone()).await {
                                return drop_subscriber(&metrics);
                            }
                            sent += 1;
                        }
                        written += 1;
                        if written >= BURST {
                            break;
                        }
                        next = match subscription.live.try_recv() {
                            Ok(event) => Some(event),
                            Err(TryRecvError::Lagged(missed)) => {
                                return lagged(&mut tx, send_timeout, missed, &metrics).await;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                        };
                    }
                    if !matches!(tokio::time::timeout(send_timeout, tx.flush()).await, Ok(Ok(()))) {
                        return drop_subscriber(&metrics);
                    }
                    metrics.events.inc_by(sent);
                }
                Err(RecvError::Lagged(missed)) => {
                    return lagged(&mut tx, send_timeout, missed, &metrics).await;
                }
                // The bus is gone: watch is stopping.
                Err(RecvError::Closed) => {
                    let _ = tokio::time::timeout(send_timeout, tx.send(Message::Close(None))).await;
                    return Ended::Closed;
                }
            },
            () = &mut stop => {
                let away = Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: "server shutting down".into(),
                }));
                let _ = tokio::time::timeout(send_timeout, tx.send(away)).await;
                return Ended::Closed;
            }
            incoming = rx.next() => match incoming {
                // Pings are answered by the WebSocket layer itself; other client
                // messages carry nothing the feed needs.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ended::Closed,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Most events written before a flush.
const BURST: usize = 512;

/// Sends one message; false when it failed or did not complete in time.
async fn send<Tx: Sink<Message> + Unpin>(tx: &mut Tx, timeout: Duration, notice: Notice) -> bool {
    feed(tx, timeout, notice).await
        && matches!(tokio::time::timeout(timeout, tx.flush()).await, Ok(Ok(())))
}

/// Queues one notice without flushing; false when it failed or did not complete in time.
async fn feed<Tx: Sink<Message> + Unpin>(tx: &mut Tx, timeout: Duration, notice: Notice) -> bool {
    let Ok(text) = serde_json::to_string(&notice) else {
        return true;
    };
    queue(tx, timeout, text.into()).await
}

/// Queues one text message without flushing (a change's is the text every subscriber
/// shares); false when it failed or did not complete in time.
async fn queue<Tx: Sink<Message> + Unpin>(tx: &mut Tx, timeout: Duration, text: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(timeout, tx.feed(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

/// Tells a subscriber that fell behind the bound what it missed, closes it, drops it.
async fn lagged<Tx: Sink<Message> + Unpin>(
    tx: &mut Tx,
    timeout: Duration,
    missed: u64,
    metrics: &Metrics,
) -> Ended {
    // Best effort: the client may be the reason it lagged.
    let _ = send(tx, timeout, Notice::Lagged { missed }).await;
    let close = Message::Close(Some(CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: "lagged".into(),
    }));
    let _ = tokio::time::timeout(timeout, tx.send(close)).await;
    drop_subscriber(metrics)
}

fn drop_subscriber(metrics: &Metrics) -> Ended {
    metrics.subscriber_drops.inc();
    Ended::Dropped
}
