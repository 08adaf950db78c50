use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How the reqwest client of a connector is built.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `User-Agent`, e.g. `tributary-quickbooks/0.1.0`.
    pub user_agent: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout, if it should be shorter than `timeout`.
    pub connect_timeout: Option<Duration>,
}

/// A reqwest client with gzip, the user agent and the timeouts; the error is a message.
pub fn client(settings: &ClientSettings) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .user_agent(settings.user_agent.clone())
        .gzip(true);
    if let Some(connect) = settings.connect_timeout {
        builder = builder.connect_timeout(connect);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", transport_message(&e)))
}

/// `Retry-After` in seconds (whole or decimal); `None` if absent or not a number of
/// seconds (the HTTP-date form is not used by the APIs we read).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(text)
}

fn parse_retry_after(text: &str) -> Option<Duration> {
    let secs = text.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// A transport error in words, without the URL (API URLs carry queries we do not want
/// repeated in every message; credentials travel in headers, which reqwest never prints).
pub fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_whole_and_decimal_seconds_only() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[tokio::test]
    async fn a_refused_connection_is_worded_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let http = client(&ClientSettings {
            user_agent: "test".into(),
            timeout: Duration::from_secs(5),
            connect_timeout: None,
        })
        .unwrap();
        let err = http
            .get(format!("http://127.0.0.1:{port}/q?token=abc"))
            .send()
            .await
            .unwrap_err();
        let message = transport_message(&err);
        assert!(message.starts_with("could not connect"), "{message}");
        assert!(!message.contains("token=abc"), "{message}");
    }
}
