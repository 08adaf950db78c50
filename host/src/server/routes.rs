//! The router, `serve`, the token check, `/health` and `/metrics`.

use std::future::Future;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::state::ServerState;
use super::{feed, page, webhooks};
use crate::watch::status::{Health, SourceView};

/// The router of every route, on `state`.
pub fn app(state: ServerState) -> Router {
    Router::new()
        .route("/", get(page::page_show))
        .route("/status.json", get(page::status_show))
        .route("/events", get(feed::events_subscribe))
        .route("/health", get(health_show))
        .route("/metrics", get(metrics_show))
        .route("/webhooks/quickbooks", post(webhooks::webhooks_receive))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets open requests
/// finish; WebSocket subscribers get a close frame ("going away").
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The throughput chart needs samples even while nobody has the page open.
    let sampler = tokio::spawn(page::sample_forever(state.clone()));
    let closing = state.closing.clone();
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    result
}

/// Whether the request carries the events token: `Authorization: Bearer`, else the
/// `token` query parameter, else the page's cookie. Compared in constant time (over
/// digests, so the length does not leak either).
pub(super) fn authorized(state: &ServerState, headers: &HeaderMap, query: Option<&str>) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = page::token_cookie(headers);
    let Some(given) = bearer.or(query).or(cookie.as_deref()) else {
        return false;
    };
    let expected = &state.config.events_token;
    // An empty configured token would let anyone in; refuse instead.
    !expected.is_empty()
        && bool::from(Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())))
}

/// The body of `/health`.
#[derive(Debug, Serialize)]
pub struct HealthBody {
    /// `ok`, or `failing` when a source failed `health_failures` cycles in a row.
    pub status: &'static str,
    /// Every source.
    pub sources: Vec<SourceView>,
}

/// `GET /health`: 200, or 503 once a source has failed too many cycles in a row.
async fn health_show(State(state): State<ServerState>) -> Response {
    let sources = state.status.snapshot();
    let threshold = state.config.health_failures;
    let failing = sources
        .iter()
        .any(|s| s.health == Health::Failing && s.consecutive_failures >= threshold);
    let (code, status) = if failing {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    } else {
        (StatusCode::OK, "ok")
    };
    (code, Json(HealthBody { status, sources })).into_response()
}

/// What prometheus-client's text encoder writes (it ends with `# EOF`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
async fn metrics_show(State(state): State<ServerState>) -> Response {
    let body = state.metrics.encode(chrono::Utc::now());
    ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
}
