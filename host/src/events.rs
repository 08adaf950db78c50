//! Committed changes as events: the feed `watch` serves to WebSocket subscribers and
//! publishes to sinks.
//!
//! The writer turns each record it stages into a [`ChangeEvent`]. Sinks that must not lose
//! anything ([`CommitSink`], e.g. NATS JetStream) get the events of a transaction *before*
//! it commits and must acknowledge them first, so state never moves past an event a sink
//! has not accepted; a crash between the two re-sends them on the next read, with the same
//! [`ChangeEvent::message_id`] for the sink to de-duplicate. The [`EventBus`] (WebSocket
//! subscribers) gets them only *after* the commit, so a subscriber never sees a change the
//! warehouse could still roll back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Inserted or updated.
    Upsert,
    /// Deleted at the source.
    Delete,
}

/// One committed change.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeEvent {
    /// Position in this process's feed, from 1, increasing; `since` replays after it.
    /// Zero until the bus publishes the event.
    pub seq: u64,
    /// Source name (the manifest's).
    pub source: Arc<str>,
    /// Stream name.
    pub stream: Arc<str>,
    /// Upsert or delete.
    pub op: Op,
    /// Primary key, as the warehouse stores it.
    pub pk: String,
    /// The record's cursor value, when it has one.
    pub cursor: Option<String>,
    /// The client the record belongs to, in the source's own id space, when the stream
    /// declares a client field and the record carries it.
    pub client: Option<String>,
    /// The record as committed.
    pub record: Box<RawValue>,
}

impl ChangeEvent {
    /// A stable id of this change: the same (source, stream, pk, cursor, op) always gives
    /// the same id, so a sink's de-duplication absorbs re-sends after a crash.
    pub fn message_id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.source.as_bytes(),
            self.stream.as_bytes(),
            self.pk.as_bytes(),
            self.cursor.as_deref().unwrap_or("").as_bytes(),
            match self.op {
                Op::Upsert => b"u",
                Op::Delete => b"d",
            },
        ] {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// A committed change as the bus carries it to subscribers: what they filter on, and
/// the JSON text they send.
///
/// The text is made once, when the event is published, and shared by every subscriber
/// (a `Utf8Bytes` clone is a reference count): with 100 subscribers, serializing per
/// subscriber was most of the feed's cost. The record itself is not kept beside it, so
/// the replay buffer and the subscribers' channel hold one copy of each event.
#[derive(Debug)]
pub struct Published {
    /// The event's [`ChangeEvent::seq`].
    pub seq: u64,
    /// Source name.
    pub source: Arc<str>,
    /// Stream name.
    pub stream: Arc<str>,
    /// The client, when known.
    pub client: Option<String>,
    /// `{"type":"change", ...the event's fields}`, as the feed sends it.
    pub text: Utf8Bytes,
}

/// The feed's message for a change: the event's fields under `"type": "change"`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire<'a> {
    Change(&'a ChangeEvent),
}

impl Published {
    fn new(event: ChangeEvent) -> Published {
        // Plain strings and an already-valid JSON record: serializing cannot fail.
        let text = serde_json::to_string(&Wire::Change(&event)).unwrap_or_default();
        Published {
            seq: event.seq,
            source: event.source,
            stream: event.stream,
            client: event.client,
            // Exactly sized: the bus may keep as many of these as its bounds allow, and
            // spare capacity would be held for as long.
            text: String::from(text.into_boxed_str()).into(),
        }
    }
}

/// A sink that must acknowledge a transaction's events before it commits.
pub trait CommitSink: Send {
    /// Sink name, for logs and errors.
    fn name(&self) -> &str;

    /// Delivers `events` and returns once the sink has durably accepted every one. An
    /// error fails the commit: the transaction rolls back and the source is read again
    /// from its last committed state.
    fn publish(&mut self, events: &[ChangeEvent]) -> Result<(), String>;
}

/// Fan-out of committed events to in-process subscribers, with a bounded replay buffer.
///
/// Memory is bounded twice: the replay buffer keeps the last `replay` events, and each
/// subscriber's channel holds at most `lag` events; a subscriber that falls further behind
/// is told how many it missed (and the WebSocket server drops it). Publishing never waits
/// for a subscriber.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Published>>,
    recent: Mutex<VecDeque<Arc<Published>>>,
    replay: usize,
    last_seq: AtomicU64,
}

impl EventBus {
    /// A bus keeping the last `replay` events and letting a subscriber lag `lag` events.
    pub fn new(replay: usize, lag: usize) -> Arc<EventBus> {
        let (tx, _) = broadcast::channel(lag.max(1));
        Arc::new(EventBus {
            tx,
            recent: Mutex::new(VecDeque::with_capacity(replay.min(65_536))),
            replay,
            last_seq: AtomicU64::new(0),
        })
    }

    /// Numbers and publishes committed events, in order.
    pub fn publish(&self, events: Vec<ChangeEvent>) {
        // One lock around numbering, buffering and sending: subscribers see seq in order,
        // and `subscribe` cannot fall between the buffer and the channel.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for mut event in events {
            event.seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
            let event = Arc::new(Published::new(event));
            if self.replay > 0 {
                if recent.len() == self.replay {
                    recent.pop_front();
                }
                recent.push_back(event.clone());
            }
            // No subscriber is not an error.
            let _ = self.tx.send(event);
        }
    }

    /// Subscribes: the buffered events after `since` (all buffered with `Some(0)`, none
    /// with `None`), then everything published from now on, without a gap or a repeat
    /// between the two. The first buffered seq is returned too, so a client asking for
    /// older events learns what it missed.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let backlog = match since {
            Some(after) => recent.iter().filter(|e| e.seq > after).cloned().collect(),
            None => Vec::new(),
        };
        Subscription {
            oldest: recent.front().map(|e| e.seq),
            backlog,
            live: self.tx.subscribe(),
        }
    }

    /// Seq of the last published event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Current subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What [`EventBus::subscribe`] returns.
#[derive(Debug)]
pub struct Subscription {
    /// Seq of the oldest event still buffered, if any.
    pub oldest: Option<u64>,
    /// Buffered events after `since`, oldest first.
    pub backlog: Vec<Arc<Published>>,
    /// Events published after subscribing.
    pub live: broadcast::Receiver<Arc<Published>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pk: &str) -> ChangeEvent {
        ChangeEvent {
            seq: 0,
            source: "s".into(),
            stream: "t".into(),
            op: Op::Upsert,
            pk: pk.into(),
            cursor: Some("2026-01-01T00:00:00Z".into()),
            client: None,
            record: RawValue::from_string(format!(r#"{{"id":"{pk}"}}"#)).expect("json"),
        }
    }

    #[test]
    fn a_subscriber_gets_the_backlog_after_since_then_live_events_without_a_gap() {
        let bus = EventBus::new(3, 16);
        bus.publish((1..=5).map(|i| event(&i.to_string())).collect());
        let mut sub = bus.subscribe(Some(3));
        assert_eq!(sub.oldest, Some(3), "only the last three are kept");
        let backlog: Vec<u64> = sub.backlog.iter().map(|e| e.seq).collect();
        assert_eq!(backlog, [4, 5]);
        bus.publish(vec![event("6")]);
        let live = sub.live.try_recv().expect("published after subscribing");
        assert_eq!(live.seq, 6);
        let text: serde_json::Value = serde_json::from_str(&live.text).expect("JSON");
        assert_eq!(
            text,
            serde_json::json!({
                "type": "change", "seq": 6, "source": "s", "stream": "t", "op": "upsert",
                "pk": "6", "cursor": "2026-01-01T00:00:00Z", "client": null,
                "record": {"id": "6"}
            })
        );
        assert!(bus.subscribe(None).backlog.is_empty());
    }

    #[test]
    fn a_slow_subscriber_is_told_it_lagged_and_publishing_never_waits() {
        let bus = EventBus::new(0, 4);
        let mut sub = bus.subscribe(None);
        bus.publish((0..10).map(|i| event(&i.to_string())).collect());
        match sub.live.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected a lag notice, got {other:?}"),
        }
    }

    #[test]
    fn message_ids_are_stable_and_tell_changes_apart() {
        let a = event("1");
        assert_eq!(a.message_id(), event("1").message_id());
        assert_ne!(a.message_id(), event("2").message_id());
        let mut later = event("1");
        later.cursor = Some("2026-01-01T00:00:01Z".into());
        assert_ne!(a.message_id(), later.message_id());
        let mut deleted = event("1");
        deleted.op = Op::Delete;
        assert_ne!(a.message_id(), deleted.message_id());
    }
}
