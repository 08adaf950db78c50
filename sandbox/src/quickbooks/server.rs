//! The HTTP side: routes, per-realm throttling, bearer checks, injected faults.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{base64_decode, AuthState, Rejection};
use super::clock::Clock;
use super::config::{CdcCapOrder, CdcOldSince, EmulatorConfig, FaultKind, FaultSpec, Limits};
use super::data::{entity, format_ts, parse_ts, Store, CDC_EXCLUDED};
use super::faults;
use super::query::{self, Outcome};
use super::report;
use super::webhooks::{Dispatcher, WebhookConfig, WebhookError, WebhookShape};
use crate::mutate::{self, Change, Monitor, MutationStats};
use rand::SeedableRng;

/// Objects one CDC response may carry, over all entity blocks.
pub const CDC_CAP: usize = 1000;
/// How far back `changedSince` may go.
pub const CDC_MAX_AGE_DAYS: i64 = 30;

/// One data request as the emulator answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The request: the query text, `cdc entities=.. changedSince=..`, `reports/..` or
    /// `companyinfo`.
    pub request: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The injected fault applied to it, if any.
    pub injected: Option<FaultKind>,
}

/// Counters the emulator keeps for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Data requests received (query, cdc, reports, companyinfo), throttled ones included.
    pub requests: u64,
    /// Data requests admitted past the throttle, with their arrival times.
    pub admitted: Vec<Instant>,
    /// Requests answered with a throttle fault by the rate limiter (not injected ones).
    pub throttled: u64,
    /// Requests refused for authentication.
    pub auth_failures: u64,
    /// Most data requests in flight at once.
    pub max_in_flight: u32,
    /// Successful token refreshes.
    pub refreshes: u64,
    /// Token endpoint calls answered `invalid_grant`.
    pub invalid_grants: u64,
    /// CDC requests refused because `changedSince` was beyond the horizon.
    pub cdc_refused: u64,
    /// Every data request answered, in order of answer, with its status.
    pub served: Vec<Served>,
    /// Every injected fault, with the request it hit, when it was applied (a slow answer
    /// counts even if the client gave up before it came).
    pub faults: Vec<(FaultKind, String)>,
}

impl Stats {
    /// The requests an injected fault of this kind hit.
    pub fn injected(&self, kind: &FaultKind) -> Vec<&str> {
        self.faults
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, r)| r.as_str())
            .collect()
    }

    /// How many times `request` was answered successfully (2xx, no injected fault).
    pub fn succeeded(&self, request: &str) -> usize {
        self.served
            .iter()
            .filter(|s| {
                s.request == request && (200..300).contains(&s.status) && s.injected.is_none()
            })
            .count()
    }

    /// The most requests admitted within any sliding `window` (how close a client came
    /// to the limit).
    pub fn max_in_window(&self, window: Duration) -> usize {
        let mut best = 0;
        let mut start = 0;
        for (end, t) in self.admitted.iter().enumerate() {
            while t.duration_since(self.admitted[start]) >= window {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }

    /// Requests admitted within `window` of the first one.
    pub fn admitted_in_first(&self, window: Duration) -> usize {
        match self.admitted.first() {
            Some(first) => self
                .admitted
                .iter()
                .take_while(|t| t.duration_since(*first) < window)
                .count(),
            None => 0,
        }
    }
}

#[derive(Debug)]
struct ActiveFault {
    spec: FaultSpec,
    seen: u32,
    applied: u32,
}

/// State shared by the handlers and the [`super::Emulator`] handle.
#[derive(Debug)]
pub struct Shared {
    /// Settings the emulator started with.
    pub config: EmulatorConfig,
    /// The company data.
    pub store: Mutex<Store>,
    /// Tokens.
    pub auth: Mutex<AuthState>,
    /// Current limits (changeable at run time).
    pub limits: Mutex<Limits>,
    /// Server time.
    pub clock: Arc<Clock>,
    /// What CDC does with a `changedSince` beyond the horizon.
    pub cdc_old_since: Mutex<CdcOldSince>,
    /// Which changes a capped CDC answer keeps.
    pub cdc_cap_order: Mutex<CdcCapOrder>,
    /// CDC deletion stubs without `MetaData` (the reference infers the stub's JSON from
    /// an XML capture, so a server may send less).
    pub bare_stubs: AtomicBool,
    window: Mutex<VecDeque<Instant>>,
    in_flight: AtomicU32,
    faults: Mutex<Vec<ActiveFault>>,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// The webhook sender; the store tells it of every change.
    pub webhooks: Arc<Dispatcher>,
    /// Changes made by the timer or on demand.
    pub mutations: Arc<Monitor<MutationStats>>,
    /// Chooses the timer's and on-demand changes (seeded from the mutate config).
    mutate_rng: Mutex<rand::rngs::StdRng>,
}

/// Locks a mutex, ignoring poisoning (a panicked handler must not wedge the emulator).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Fresh state for `config`; fails if its webhook target is refused.
    pub fn new(config: EmulatorConfig) -> Result<Self, WebhookError> {
        let clock = Arc::new(Clock::default());
        let webhooks = Arc::new(Dispatcher::new(&config.realm_id, &config.client_id));
        webhooks.set(config.webhook.clone())?;
        let mut store = Store::generate(&config, clock.clone());
        // Attached after generation: the generated company is the starting state, not news.
        store.webhooks = Some(webhooks.clone());
        let seed = config.mutate.as_ref().map_or(1, |m| m.seed);
        Ok(Shared {
            store: Mutex::new(store),
            webhooks,
            mutations: Arc::new(Monitor::default()),
            mutate_rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            clock,
            cdc_old_since: Mutex::new(config.cdc_old_since),
            cdc_cap_order: Mutex::new(CdcCapOrder::default()),
            bare_stubs: AtomicBool::new(false),
            auth: Mutex::new(AuthState::new(
                config.refresh_token.clone(),
                config.access_token_ttl,
                config.rotate_refresh_tokens,
            )),
            limits: Mutex::new(config.limits.clone()),
            window: Mutex::new(VecDeque::new()),
            in_flight: AtomicU32::new(0),
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            config,
        })
    }

    /// Starts the background tasks on the current runtime: the webhook sender and, if
    /// configured, the mutation timer. Both end when the runtime does.
    pub fn spawn_background(self: &Arc<Self>) {
        tokio::spawn(self.webhooks.clone().run());
        if let Some(m) = self.config.mutate.clone() {
            let shared = self.clone();
            let stats = self.mutations.clone();
            tokio::spawn(mutate::run_timer(m, stats, move || shared.random_change()));
        }
    }

    /// Makes one random change (see [`super::mutate`]) without counting it.
    fn random_change(&self) -> Option<Change> {
        let mut rng = lock(&self.mutate_rng);
        let mut store = lock(&self.store);
        super::mutate::random_change(&mut store, &mut rng)
    }

    /// Makes one random change on demand and counts it.
    pub fn mutate_now(&self) -> Option<Change> {
        let change = self.random_change();
        if change.is_some() {
            self.mutations.update(|s| s.on_demand += 1);
        }
        change
    }

    /// Queues a fault.
    pub fn inject(&self, spec: FaultSpec) {
        lock(&self.faults).push(ActiveFault {
            spec,
            seen: 0,
            applied: 0,
        });
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    fn take_fault(&self, request_text: &str) -> Option<FaultKind> {
        let mut faults = lock(&self.faults);
        let mut hit = None;
        for f in faults.iter_mut() {
            if f.spec
                .matching
                .as_deref()
                .is_some_and(|m| !request_text.contains(m))
            {
                continue;
            }
            if f.applied >= f.spec.times {
                continue;
            }
            if f.seen < f.spec.skip {
                f.seen += 1;
                continue;
            }
            f.applied += 1;
            hit = Some(f.spec.kind.clone());
            break;
        }
        faults.retain(|f| f.applied < f.spec.times);
        if let Some(kind) = &hit {
            lock(&self.stats)
                .faults
                .push((kind.clone(), request_text.to_string()));
        }
        hit
    }

    /// Admits a request under the sliding-window limits, or says it is throttled.
    fn admit(&self) -> bool {
        let limits = lock(&self.limits).clone();
        let now = Instant::now();
        let mut window = lock(&self.window);
        let keep = limits.minute_window.max(Duration::from_secs(1));
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= keep)
        {
            window.pop_front();
        }
        if limits.per_minute > 0 && window.len() >= limits.per_minute as usize {
            return false;
        }
        if limits.per_second > 0 {
            let recent = window
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < Duration::from_secs(1))
                .count();
            if recent >= limits.per_second as usize {
                return false;
            }
        }
        window.push_back(now);
        true
    }
}

/// Decrements the in-flight counter when a request finishes.
struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The router: QuickBooks paths plus `/emulator/*` control endpoints.
pub fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v3/company/{realm}/query", get(query_get).post(query_post))
        .route("/v3/company/{realm}/cdc", get(cdc_get))
        .route(
            "/v3/company/{realm}/reports/TransactionList",
            get(transaction_list_get),
        )
        .route(
            "/v3/company/{realm}/companyinfo/{id}",
            get(company_info_get),
        )
        .route("/oauth2/v1/tokens/bearer", post(tokens_create))
        .route("/emulator/mutations", post(mutations_create))
        .route("/emulator/stats", get(stats_get))
        .route("/emulator/webhook", post(webhook_update))
        .layer(axum::middleware::from_fn_with_state(
            shared.config.latency,
            crate::delay,
        ))
        .with_state(shared)
}

fn with_tid(mut r: Response) -> Response {
    let tid = format!(
        "1-{:x}-{:x}",
        chrono::Utc::now().timestamp_millis(),
        rand::random::<u32>()
    );
    if let Ok(v) = HeaderValue::from_str(&tid) {
        r.headers_mut().insert("intuit_tid", v);
    }
    r
}

// The error is the response itself; boxing it would only add an allocation per request.
#[allow(clippy::result_large_err)]
/// Everything a data request goes through before its handler: throttle, realm check,
/// bearer token. `Ok` carries the injected fault to apply, if any; `Err` the response to send.
fn check(
    shared: &Shared,
    realm: &str,
    headers: &HeaderMap,
    text: &str,
) -> Result<Option<FaultKind>, Response> {
    {
        let mut s = lock(&shared.stats);
        s.requests += 1;
    }
    let limits = lock(&shared.limits).clone();
    let in_flight = shared.in_flight.load(Ordering::SeqCst);
    {
        let mut s = lock(&shared.stats);
        s.max_in_flight = s.max_in_flight.max(in_flight);
    }
    let status = if limits.throttle_with_403 {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    if limits.concurrency > 0 && in_flight > limits.concurrency {
        lock(&shared.stats).throttled += 1;
        return Err(faults::throttle_xml(&shared.clock, status, None));
    }
    if !shared.admit() {
        lock(&shared.stats).throttled += 1;
        return Err(faults::throttle_xml(&shared.clock, status, None));
    }
    lock(&shared.stats).admitted.push(Instant::now());
    if realm != shared.config.realm_id {
        return Err(faults::lowercase_auth(
            &shared.clock,
            StatusCode::FORBIDDEN,
            "3100",
            "SERVICE",
            Some("ApplicationAuthorizationFailed"),
        ));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let verdict = lock(&shared.auth).authorize(bearer);
    if let Err(why) = verdict {
        lock(&shared.stats).auth_failures += 1;
        return Err(match why {
            Rejection::Expired => faults::lowercase_auth(
                &shared.clock,
                StatusCode::UNAUTHORIZED,
                "3200",
                "AUTHENTICATION",
                Some("Token expired"),
            ),
            Rejection::Malformed => faults::lowercase_auth(
                &shared.clock,
                StatusCode::UNAUTHORIZED,
                "3200",
                "AUTHENTICATION",
                Some("Malformed bearer token: too short or too long"),
            ),
            Rejection::Unknown => faults::fault(
                &shared.clock,
                StatusCode::UNAUTHORIZED,
                "AuthenticationFault",
                "3200",
                "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "Token revoked",
            ),
        });
    }
    Ok(shared.take_fault(text))
}

/// Runs a data request: gate, then `body` to build the answer, then the injected fault.
async fn serve_data(
    shared: Arc<Shared>,
    realm: &str,
    headers: &HeaderMap,
    text: &str,
    body: impl FnOnce(&Shared) -> Response,
) -> Response {
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(&shared.in_flight);
    let fault = match check(&shared, realm, headers, text) {
        Ok(f) => f,
        Err(r) => return served(&shared, text, None, with_tid(r)),
    };
    let response = match fault.clone() {
        None => body(&shared),
        Some(FaultKind::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            faults::fault(
                &shared.clock,
                status,
                "SystemFault",
                "10000",
                "An application error has occurred while processing your request",
                "System Failure Error: injected by the emulator",
            )
        }
        Some(FaultKind::Slow(d)) => {
            tokio::time::sleep(d).await;
            body(&shared)
        }
        Some(FaultKind::MalformedJson) => {
            let full = body(&shared);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let cut = (bytes.len() / 2).max(1).min(bytes.len());
            let mut text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
            text.push_str("\u{0}<truncated");
            faults::json_response(StatusCode::OK, text)
        }
        Some(FaultKind::Throttle) => {
            faults::throttle_xml(&shared.clock, StatusCode::TOO_MANY_REQUESTS, None)
        }
        Some(FaultKind::ThrottleRetryAfter(s)) => {
            faults::throttle_xml(&shared.clock, StatusCode::TOO_MANY_REQUESTS, Some(s))
        }
        Some(FaultKind::ThrottleJson403) => faults::throttle_json_403(&shared.clock),
        Some(FaultKind::EditAfterAnswer { entity, ids }) => {
            let answer = body(&shared);
            let mut store = lock(&shared.store);
            for id in &ids {
                store.update(&entity, id);
            }
            answer
        }
    };
    served(&shared, text, fault, with_tid(response))
}

/// Records an answered data request in the stats.
fn served(shared: &Shared, text: &str, injected: Option<FaultKind>, r: Response) -> Response {
    lock(&shared.stats).served.push(Served {
        request: text.to_string(),
        status: r.status().as_u16(),
        injected,
    });
    r
}

#[derive(Debug, Deserialize)]
struct QueryParams {
    query: Option<String>,
}

async fn query_get(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(params): Query<QueryParams>,
    headers: HeaderMap,
) -> Response {
    let text = params.query.unwrap_or_default();
    run_query(shared, &realm, &headers, text).await
}

async fn query_post(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    run_query(shared, &realm, &headers, text).await
}

async fn run_query(
    shared: Arc<Shared>,
    realm: &str,
    headers: &HeaderMap,
    text: String,
) -> Response {
    let label = text.clone();
    serve_data(shared, realm, headers, &label, move |shared| {
        let parsed = match query::parse(&text) {
            Ok(q) => q,
            Err(e) => return faults::fault(&shared.clock, StatusCode::BAD_REQUEST, "ValidationFault", e.code, &e.message, &e.detail),
        };
        if parsed.entity == "CompanyInfo" {
            return faults::json_response(StatusCode::OK, json!({"QueryResponse": {"CompanyInfo": [company_info(shared)], "startPosition": 1, "maxResults": 1}, "time": shared.clock.envelope_time()}).to_string());
        }
        let mut store = lock(&shared.store);
        if let Some(kind) = entity(&parsed.entity) {
            store.prepare_index(kind.name);
        }
        match query::run(&store, &parsed) {
            Err(e) => faults::fault(&shared.clock, StatusCode::BAD_REQUEST, "ValidationFault", e.code, &e.message, &e.detail),
            Ok(Outcome::Count(n)) => faults::json_response(StatusCode::OK, json!({"QueryResponse": {"totalCount": n}, "time": shared.clock.envelope_time()}).to_string()),
            Ok(Outcome::Page(rows)) if rows.is_empty() => {
                faults::json_response(StatusCode::OK, json!({"QueryResponse": {}, "time": shared.clock.envelope_time()}).to_string())
            }
            Ok(Outcome::Page(rows)) => {
                // Built by concatenation: the objects are serialized once, when they change.
                let mut body = String::with_capacity(rows.iter().map(|o| o.text.len() + 1).sum::<usize>() + 128);
                body.push_str("{\"QueryResponse\":{\"");
                body.push_str(&parsed.entity);
                body.push_str("\":[");
                for (i, o) in rows.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&o.text);
                }
                body.push_str(&format!("],\"startPosition\":{},\"maxResults\":{}}},\"time\":\"{}\"}}", parsed.start, rows.len(), shared.clock.envelope_time()));
                faults::json_response(StatusCode::OK, body)
            }
        }
    })
    .await
}

fn company_info(shared: &Shared) -> Value {
    json!({"CompanyName": "Emulated Landscaping Inc.", "LegalName": "Emulated Landscaping Inc.", "Country": "US",
        "CompanyAddr": {"Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA", "PostalCode": "87999", "Lat": "INVALID", "Long": "INVALID"},
        "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "4",
        "MetaData": {"CreateTime": "2023-02-10T16:58:47-08:00", "LastUpdatedTime": "2023-02-18T13:21:40-08:00"},
        "realmId": shared.config.realm_id})
}

async fn company_info_get(
    State(shared): State<Arc<Shared>>,
    Path((realm, _id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve_data(shared, &realm, &headers, "companyinfo", |shared| {
        faults::json_response(
            StatusCode::OK,
            json!({"CompanyInfo": company_info(shared), "time": shared.clock.envelope_time()})
                .to_string(),
        )
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdcParams {
    entities: Option<String>,
    changed_since: Option<String>,
}

async fn cdc_get(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(params): Query<CdcParams>,
    headers: HeaderMap,
) -> Response {
    let label = format!(
        "cdc entities={} changedSince={}",
        params.entities.as_deref().unwrap_or(""),
        params.changed_since.as_deref().unwrap_or("")
    );
    serve_data(shared, &realm, &headers, &label, move |shared| {
        let bad = |detail: String| {
            faults::fault(
                &shared.clock,
                StatusCode::BAD_REQUEST,
                "ValidationFault",
                "2030",
                "Invalid query parameter",
                &detail,
            )
        };
        let Some(mut since) = params.changed_since.as_deref().and_then(parse_ts) else {
            return bad("changedSince is missing or not a date-time".into());
        };
        let oldest = shared.clock.now() - CDC_MAX_AGE_DAYS * 86_400;
        if since < oldest {
            match *lock(&shared.cdc_old_since) {
                CdcOldSince::Refuse => {
                    lock(&shared.stats).cdc_refused += 1;
                    return bad(format!(
                        "changedSince must be within the last {CDC_MAX_AGE_DAYS} days"
                    ));
                }
                // Older changes are forgotten: answer from the horizon, silently.
                CdcOldSince::Truncate => since = oldest,
            }
        }
        let names: Vec<&str> = params
            .entities
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return bad("entities is required".into());
        }
        let mut kinds = Vec::new();
        for n in &names {
            if CDC_EXCLUDED.contains(n) {
                return bad(format!("CDC is not supported for entity {n}"));
            }
            match entity(n) {
                Some(k) => kinds.push(k),
                None => return bad(format!("unknown entity {n}")),
            }
        }
        let store = lock(&shared.store);
        // (ts, id, entity index, text): every change since `since`; a capped answer keeps
        // the 1,000 that `cdc_cap_order` says (by default the oldest).
        let bare_stubs = shared.bare_stubs.load(Ordering::Relaxed);
        let mut changes: Vec<(i64, u64, usize, Cow<'_, str>)> = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            for o in store.table(k.name).filter(|o| o.ts >= since) {
                changes.push((o.ts, o.id, i, Cow::Borrowed(o.text.as_str())));
            }
            for t in store
                .tombstones
                .iter()
                .filter(|t| t.entity == k.name && t.ts >= since)
            {
                let text = if bare_stubs {
                    Cow::Owned(format!(
                        r#"{{"domain":"QBO","status":"Deleted","Id":"{}"}}"#,
                        t.id
                    ))
                } else {
                    Cow::Borrowed(t.text.as_str())
                };
                changes.push((t.ts, t.id, i, text));
            }
        }
        match *lock(&shared.cdc_cap_order) {
            CdcCapOrder::OldestFirst => changes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1))),
            CdcCapOrder::NewestFirst => changes.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1))),
            CdcCapOrder::ById => changes.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0))),
        }
        changes.truncate(CDC_CAP);
        let mut blocks: Vec<String> = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            let objs: Vec<&str> = changes
                .iter()
                .filter(|c| c.2 == i)
                .map(|c| c.3.as_ref())
                .collect();
            if objs.is_empty() {
                continue;
            }
            blocks.push(format!(
                "{{\"{}\":[{}],\"startPosition\":1,\"maxResults\":{}}}",
                k.name,
                objs.join(","),
                objs.len()
            ));
        }
        if blocks.is_empty() {
            blocks.push("{}".to_string());
        }
        faults::json_response(
            StatusCode::OK,
            format!(
                "{{\"CDCResponse\":[{{\"QueryResponse\":[{}]}}],\"time\":\"{}\"}}",
                blocks.join(","),
                shared.clock.envelope_time()
            ),
        )
    })
    .await
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    start_date: Option<String>,
    end_date: Option<String>,
    group_by: Option<String>,
}

async fn transaction_list_get(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(params): Query<ReportParams>,
    headers: HeaderMap,
) -> Response {
    let label = format!(
        "reports/TransactionList start_date={} end_date={}",
        params.start_date.as_deref().unwrap_or(""),
        params.end_date.as_deref().unwrap_or("")
    );
    serve_data(shared, &realm, &headers, &label, move |shared| {
        #[allow(clippy::result_large_err)]
        let date = |s: Option<&str>, default: NaiveDate| -> Result<NaiveDate, Response> {
            match s {
                None => Ok(default),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                    faults::fault(
                        &shared.clock,
                        StatusCode::BAD_REQUEST,
                        "ValidationFault",
                        "2030",
                        "Invalid date",
                        &format!("{s} is not a date (yyyy-MM-dd)"),
                    )
                }),
            }
        };
        let start = match date(params.start_date.as_deref(), shared.clock.days_ago(30)) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let end = match date(params.end_date.as_deref(), shared.clock.days_ago(0)) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let grouped = params
            .group_by
            .as_deref()
            .is_some_and(|g| g.eq_ignore_ascii_case("customer"));
        let store = lock(&shared.store);
        faults::json_response(
            StatusCode::OK,
            report::transaction_list(&store, start, end, grouped).to_string(),
        )
    })
    .await
}

async fn tokens_create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded_like(&body);
    let mut client = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        if let Some((id, secret)) = base64_decode(basic)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
        {
            client = (Some(id), Some(secret));
        }
    }
    if client.0.as_deref() != Some(shared.config.client_id.as_str())
        || client.1.as_deref() != Some(shared.config.client_secret.as_str())
    {
        return faults::oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return faults::oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None);
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let issued = lock(&shared.auth).refresh(&presented);
    match issued {
        None => {
            lock(&shared.stats).invalid_grants += 1;
            faults::oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                Some("Incorrect or invalid refresh token"),
            )
        }
        Some(t) => {
            lock(&shared.stats).refreshes += 1;
            let body = json!({"token_type": "bearer", "expires_in": t.expires_in, "refresh_token": t.refresh_token,
                "x_refresh_token_expires_in": 8_726_400, "access_token": t.access_token});
            faults::json_response(StatusCode::OK, body.to_string())
        }
    }
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn serde_urlencoded_like(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect()
}

/// A mutation request to `/emulator/mutations`.
#[derive(Debug, Deserialize)]
struct Mutation {
    /// `create`, `update`, `delete`, `expire_tokens`, `advance_clock`, `age` or `random`
    /// (one change as the mutation timer makes it).
    op: String,
    entity: Option<String>,
    id: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    /// Days, for `advance_clock` and `age`.
    #[serde(default)]
    days: Option<i64>,
}

async fn mutations_create(State(shared): State<Arc<Shared>>, Json(m): Json<Mutation>) -> Response {
    let entity_name = m.entity.clone().unwrap_or_default();
    let mut store = lock(&shared.store);
    let result = match m.op.as_str() {
        "create" => {
            let ids: Vec<String> = (0..m.count.unwrap_or(1))
                .filter_map(|_| store.create(&entity_name))
                .collect();
            json!({"created": ids})
        }
        "update" => {
            json!({"updated": m.id.as_deref().is_some_and(|id| store.update(&entity_name, id))})
        }
        "delete" => {
            json!({"deleted": m.id.as_deref().is_some_and(|id| store.delete(&entity_name, id))})
        }
        "expire_tokens" => {
            lock(&shared.auth).expire_all();
            json!({"expired": true})
        }
        "advance_clock" => {
            shared.clock.advance(m.days.unwrap_or(0) * 86_400);
            json!({"now": format_ts(shared.clock.now())})
        }
        "age" => {
            store.age(m.days.unwrap_or(0) * 86_400);
            json!({"aged_days": m.days.unwrap_or(0)})
        }
        "random" => {
            // The random change takes the store lock itself.
            drop(store);
            match shared.mutate_now() {
                Some(c) => {
                    json!({"entity": c.entity, "id": c.id, "operation": c.operation.as_str()})
                }
                None => json!({}),
            }
        }
        other => return (StatusCode::BAD_REQUEST, format!("unknown op {other}")).into_response(),
    };
    Json(result).into_response()
}

/// A webhook setting sent to `/emulator/webhook`; no `url` clears it.
#[derive(Debug, Deserialize)]
struct WebhookUpdate {
    url: Option<String>,
    #[serde(default)]
    verifier_token: String,
    #[serde(default)]
    shape: Option<String>,
    #[serde(default)]
    resends: u32,
}

/// Points the webhooks at a receiver that was bound after the emulator started (the
/// host's watch server, when the emulator runs as a separate process).
async fn webhook_update(
    State(shared): State<Arc<Shared>>,
    Json(w): Json<WebhookUpdate>,
) -> Response {
    let shape = match w.shape.as_deref() {
        None | Some("legacy") => WebhookShape::Legacy,
        Some("cloudevents") => WebhookShape::CloudEvents,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown shape {other:?} (legacy or cloudevents)"),
            )
                .into_response()
        }
    };
    let config = w.url.map(|url| {
        WebhookConfig::new(url, w.verifier_token)
            .shape(shape)
            .resends(w.resends)
    });
    match shared.webhooks.set(config) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn stats_get(State(shared): State<Arc<Shared>>) -> Response {
    let s = lock(&shared.stats).clone();
    let store = lock(&shared.store);
    let counts: serde_json::Map<String, Value> = store
        .tables
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.len())))
        .collect();
    let window = lock(&shared.limits).minute_window;
    let mutations = shared.mutations.get();
    Json(json!({"requests": s.requests, "admitted": s.admitted.len(), "max_admitted_in_window": s.max_in_window(window),
        "window_secs": window.as_secs_f64(), "throttled": s.throttled, "auth_failures": s.auth_failures,
        "max_in_flight": s.max_in_flight, "refreshes": s.refreshes, "counts": counts, "now": format_ts(shared.clock.now()), "cdc_refused": s.cdc_refused,
        "injected_faults": s.faults.len(), "webhooks": webhooks_json(&shared.webhooks.stats.get()),
        "mutations": {"timed": mutations.timed, "on_demand": mutations.on_demand, "timer_finished": mutations.timer_finished}}))
    .into_response()
}

fn webhooks_json(w: &super::webhooks::WebhookStats) -> Value {
    json!({"events": w.events, "overflowed": w.overflowed, "payloads": w.payloads,
        "delivered": w.delivered, "failed": w.failed, "dropped": w.dropped})
}
