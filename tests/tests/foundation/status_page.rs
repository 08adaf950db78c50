//! The status page of `tributary watch` in a real headless Chromium: it lists the
//! sources and their streams, authenticates with its cookie, and its live feed shows a
//! change made in the internal database and one a sandboxed QuickBooks emulator makes
//! (and announces by webhook). Every wait polls the DOM, bounded.
//!
//! Needs Chromium (`TRIBUTARY_TEST_CHROMIUM`, or `chromium` on `PATH`); without it the
//! test fails under `CI` and is skipped, saying so, elsewhere.

use std::time::Duration;

use serde_json::Value;

use crate::cdp::{self, Chromium};
use crate::common::Scratch;
use crate::watching::Watch;

const TOKEN: &str = "status-page-token";

/// Chromium, or `None` (printed) when it is missing outside CI.
fn chromium_or_skip() -> Option<std::path::PathBuf> {
    match cdp::find() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => panic!(
            "Chromium is required under CI: install it (apt-get install chromium) or set \
             TRIBUTARY_TEST_CHROMIUM"
        ),
        None => {
            eprintln!("skipped: no Chromium (set TRIBUTARY_TEST_CHROMIUM or put chromium on PATH)");
            None
        }
    }
}

/// What the page shows, read from its DOM contract (`page.rs`); null-safe, as it is read
/// from the moment the document starts loading.
const PAGE_VIEW: &str = r##"(() => ({
  title: document.title,
  conn: document.getElementById("conn")?.textContent,
  sources: [...document.querySelectorAll("#sources tr[data-source]")].map(r => ({
    source: r.dataset.source,
    health: r.querySelector(".health")?.textContent,
    last_success: r.children[3]?.textContent,
    error: r.querySelector(".err")?.textContent,
  })),
  streams: [...document.querySelectorAll("#sources tr.stream")]
    .map(r => r.dataset.of + "." + r.dataset.stream),
  feed: [...document.querySelectorAll("#feed li[data-seq]")].map(li => ({
    source: li.dataset.source, stream: li.dataset.stream, pk: li.dataset.pk,
    seq: Number(li.dataset.seq),
  })),
}))()"##;

fn source_ready(view: &Value, name: &str) -> bool {
    view["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["source"] == name && s["health"] == "ok" && s["last_success"] != "never")
}

fn has_stream(view: &Value, name: &str) -> bool {
    view["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s == name)
}

/// A feed entry after `after` that `matches`.
fn in_feed(view: &Value, after: u64, matches: impl Fn(&Value) -> bool) -> bool {
    view["feed"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["seq"].as_u64().is_some_and(|s| s > after) && matches(e))
}

#[test]
fn the_status_page_lists_sources_and_streams_and_its_feed_shows_live_changes() {
    let Some(program) = chromium_or_skip() else {
        return;
    };
    let scratch = Scratch::new();
    let db = scratch.path("internal.db");
    // QuickBooks from the sandbox, changing every second and announcing each change by
    // webhook; a long interval, so its changes arrive through the webhook.
    scratch.manifest(&format!(
        "{}[sandbox]\nseed = 7\nclients = 20\nmutate_every_ms = 1000\n\n\
         [watch]\nlisten = \"127.0.0.1:0\"\nevents_token = \"{TOKEN}\"\ninterval = \"1s\"\n\n\
         [sources.internal]\nplugin = \"internal-db\"\nstreams = [\"client_profiles\", \"contracts\"]\n\n\
         [sources.internal.config]\nurl = \"sqlite://{}\"\nsample_data = {{ clients = 20, seed = 7 }}\n\n\
         [sources.qb]\nplugin = \"quickbooks\"\nendpoint = \"sandbox\"\ninterval = \"60s\"\n\
         streams = [\"invoices\", \"customers\", \"payments\", \"deleted_objects\"]\n",
        scratch.header(),
        db.display()
    ));
    let watch = Watch::start(&scratch);
    let mut browser = Chromium::launch(&program).expect("Chromium starts");
    browser
        .open(&format!("http://{}/?token={TOKEN}", watch.addr))
        .expect("the page opens");

    // Both sources, healthy after a first cycle, with their streams, and the feed open.
    let view = browser
        .wait_for(
            "sources, streams and feed",
            Duration::from_secs(90),
            PAGE_VIEW,
            |v| {
                source_ready(v, "internal")
                    && source_ready(v, "qb")
                    && has_stream(v, "internal.contracts")
                    && has_stream(v, "internal.client_profiles")
                    && has_stream(v, "qb.invoices")
                    && v["conn"] == "connected"
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view["title"], "tributary watch");

    // The page's cookie authenticates its own requests; without it they are refused.
    let last_seq = browser
        .eval("fetch('/status.json').then(r => r.ok ? r.json() : r.status).then(s => s.last_seq)")
        .expect("status.json");
    let baseline = last_seq
        .as_u64()
        .unwrap_or_else(|| panic!("status.json with the cookie: {last_seq}"));
    let refused = browser
        .eval("fetch('/status.json', {credentials: 'omit'}).then(r => r.status)")
        .expect("status.json");
    assert_eq!(refused, 401, "no cookie, no token: refused");

    // A change in the internal database appears in the live feed.
    let conn = rusqlite::Connection::open(&db).expect("internal db");
    let at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    conn.execute(
        "UPDATE contracts SET status = 'cancelled', updated_at = ?1 WHERE id = 3",
        rusqlite::params![at],
    )
    .expect("update");
    browser
        .wait_for(
            "the internal change in the feed",
            Duration::from_secs(30),
            PAGE_VIEW,
            |v| {
                in_feed(v, baseline, |e| {
                    e["source"] == "internal" && e["stream"] == "contracts" && e["pk"] == "3"
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));

    // And so does a change the QuickBooks emulator makes by itself.
    browser
        .wait_for(
            "a QuickBooks change in the feed",
            Duration::from_secs(60),
            PAGE_VIEW,
            |v| in_feed(v, baseline, |e| e["source"] == "qb"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}
