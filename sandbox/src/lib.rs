//! Local emulators of the SaaS APIs Tributary reads, for tests, demos and connector
//! authors: [`quickbooks`] (QuickBooks Online Accounting API v3) and [`superops`]
//! (SuperOps MSP GraphQL). Each serves real HTTP on loopback from deterministic generated
//! data and reproduces the documented quirks and failure modes. [`items`] serves the
//! example API of the connector template (`tributary new-connector`). [`mutate`] holds
//! what both share for changing data over time: the timer's settings and the [`mutate::Change`]
//! a mutation reports.

pub mod connect;
pub mod items;
pub mod mutate;
pub mod quickbooks;
pub mod superops;

/// Waits `latency` before every request goes on: a distant server, for demos and the
/// parallel-versus-sequential benchmark.
pub(crate) async fn delay(
    axum::extract::State(latency): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}
