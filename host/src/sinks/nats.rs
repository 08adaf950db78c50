//! The NATS JetStream sink: every committed change on subject
//! `<subject_prefix>.<source>.<stream>`, its JSON as the payload and
//! [`ChangeEvent::message_id`] as `Nats-Msg-Id`.
//!
//! Delivery is at-least-once into JetStream: [`CommitSink::publish`] returns only when
//! JetStream has stored (acknowledged) every event of the transaction, and the writer
//! commits only then. A crash in between re-reads the source and re-sends the same events
//! with the same message ids, which JetStream drops as duplicates within the stream's
//! duplicate window (`duplicate_window_secs`): exactly-once in the stream as long as the
//! restart fits in that window.
//!
//! Subject tokens: NATS splits subjects on `.` and gives `*` and `>` wildcard meaning, so
//! [`subject_token`] maps `.`, `*`, `>`, whitespace and control characters in a source or
//! stream name to `_` (and an empty name to `_`). Two names differing only there share a
//! subject; the payload always carries the true `source` and `stream`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, message::PublishMessage};
use async_nats::ConnectOptions;
use tokio::task::JoinSet;

use super::{Result, SinkError};
use crate::events::{ChangeEvent, CommitSink};
use crate::manifest::{redact_url, NatsSinkConfig};
use crate::watch::metrics::{Metrics, SinkLabels};

/// A connection to NATS with the JetStream stream ready, publishing on the writer thread.
///
/// It owns a tokio runtime with one worker thread: the writer thread is not async, and a
/// current-thread runtime would only be driven while a batch is being published, so the
/// server's pings would go unanswered between batches and it would drop the connection
/// as stale. Every method must be called outside of any tokio runtime.
pub struct NatsSink {
    runtime: tokio::runtime::Runtime,
    // Kept so the connection lives as long as the sink.
    _client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    subject_prefix: String,
    ack_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("ack_timeout", &self.ack_timeout)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// The sink's name, in logs, errors and the `sink` label of metrics.
    pub const NAME: &'static str = "nats";

    /// Connects, authenticates and makes sure the stream exists (creating or widening it
    /// when `create_stream` is set). Bounded by `ack_timeout_secs`: an unreachable server
    /// is an error, never a hang.
    ///
    /// `credentials` is opened as given; resolve it against the manifest's directory
    /// first ([`NatsSinkConfig::credentials_path`]).
    pub fn connect(config: &NatsSinkConfig) -> Result<NatsSink> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tributary-nats")
            .enable_all()
            .build()
            .map_err(|source| SinkError::Runtime {
                sink: Self::NAME.into(),
                source,
            })?;
        let timeout = Duration::from_secs(config.ack_timeout_secs.max(1));
        let server = redact_url(&config.url);
        let connect_error = |message: String| SinkError::Connect {
            sink: Self::NAME.into(),
            server: server.clone(),
            message,
        };

        let mut options = match &config.credentials {
            Some(path) => runtime
                .block_on(ConnectOptions::with_credentials_file(path))
                .map_err(|e| SinkError::Credentials {
                    sink: Self::NAME.into(),
                    path: path.clone(),
                    // An OS error says what is wrong with the file; a parse error could
                    // quote the file, which holds a seed.
                    message: if e.get_ref().is_none() {
                        e.to_string()
                    } else {
                        "not a NATS credentials file (a JWT and an NKey seed)".into()
                    },
                })?,
            None => ConnectOptions::new(),
        };
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let options = options
            .name("tributary")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout));

        let addresses: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<std::result::Result<_, _>>()
            // The parser's message may quote the address, credentials included.
            .map_err(|_| connect_error("not a valid NATS server address".into()))?;

        let (client, jetstream) = runtime.block_on(async {
            let client = tokio::time::timeout(timeout, options.connect(addresses))
                .await
                .map_err(|_| connect_error(format!("no answer within {} s", timeout.as_secs())))?
                .map_err(|e| connect_error(e.to_string()))?;
            // Built inside the runtime: the context spawns its ack handler.
            let jetstream = jetstream::ContextBuilder::new()
                .timeout(timeout)
                .build(client.clone());
            ensure_stream(&jetstream, config).await?;
            Ok::<_, SinkError>((client, jetstream))
        })?;

        Ok(NatsSink {
            runtime,
            _client: client,
            jetstream,
            stream: config.stream.clone(),
            subject_prefix: config.subject_prefix.clone(),
            ack_timeout: timeout,
            metrics: None,
        })
    }

    /// Counts acknowledged events in `metrics.sink_events{sink="nats"}`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> NatsSink {
        self.metrics = Some(metrics);
        self
    }

    /// The subject an event of `source`/`stream` is published on.
    pub fn subject(&self, source: &str, stream: &str) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            subject_token(source),
            subject_token(stream)
        )
    }

    /// Publishes `events` and waits until JetStream acknowledged every one, within
    /// `ack_timeout_secs` for the whole batch. All messages are sent before any
    /// acknowledgement is awaited, so a batch costs about one round trip, not one per
    /// event. An acknowledgement marked duplicate (a re-send) counts as success.
    pub fn send(&mut self, events: &[ChangeEvent]) -> Result<Delivery> {
        let total = events.len();
        if total == 0 {
            return Ok(Delivery::default());
        }
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let sink = || Self::NAME.to_string();
        let jetstream = &self.jetstream;
        let subjects: Vec<String> = events
            .iter()
            .map(|e| self.subject(&e.source, &e.stream))
            .collect();

        let (delivery, first_error, timed_out) = self.runtime.block_on(async {
            let mut acks = JoinSet::new();
            let mut first_error: Option<String> = None;
            let mut timed_out = false;
            for (event, subject) in events.iter().zip(subjects) {
                let payload = serde_json::to_vec(event).map_err(|source| SinkError::Encode {
                    sink: sink(),
                    source,
                })?;
                let message = PublishMessage::build()
                    .payload(payload.into())
                    .message_id(event.message_id());
                match tokio::time::timeout_at(
                    deadline,
                    jetstream.send_publish(subject.clone(), message),
                )
                .await
                {
                    Ok(Ok(ack)) => {
                        acks.spawn(async move {
                            ack.await.map_err(|e| format!("subject `{subject}`: {e}"))
                        });
                    }
                    Ok(Err(e)) => {
                        first_error = Some(format!("subject `{subject}`: {e}"));
                        break;
                    }
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            let mut delivery = Delivery::default();
            loop {
                match tokio::time::timeout_at(deadline, acks.join_next()).await {
                    Ok(None) => break,
                    Ok(Some(Ok(Ok(ack)))) => {
                        delivery.acknowledged += 1;
                        delivery.duplicates += usize::from(ack.duplicate);
                    }
                    Ok(Some(Ok(Err(e)))) => {
                        first_error.get_or_insert(e);
                    }
                    Ok(Some(Err(e))) => {
                        first_error.get_or_insert(format!("waiting for an acknowledgement: {e}"));
                    }
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            // Dropping the set abandons the acknowledgements still awaited.
            Ok::<_, SinkError>((delivery, first_error, timed_out))
        })?;

        if delivery.acknowledged == total {
            if let Some(metrics) = &self.metrics {
                metrics
                    .sink_events
                    .get_or_create(&SinkLabels { sink: sink() })
                    .inc_by(total as u64);
            }
            return Ok(delivery);
        }
        Err(SinkError::Publish {
            sink: sink(),
            unacknowledged: total - delivery.acknowledged,
            total,
            timed_out: timed_out.then_some(self.ack_timeout.as_secs()),
            message: first_error.unwrap_or_else(|| "no acknowledgement from JetStream".into()),
        })
    }
}

/// What [`NatsSink::send`] delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Events JetStream acknowledged (stored now or before).
    pub acknowledged: usize,
    /// Of those, re-sends JetStream recognised by message id and did not store again.
    pub duplicates: usize,
}

impl CommitSink for NatsSink {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn publish(&mut self, events: &[ChangeEvent]) -> std::result::Result<(), String> {
        self.send(events).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// `name` as one subject token: `.`, `*`, `>`, whitespace and control characters become
/// `_`, and an empty name is `_`.
pub fn subject_token(name: &str) -> Cow<'_, str> {
    let reserved = |c: char| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control();
    if name.is_empty() {
        Cow::Borrowed("_")
    } else if name.contains(reserved) {
        Cow::Owned(name.replace(reserved, "_"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Makes sure the stream exists. With `create_stream`, a missing stream is created with
/// subjects `<prefix>.>` and the duplicate window, and an existing one gains that subject
/// and at least that window; its other settings (retention, limits, replicas), which an
/// operator may have tuned, are kept.
async fn ensure_stream(jetstream: &jetstream::Context, config: &NatsSinkConfig) -> Result<()> {
    let stream_error = |message: String| SinkError::Stream {
        sink: NatsSink::NAME.into(),
        stream: config.stream.clone(),
        message,
    };
    let subjects = format!("{}.>", config.subject_prefix);
    let window = Duration::from_secs(config.duplicate_window_secs);
    match jetstream.get_stream(&config.stream).await {
        Ok(stream) => {
            let mut wanted = stream.cached_info().config.clone();
            if !config.create_stream {
                if wanted.duplicate_window < window {
                    tracing::warn!(
                        stream = %config.stream,
                        "the stream's duplicate window ({} s) is shorter than duplicate_window_secs ({} s): re-sends after a longer outage are stored twice",
                        wanted.duplicate_window.as_secs(),
                        config.duplicate_window_secs
                    );
                }
                return Ok(());
            }
            let mut changed = false;
            if !wanted.subjects.contains(&subjects) {
                wanted.subjects.push(subjects);
                changed = true;
            }
            if wanted.duplicate_window < window {
                wanted.duplicate_window = window;
                changed = true;
            }
            if changed {
                jetstream
                    .update_stream(&wanted)
                    .await
                    .map_err(|e| stream_error(format!("cannot update it: {e}")))?;
            }
            Ok(())
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                if !config.create_stream {
                    return Err(stream_error(
                        "does not exist (create it, or set create_stream = true)".into(),
                    ));
                }
                jetstream
                    .create_stream(jetstream::stream::Config {
                        name: config.stream.clone(),
                        subjects: vec![subjects],
                        duplicate_window: window,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| stream_error(format!("cannot create it: {e}")))?;
                Ok(())
            }
            _ => Err(stream_error(format!("cannot look it up: {e}"))),
        },
    }
}
