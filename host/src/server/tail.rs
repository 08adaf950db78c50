//! `tributary tail`: prints the `/events` feed, one JSON line per message.

use std::io::Write;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::error::{Error, Result};

/// What `tail` connects to and asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// The watch server: `ws://host:port` (the `/events` path is added when missing).
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// The events token (sent as a bearer header, never in the URL).
    #[arg(long, env = "TRIBUTARY_EVENTS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Only these sources (repeatable or comma-separated).
    #[arg(long)]
    pub source: Vec<String>,
    /// Only these streams (repeatable or comma-separated).
    #[arg(long)]
    pub stream: Vec<String>,
    /// Only these clients, in each source's own ids (repeatable or comma-separated).
    #[arg(long)]
    pub client: Vec<String>,
    /// Replay the events the server still keeps after this seq first.
    #[arg(long)]
    pub since: Option<u64>,
    /// Stop after this many change events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// The request URL: `/events` appended when the path is empty, then the filters.
pub fn events_url(args: &TailArgs) -> Result<String> {
    let bad = |reason: &str| Error::Url {
        url: args.url.clone(),
        reason: reason.to_string(),
    };
    let (base, existing) = match args.url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (args.url.as_str(), None),
    };
    let rest = base
        .strip_prefix("ws://")
        .or_else(|| base.strip_prefix("wss://"))
        .ok_or_else(|| bad("the scheme must be ws:// or wss://"))?;
    let mut url = base.trim_end_matches('/').to_string();
    if !rest.trim_end_matches('/').contains('/') {
        url.push_str("/events");
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for s in &args.source {
        pairs.push(("source", s.clone()));
    }
    for s in &args.stream {
        pairs.push(("stream", s.clone()));
    }
    for c in &args.client {
        pairs.push(("client", c.clone()));
    }
    if let Some(since) = args.since {
        pairs.push(("since", since.to_string()));
    }
    let mut query: Vec<String> = existing.into_iter().map(String::from).collect();
    if !pairs.is_empty() {
        query.push(serde_urlencoded::to_string(&pairs).map_err(|e| bad(&e.to_string()))?);
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    Ok(url)
}

/// Connects and writes each message to `out` as one line, until the server closes, the
/// count is reached, or the server drops this subscriber ([`Error::Lagged`]).
pub async fn tail(args: &TailArgs, mut out: impl Write) -> Result<()> {
    let url = events_url(args)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::WebSocket(Box::new(e)))?;
    if let Some(token) = &args.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Url {
            url: args.url.clone(),
            reason: "the token is not a valid header value".into(),
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| Error::WebSocket(Box::new(e)))?;
    let mut changes = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    while let Some(message) = socket.next().await {
        let text = match message.map_err(|e| Error::WebSocket(Box::new(e)))? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        writeln!(out, "{}", text.as_str())?;
        out.flush()?;
        let kind: Option<serde_json::Value> = serde_json::from_str(text.as_str()).ok();
        match kind
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(|t| t.as_str())
        {
            Some("change") => {
                changes += 1;
                if args.count.is_some_and(|n| changes >= n) {
                    let _ = socket.close(None).await;
                    return Ok(());
                }
            }
            Some("lagged") => {
                let missed = kind
                    .as_ref()
                    .and_then(|v| v.get("missed"))
                    .and_then(|m| m.as_u64())
                    .unwrap_or(0);
                return Err(Error::Lagged { missed });
            }
            _ => {}
        }
    }
    Ok(())
}
