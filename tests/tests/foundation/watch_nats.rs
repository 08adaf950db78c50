//! `watch` with `[sinks.nats]` against the real NATS JetStream service
//! (`TRIBUTARY_TEST_NATS_URL`, see `common/services.rs`): the stream holds every committed
//! change exactly once across a `kill -9` and a restart; a sink that fails stops watch
//! with exit code 1 and nothing committed past it. Each test has a stream and subject
//! prefix of its own, deleted at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::Value;

use crate::common::{services, Scratch};
use crate::watching::{wait_for, Watch};

const TOKEN: &str = "nats-test-token";

/// A JetStream stream of this test's own, and a client to read it; deleted on drop.
struct Stream {
    name: String,
    prefix: String,
    url: String,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.js.delete_stream(&self.name));
    }
}

impl Stream {
    /// `None` when the NATS tests are skipped on purpose (`TRIBUTARY_SKIP_SERVICES`).
    fn new() -> Option<Stream> {
        let url = services::service_url("TRIBUTARY_TEST_NATS_URL")?;
        let unique = services::unique_suffix();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt
            .block_on(async_nats::connect(&url))
            .expect("test client connects");
        let js = rt.block_on(async { jetstream::new(client) });
        Some(Stream {
            name: format!("W_{unique}"),
            prefix: format!("w{unique}.feed"),
            url,
            rt,
            js,
        })
    }

    /// The `[sinks.nats]` section publishing into it.
    fn section(&self) -> String {
        format!(
            "[sinks.nats]\nurl = \"{}\"\nstream = \"{}\"\nsubject_prefix = \"{}\"\n\n",
            self.url, self.name, self.prefix
        )
    }

    /// Every message of the stream, oldest first: (Nats-Msg-Id, payload).
    fn messages(&self) -> Vec<(String, Value)> {
        self.rt.block_on(async {
            let mut stream = self.js.get_stream(&self.name).await.expect("the stream");
            let total = stream.info().await.expect("info").state.messages as usize;
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::Config::default())
                .await
                .expect("consumer");
            let mut out = Vec::with_capacity(total);
            // Bounded: each fetch waits at most 2 s, and the loop ends once all are read.
            while out.len() < total {
                let mut batch = consumer
                    .fetch()
                    .max_messages(total - out.len())
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await
                    .expect("fetch");
                let before = out.len();
                while let Some(message) = batch.next().await {
                    let message = message.expect("message");
                    let id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.as_str().to_string())
                        .expect("every message has an id");
                    let payload = serde_json::from_slice(&message.payload).expect("JSON");
                    out.push((id, payload));
                }
                assert!(
                    out.len() > before,
                    "the stream says {total} messages, read {before}"
                );
            }
            out
        })
    }

    fn delete(&self) {
        self.rt
            .block_on(self.js.delete_stream(&self.name))
            .expect("stream deleted");
    }
}

/// A manifest watching the sample internal database's contracts into `stream`.
fn manifest(scratch: &Scratch, stream: &Stream) {
    scratch.manifest(&format!(
        "{}[watch]\nlisten = \"127.0.0.1:0\"\nevents_token = \"{TOKEN}\"\ninterval = \"1s\"\n\n{}\
         [sources.internal]\nplugin = \"internal-db\"\nstreams = [\"contracts\"]\n\n\
         [sources.internal.config]\nurl = \"sqlite://{}\"\nsample_data = {{ clients = 20, seed = 7 }}\n",
        scratch.header(),
        stream.section(),
        scratch.path("internal.db").display()
    ));
}

/// `_pk → _cursor` of the committed contracts.
fn committed(scratch: &Scratch) -> BTreeMap<String, String> {
    let conn = scratch.warehouse();
    let mut stmt = conn
        .prepare("SELECT _pk, _cursor FROM internal__contracts")
        .expect("contracts");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn touch(db: &std::path::Path, id: &str) {
    let conn = rusqlite::Connection::open(db).expect("internal db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    let at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let n = conn
        .execute(
            "UPDATE contracts SET status = 'renewed', updated_at = ?1 WHERE id = ?2",
            rusqlite::params![at, id],
        )
        .expect("update");
    assert_eq!(n, 1);
}

#[test]
fn jetstream_holds_every_committed_change_once_across_a_kill_9_and_a_restart() {
    let Some(stream) = Stream::new() else {
        return;
    };
    let scratch = Scratch::new();
    manifest(&scratch, &stream);
    let started = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let initial = committed(&scratch);
    assert!(initial.len() >= 10, "{} contracts", initial.len());

    // Each of these rows changes once, some before the kill, some while watch is down,
    // some after the restart.
    let db = scratch.path("internal.db");
    let ids: Vec<String> = initial.keys().take(10).cloned().collect();
    for id in &ids[..4] {
        touch(&db, id);
    }
    // Killed while those are being read and published (or just after): either way the
    // restart must neither lose nor duplicate them.
    watch.kill9();
    for id in &ids[4..7] {
        touch(&db, id);
    }
    let restarted = chrono::Utc::now();
    let watch = Watch::start(&scratch);
    watch.wait_cycles_after(restarted, Duration::from_secs(120));
    for id in &ids[7..] {
        touch(&db, id);
    }
    // One full cycle that began after the last change.
    watch.wait_full_cycle(Duration::from_secs(60));
    let (code, _) = watch.interrupt();
    assert_eq!(code, Some(0));

    let last = committed(&scratch);
    for id in &ids {
        assert_ne!(last[id], initial[id], "contract {id} changed");
    }
    // Every committed version: the first of every row, the second of the changed ones.
    let want: BTreeSet<(String, String)> = initial
        .iter()
        .chain(last.iter())
        .map(|(pk, cursor)| (pk.clone(), cursor.clone()))
        .collect();
    let messages = stream.messages();
    let mut ids_seen = BTreeSet::new();
    let mut got = BTreeSet::new();
    for (id, m) in &messages {
        assert!(
            ids_seen.insert(id.clone()),
            "duplicate message id {id}: {m}"
        );
        assert_eq!(m["source"], "internal");
        assert_eq!(m["stream"], "contracts");
        assert_eq!(m["op"], "upsert");
        let key = (
            m["pk"].as_str().expect("pk").to_string(),
            m["cursor"].as_str().expect("cursor").to_string(),
        );
        assert!(got.insert(key.clone()), "{key:?} published twice");
    }
    let lost: Vec<_> = want.difference(&got).collect();
    let invented: Vec<_> = got.difference(&want).collect();
    assert!(
        lost.is_empty() && invented.is_empty(),
        "{} messages; lost {lost:?}; not committed {invented:?}",
        messages.len()
    );
}

#[test]
fn a_failing_sink_stops_watch_with_exit_code_1_and_nothing_committed_past_it() {
    let Some(stream) = Stream::new() else {
        return;
    };
    let scratch = Scratch::new();
    manifest(&scratch, &stream);
    let started = chrono::Utc::now();
    let mut watch = Watch::start(&scratch);
    watch.wait_cycles_after(started, Duration::from_secs(120));
    let before = committed(&scratch);
    let id = before.keys().next().expect("a contract").clone();

    // The stream disappears: the next transaction's events cannot be stored.
    stream.delete();
    touch(&scratch.path("internal.db"), &id);
    let code = watch.wait_exit(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(1),
        "a sink failure stops watch:\n{}",
        watch.log()
    );
    assert!(
        watch.log().contains("sink nats"),
        "the error names the sink:\n{}",
        watch.log()
    );
    assert_eq!(
        committed(&scratch)[&id],
        before[&id],
        "the change the sink refused is not committed"
    );
    // Nothing hangs: the health endpoint is gone with the process.
    wait_for(
        Duration::from_secs(5),
        || "the server to close".to_string(),
        || (crate::watching::http(&watch.addr, "GET", "/health", &[], b"").0 == 0).then_some(()),
    );
}
