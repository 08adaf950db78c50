//! Services (databases, NATS) for the tests that need them, one policy for every test crate (the
//! connector suites include this file with `#[path]`).

/// A suffix no other test name of this run or of an earlier one has (process id, a
/// counter, the clock's nanoseconds), for schemas, streams and databases on a shared
/// server, so tests run in parallel and re-run without colliding.
#[allow(dead_code)] // not every crate that includes this file names things
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL of a service for the tests that need it.
///
/// The variable (`.ci/run` sets it) wins; without it the conventional local URL is used.
/// An unreachable service is a loud failure saying how to start it or how to skip on
/// purpose (`TRIBUTARY_SKIP_SERVICES=postgres,mysql,nats`), never a silent skip. Under `CI`
/// the variable must be set and nothing may be skipped.
pub fn service_url(var: &str) -> Option<String> {
    let (service, default, start) = match var {
        "TRIBUTARY_TEST_POSTGRES_URL" => (
            "postgres",
            "postgres://postgres@127.0.0.1:5432/test",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        ),
        "TRIBUTARY_TEST_MYSQL_URL" => (
            "mysql",
            "mysql://root@127.0.0.1:3306/test",
            "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
        ),
        "TRIBUTARY_TEST_NATS_URL" => (
            "nats",
            "nats://127.0.0.1:4222",
            "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server",
        ),
        other => panic!("unknown service variable {other}"),
    };
    let ci = std::env::var_os("CI").is_some();
    let skipped = std::env::var("TRIBUTARY_SKIP_SERVICES")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == service);
    if skipped && !ci {
        eprintln!("skipping the {service} tests: TRIBUTARY_SKIP_SERVICES names {service}");
        return None;
    }
    let url = match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ if ci => panic!("{var} is not set: CI must provide this service (see .ci/run)"),
        _ => default.to_string(),
    };
    let address = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .map(|authority| {
            authority
                .rsplit('@')
                .next()
                .unwrap_or(authority)
                .to_string()
        })
        .unwrap_or_default();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)));
    match reachable {
        Some(Ok(_)) => Some(url),
        Some(Err(e)) => panic!(
            "{service} is not reachable at {address} ({e}) for {var}. Start it (`{start}`), point {var} at a running server, or skip these tests on purpose with TRIBUTARY_SKIP_SERVICES={service}"
        ),
        None => panic!("{var}: cannot find host and port in its URL"),
    }
}
