//! `tributary watch` end to end: a change in the internal database reaches a WebSocket
//! subscriber (`tributary tail`) and the warehouse; `/events` refuses a wrong token;
//! SIGINT stops it promptly and cleanly. Every wait is bounded and on the event itself.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{target_dir, Scratch};
use crate::watching::{tail, Watch};

fn update_contract(db: &std::path::Path, id: i64, status: &str) -> String {
    let conn = rusqlite::Connection::open(db).expect("internal db");
    let at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    conn.execute(
        "UPDATE contracts SET status = ?1, updated_at = ?2 WHERE id = ?3",
        rusqlite::params![status, at, id],
    )
    .expect("update");
    at
}

#[test]
fn a_change_reaches_a_subscriber_and_the_warehouse_and_sigint_stops_watch_cleanly() {
    let scratch = Scratch::new();
    let token = "watch-test-token";
    scratch.manifest(&format!(
        "{}[watch]\nlisten = \"127.0.0.1:0\"\nevents_token = \"{token}\"\ninterval = \"1s\"\n\n\
         [sources.internal]\nplugin = \"internal-db\"\nstreams = [\"client_profiles\", \"contracts\"]\n\n\
         [sources.internal.config]\nurl = \"sqlite://{}\"\nsample_data = {{ clients = 20, seed = 7 }}\n",
        scratch.header(),
        scratch.path("internal.db").display()
    ));
    let watch = Watch::start(&scratch);

    // A wrong token is refused before the upgrade: tail exits non-zero at once. Accepted,
    // it would replay the feed (`--since 0`) and exit 0 after one event, or keep waiting.
    let mut refused = std::process::Command::new(target_dir().join("tributary"))
        .args([
            "tail",
            "--url",
            &format!("ws://{}", watch.addr),
            "--since",
            "0",
            "--count",
            "1",
        ])
        .env("TRIBUTARY_EVENTS_TOKEN", "wrong")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tail starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = refused.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = refused.kill();
            panic!("tail with a wrong token was not refused within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(code, Some(0), "a wrong token must be refused");

    // Subscribed to one stream from the start of the feed (`--since 0`: nothing is missed
    // however late the subscription lands).
    let events = tail(
        &watch.addr,
        token,
        &["--stream", "contracts", "--since", "0"],
        1000,
    );
    // The sample database exists once the first cycle ran.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !scratch.path("internal.db").exists() {
        assert!(
            Instant::now() < deadline,
            "the first cycle never created the sample"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = update_contract(&scratch.path("internal.db"), 3, "cancelled");
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events
            .recv_timeout(left)
            .expect("the change reaches the subscriber");
        assert_eq!(e["stream"], "contracts", "the filter holds: {e}");
        if e["pk"] == "3" && e["record"]["status"] == "cancelled" {
            break e;
        }
    };
    assert_eq!(event["type"], "change");
    assert_eq!(event["source"], "internal");
    assert_eq!(event["stream"], "contracts");
    assert_eq!(event["pk"], "3");
    assert_eq!(event["cursor"], at.as_str());
    assert_eq!(event["record"]["status"], "cancelled");
    assert_eq!(
        event["client"],
        event["record"]["client_id"].to_string().as_str()
    );

    // Committed before it was published: the warehouse already has it.
    let status: String = scratch
        .warehouse()
        .query_row(
            "SELECT json_extract(data, '$.status') FROM internal__contracts WHERE _pk = '3'",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(status, "cancelled");

    // SIGINT: a prompt, clean stop.
    let (code, took) = watch.interrupt();
    assert_eq!(code, Some(0), "a clean stop exits 0");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
