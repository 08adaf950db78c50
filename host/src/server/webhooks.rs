//! `POST /webhooks/quickbooks`: Intuit's change notifications, turned into "fetch now".
//!
//! The order matters: the body is read under a size limit, its signature checked against
//! the exact bytes (before anything in it is trusted), and only then parsed. Intuit wants
//! a 200 within 3 seconds and retries otherwise, so the handler answers as soon as it has
//! decided; the fetch runs after, on a blocking thread, and retries are absorbed by
//! remembering the last keys seen ([`Dedupe`]).
//!
//! `tributary_webhooks_total{source,outcome}` counts each notification in a signed,
//! well-formed POST (`accepted`, `duplicate`, `unknown` realm) and each refused POST
//! (`too_large`, `bad_signature`, `malformed`; source `unknown`, as its body is not
//! trusted).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::state::ServerState;
use crate::watch::metrics::WebhookLabels;

/// Source label of what cannot be attributed to a configured source.
const UNKNOWN: &str = "unknown";

/// Whether `signature` (the `intuit-signature` header: base64 of HMAC-SHA256 keyed with
/// the verifier token) signs `body`. The comparison is constant-time.
pub fn verify_signature(verifier_token: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(verifier_token.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// One changed entity, from either payload shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The company (realm) id.
    pub realm: String,
    /// QuickBooks entity name (`Invoice`).
    pub entity: String,
    /// De-duplication key: the CloudEvent `id`, or the legacy (realm, name, id,
    /// operation, lastUpdated).
    pub key: String,
}

/// Why a signed body is not a webhook payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON, or not the shape of either format.
    #[error("not a QuickBooks webhook payload: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON of neither shape.
    #[error("neither eventNotifications nor CloudEvents")]
    UnknownShape,
}

#[derive(Deserialize)]
struct Legacy {
    #[serde(rename = "eventNotifications")]
    event_notifications: Vec<LegacyNotification>,
}

#[derive(Deserialize)]
struct LegacyNotification {
    #[serde(rename = "realmId")]
    realm_id: String,
    #[serde(rename = "dataChangeEvent", default)]
    data_change_event: Option<DataChangeEvent>,
}

#[derive(Deserialize)]
struct DataChangeEvent {
    #[serde(default)]
    entities: Vec<LegacyEntity>,
}

#[derive(Deserialize)]
struct LegacyEntity {
    name: String,
    id: String,
    #[serde(default)]
    operation: String,
    #[serde(rename = "lastUpdated", default)]
    last_updated: String,
}

#[derive(Deserialize)]
struct CloudEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    intuitaccountid: String,
}

/// The notices of a legacy (`{"eventNotifications": [...]}`) or CloudEvents (an array
/// of events, or one event) payload.
pub fn parse_payload(body: &[u8]) -> Result<Vec<Notice>, PayloadError> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    if value.get("eventNotifications").is_some() {
        let legacy: Legacy = serde_json::from_value(value)?;
        let mut notices = Vec::new();
        for n in legacy.event_notifications {
            for e in n.data_change_event.map(|d| d.entities).unwrap_or_default() {
                // Unit separators: no field can forge another's boundary.
                let key = format!(
                    "legacy\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
                    n.realm_id, e.name, e.id, e.operation, e.last_updated
                );
                notices.push(Notice {
                    realm: n.realm_id.clone(),
                    entity: e.name,
                    key,
                });
            }
        }
        return Ok(notices);
    }
    let events: Vec<CloudEvent> = match value {
        serde_json::Value::Array(_) => serde_json::from_value(value)?,
        serde_json::Value::Object(_) if value.get("type").is_some() => {
            vec![serde_json::from_value(value)?]
        }
        _ => return Err(PayloadError::UnknownShape),
    };
    Ok(events
        .into_iter()
        .map(|e| Notice {
            realm: e.intuitaccountid,
            entity: entity_of_type(&e.kind),
            key: format!("ce\u{1f}{}", e.id),
        })
        .collect())
}

/// QuickBooks entity names, to spell a CloudEvents type's lowercase entity as the API
/// (and the legacy payload) does.
const ENTITY_NAMES: &[&str] = &[
    "Account",
    "Attachable",
    "Bill",
    "BillPayment",
    "Budget",
    "Class",
    "CompanyInfo",
    "CreditCardPayment",
    "CreditMemo",
    "Currency",
    "Customer",
    "Department",
    "Deposit",
    "Employee",
    "Estimate",
    "Invoice",
    "Item",
    "JournalCode",
    "JournalEntry",
    "Payment",
    "PaymentMethod",
    "Preferences",
    "Purchase",
    "PurchaseOrder",
    "RecurringTransaction",
    "RefundReceipt",
    "SalesReceipt",
    "TaxAgency",
    "TaxCode",
    "TaxRate",
    "Term",
    "TimeActivity",
    "Transfer",
    "Vendor",
    "VendorCredit",
];

/// `qbo.invoice.updated.v1` → `Invoice`. An entity outside [`ENTITY_NAMES`] gets its
/// first letter upper-cased, the best guess without the API's spelling.
pub fn entity_of_type(kind: &str) -> String {
    let lower = kind.split('.').nth(1).unwrap_or(kind);
    if let Some(known) = ENTITY_NAMES
        .iter()
        .find(|name| name.eq_ignore_ascii_case(lower))
    {
        return (*known).to_string();
    }
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The last `capacity` keys seen, oldest forgotten first.
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedupe {
    /// Remembers up to `capacity` keys.
    pub fn new(capacity: usize) -> Dedupe {
        Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `key`; false when it was already remembered.
    pub fn insert(&mut self, key: String) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

/// A webhook refused: the status code, and nothing about why beyond a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooLarge,
    BadSignature,
    Malformed,
}

impl Refusal {
    fn outcome(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed => "malformed",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadSignature => StatusCode::UNAUTHORIZED,
            Refusal::Malformed => StatusCode::BAD_REQUEST,
        };
        (status, self.outcome()).into_response()
    }
}

/// `POST /webhooks/quickbooks`.
pub(super) async fn webhooks_receive(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&state, &headers, body).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(refusal) => {
            count(&state, UNKNOWN, refusal.outcome());
            tracing::debug!(outcome = refusal.outcome(), "webhook refused");
            refusal.into_response()
        }
    }
}

async fn receive(state: &ServerState, headers: &HeaderMap, body: Body) -> Result<(), Refusal> {
    let limit = state.config.max_body_bytes;
    let body = read_limited(headers, body, limit).await?;
    let signature = headers
        .get("intuit-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::BadSignature)?;
    // Each distinct token once: the sources of one Intuit app share it.
    let mut tokens: Vec<&str> = state
        .config
        .webhooks
        .iter()
        .map(|w| w.verifier_token.as_str())
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    let signed_with: Vec<&str> = tokens
        .into_iter()
        .filter(|token| verify_signature(token, &body, signature))
        .collect();
    if signed_with.is_empty() {
        return Err(Refusal::BadSignature);
    }
    let notices = parse_payload(&body).map_err(|_| Refusal::Malformed)?;

    let mut fetch: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    {
        let mut dedupe = state.dedupe.lock().unwrap_or_else(|p| p.into_inner());
        for notice in notices {
            // Only a source whose own token signed this body may be triggered by it.
            let sources: Vec<&str> = state
                .config
                .webhooks
                .iter()
                .filter(|w| w.realm_id == notice.realm)
                .filter(|w| signed_with.contains(&w.verifier_token.as_str()))
                .map(|w| w.source.as_str())
                .collect();
            if sources.is_empty() {
                count(state, UNKNOWN, "unknown");
                continue;
            }
            let fresh = dedupe.insert(notice.key);
            for source in sources {
                if fresh {
                    count(state, source, "accepted");
                    fetch
                        .entry(source.to_string())
                        .or_default()
                        .insert(notice.entity.clone());
                } else {
                    count(state, source, "duplicate");
                }
            }
        }
    }
    for (source, entities) in fetch {
        let trigger = state.trigger.clone();
        // Off the request path: the 200 must not wait for the fetch.
        tokio::task::spawn_blocking(move || {
            trigger.fetch_now(&source, entities.into_iter().collect())
        });
    }
    Ok(())
}

/// The body, refused (413) as soon as it is known to exceed `limit`.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Refusal::Malformed)?;
        if buf.len() + chunk.len() > limit {
            return Err(Refusal::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn count(state: &ServerState, source: &str, outcome: &str) {
    state
        .metrics
        .webhooks
        .get_or_create(&WebhookLabels {
            source: source.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}
