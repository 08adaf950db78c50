//! The HTTP side: `POST /msp` with the transport-level checks in the order the real
//! ingress applies them, the rate budget, injected faults, and the [`Emulator`] handle
//! tests use to start, steer and inspect it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::data::{Tenant, TenantSize};
use super::exec::{self, ExecOptions, GraphQlRequest, ScanCache};
use super::schema::{Collection, LIST_QUERIES};
use crate::mutate::{self, Change, Monitor, MutateConfig, MutationStats};
use rand::SeedableRng;

/// A server-side request budget: more than `max_requests` accepted requests in any
/// sliding `window` gets `rate_limit_exceeded` (HTTP 200), as the real API does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// Window length (60 s for the documented "800 per minute").
    pub window: Duration,
}

impl RateLimit {
    /// `n` requests per minute.
    pub fn per_minute(n: u32) -> Self {
        RateLimit {
            max_requests: n,
            window: Duration::from_secs(60),
        }
    }
}

/// How to build an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed of the generated data.
    pub seed: u64,
    /// How much data.
    pub size: TenantSize,
    /// The tenant's `CustomerSubDomain`.
    pub subdomain: String,
    /// The valid API token.
    pub token: String,
    /// Server-side throttle; `None` = limits off.
    pub rate_limit: Option<RateLimit>,
    /// Send `totalCount` as a string.
    pub total_count_as_string: bool,
    /// Fractional digits of ticket timestamps: 0, 3 or 6.
    pub ticket_fraction_digits: u8,
    /// Refuse the `createdTime after` condition (see [`ExecOptions`]).
    pub refuse_created_after: bool,
    /// Added to every request's answer time (zero: none).
    pub latency: std::time::Duration,
    /// Change data on a timer (`None`: only when asked).
    pub mutate: Option<MutateConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            seed: 42,
            size: TenantSize::default(),
            subdomain: "acme-msp".to_string(),
            token: "sandbox-token-0123456789abcdef".to_string(),
            rate_limit: None,
            total_count_as_string: false,
            ticket_fraction_digits: 0,
            refuse_created_after: false,
            latency: std::time::Duration::ZERO,
            mutate: None,
        }
    }
}

/// A fault to apply to one upcoming request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and a plain-text body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer HTTP 200 with this `clientError` code and `data: {}`.
    ClientError(String),
    /// Answer with the first half of the rows plus an `errors` entry (partial data).
    Partial,
    /// Answer with the `SubSelectionNotAllowed` validation error graphql-java gives when
    /// a field the request sub-selects has become a JSON scalar (schema drift): the
    /// first sub-selected field inside the rows, and `data: null`.
    SubSelectionNotAllowed,
}

/// A fault aimed at one operation: applied to the request to `root` after `skip` other
/// accepted requests to it.
struct Targeted {
    root: String,
    skip: u64,
    fault: Fault,
}

type Hook = Box<dyn FnOnce(&mut Tenant) + Send>;

#[derive(Default)]
struct Control {
    rate_limit: Option<RateLimit>,
    accepted: VecDeque<Instant>,
    faults: VecDeque<Fault>,
    targeted: Vec<Targeted>,
    hooks: Vec<(u64, Hook)>,
}

impl Control {
    /// The fault for a request calling `ops`: an aimed one if due, else the next queued.
    fn next_fault(&mut self, ops: &[String]) -> Option<Fault> {
        let mut hit = None;
        for (i, t) in self.targeted.iter_mut().enumerate() {
            if !ops.contains(&t.root) {
                continue;
            }
            if t.skip == 0 {
                if hit.is_none() {
                    hit = Some(i);
                }
            } else {
                t.skip -= 1;
            }
        }
        match hit {
            Some(i) => Some(self.targeted.remove(i).fault),
            None => self.faults.pop_front(),
        }
    }
}

/// Request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every POST received.
    pub received: u64,
    /// Requests rejected with 400 (subdomain).
    pub bad_subdomain: u64,
    /// Requests rejected with 401 (token).
    pub unauthorized: u64,
    /// Requests answered `rate_limit_exceeded`.
    pub throttled: u64,
    /// Requests that passed the transport checks and the budget.
    pub accepted: u64,
    /// Accepted requests per root field.
    pub by_operation: BTreeMap<String, u64>,
    /// Most accepted requests seen in one rate window (only with a rate limit).
    pub peak_in_window: u64,
}

struct Shared {
    /// Added before every answer.
    latency: std::time::Duration,
    subdomain: String,
    token: String,
    opts: ExecOptions,
    tenant: RwLock<Tenant>,
    cache: Mutex<ScanCache>,
    control: Mutex<Control>,
    stats: Mutex<Stats>,
    mutate: Option<MutateConfig>,
    mutations: Arc<Monitor<MutationStats>>,
    /// Chooses the timer's and on-demand changes (seeded from the mutate config).
    mutate_rng: Mutex<rand::rngs::StdRng>,
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Emulator {
    /// Generates the tenant and serves it on its own thread and runtime, so it can be used
    /// from synchronous tests and from inside another runtime alike.
    pub fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = app(shared.clone());
        let for_timer = shared.clone();
        std::thread::Builder::new()
            .name("superops-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("superops emulator runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    for_timer.spawn_timer();
                    tokio::select! {
                        r = axum::serve(listener, app) => if let Err(e) = r { tracing::error!("superops emulator: {e}") },
                        _ = rx => {}
                    }
                });
                rt.shutdown_background();
            })?;
        Ok(Emulator {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:<port>/msp`.
    pub fn url(&self) -> String {
        format!("http://{}/msp", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tenant's subdomain (send it as `CustomerSubDomain`).
    pub fn subdomain(&self) -> &str {
        &self.shared.subdomain
    }

    /// The valid API token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Runs `f` with the tenant locked for writing (mutations, or reading the data a test
    /// checks results against).
    pub fn with_tenant<T>(&self, f: impl FnOnce(&mut Tenant) -> T) -> T {
        let mut t = self
            .shared
            .tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut t)
    }

    /// Opens a ticket for the client at index `client`; returns its id.
    pub fn open_ticket(&self, client: usize) -> String {
        self.with_tenant(|t| t.open_ticket(client))
    }

    /// Edits a ticket, bumping `updatedTime`.
    pub fn update_ticket(&self, ticket_id: &str) -> bool {
        self.with_tenant(|t| t.update_ticket(ticket_id))
    }

    /// Resolves a ticket, bumping `updatedTime`.
    pub fn resolve_ticket(&self, ticket_id: &str) -> bool {
        self.with_tenant(|t| t.resolve_ticket(ticket_id))
    }

    /// Removes the row of `collection` whose key is `id` (see [`Tenant::remove`]): it is
    /// no longer listed. Returns false when there is no such row.
    pub fn remove(&self, collection: Collection, id: &str) -> bool {
        self.with_tenant(|t| t.remove(collection, id))
    }

    /// Every row of `collection`, rendered with all fields as the API would send them.
    pub fn dump(&self, collection: Collection) -> Vec<Value> {
        self.with_tenant(|t| {
            t.rows(collection)
                .iter()
                .map(|r| Value::Object(r.clone()))
                .collect()
        })
    }

    /// Runs `f` on the tenant just before the `n`-th accepted request (1-based) is
    /// executed: the deterministic way to land edits in the middle of a sync.
    pub fn on_request(&self, n: u64, f: impl FnOnce(&mut Tenant) + Send + 'static) {
        lock(&self.shared.control).hooks.push((n, Box::new(f)));
    }

    /// Sets or clears the server-side rate limit.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut c = lock(&self.shared.control);
        c.rate_limit = limit;
        c.accepted.clear();
    }

    /// Queues `fault` for each of the next `n` accepted requests.
    pub fn inject(&self, n: usize, fault: Fault) {
        let mut c = lock(&self.shared.control);
        for _ in 0..n {
            c.faults.push_back(fault.clone());
        }
    }

    /// Queues `fault` for one request to root field `root` (`getInvoiceList`, …): the
    /// one that follows `skip` other accepted requests to it. Aimed faults go before the
    /// queue of [`Emulator::inject`].
    pub fn inject_for(&self, root: &str, skip: u64, fault: Fault) {
        lock(&self.shared.control).targeted.push(Targeted {
            root: root.to_string(),
            skip,
            fault,
        });
    }

    /// Drops queued and aimed faults.
    pub fn clear_faults(&self) {
        let mut c = lock(&self.shared.control);
        c.faults.clear();
        c.targeted.clear();
    }

    /// Request counters so far.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    /// Makes one change now, as the mutation timer would (a ticket's status, a new
    /// worklog entry, sometimes a new ticket), and returns it.
    pub fn mutate(&self) -> Change {
        self.shared.mutate_now()
    }

    /// Changes made so far by the timer and by [`Emulator::mutate`].
    pub fn mutation_stats(&self) -> MutationStats {
        self.shared.mutations.get()
    }

    /// Blocks until the mutation counters satisfy `until` (then returns them) or
    /// `timeout` passes (`None`), e.g. `|s| s.timer_finished`.
    pub fn wait_for_mutations(
        &self,
        timeout: Duration,
        until: impl Fn(&MutationStats) -> bool,
    ) -> Option<MutationStats> {
        let (stats, ok) = self.shared.mutations.wait(timeout, until);
        ok.then_some(stats)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Shared {
    fn new(config: &EmulatorConfig) -> Shared {
        let tenant = Tenant::generate(config.seed, &config.size, config.ticket_fraction_digits);
        Shared {
            latency: config.latency,
            subdomain: config.subdomain.clone(),
            token: config.token.clone(),
            opts: ExecOptions {
                total_count_as_string: config.total_count_as_string,
                refuse_created_after: config.refuse_created_after,
            },
            tenant: RwLock::new(tenant),
            cache: Mutex::new(ScanCache::default()),
            control: Mutex::new(Control {
                rate_limit: config.rate_limit,
                ..Control::default()
            }),
            stats: Mutex::new(Stats::default()),
            mutate: config.mutate.clone(),
            mutations: Arc::new(Monitor::default()),
            mutate_rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(
                config.mutate.as_ref().map_or(1, |m| m.seed),
            )),
        }
    }

    fn random_change(&self) -> Change {
        let mut rng = lock(&self.mutate_rng);
        let mut tenant = self
            .tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        super::mutate::random_change(&mut tenant, &mut rng)
    }

    fn mutate_now(&self) -> Change {
        let change = self.random_change();
        self.mutations.update(|s| s.on_demand += 1);
        change
    }

    /// Starts the mutation timer, if configured, on the current runtime (it ends with it).
    fn spawn_timer(self: &Arc<Self>) {
        if let Some(m) = self.mutate.clone() {
            let shared = self.clone();
            let stats = self.mutations.clone();
            tokio::spawn(mutate::run_timer(m, stats, move || {
                Some(shared.random_change())
            }));
        }
    }
}

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/msp", post(graphql_execute))
        .route("/health", get(|| async { "ok" }))
        .route("/emulator/mutations", post(mutation_create))
        .route("/emulator/stats", get(stats_get))
        .layer(axum::middleware::from_fn_with_state(
            shared.latency,
            crate::delay,
        ))
        .with_state(shared)
}

/// A change asked for over HTTP (`{"op": "random"}`, the only one): the emulator runs as a
/// separate process under `tributary-sandbox connect`, where tests cannot call
/// [`Emulator::mutate`]. Answers what changed, as the QuickBooks emulator does.
async fn mutation_create(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let op = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("op").and_then(Value::as_str).map(str::to_string));
    if op.as_deref() != Some("random") {
        return plain(StatusCode::BAD_REQUEST, "unknown op (random)");
    }
    let c = shared.mutate_now();
    axum::Json(json!({"entity": c.entity, "id": c.id, "operation": c.operation.as_str()}))
        .into_response()
}

/// Request counters, for tests that must see whether a client called.
async fn stats_get(State(shared): State<Arc<Shared>>) -> Response {
    let s = lock(&shared.stats).clone();
    let m = shared.mutations.get();
    axum::Json(json!({"requests": s.received, "accepted": s.accepted, "throttled": s.throttled,
        "mutations": {"timed": m.timed, "on_demand": m.on_demand, "timer_finished": m.timer_finished}}))
    .into_response()
}

/// Serves an emulator built from `config` on an already-bound listener until the future
/// is dropped (used by the CLI).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &EmulatorConfig,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(config));
    shared.spawn_timer();
    axum::serve(listener, app(shared)).await?;
    Ok(())
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

enum Gate {
    Throttled,
    Go(Option<Fault>, Vec<Hook>),
}

async fn graphql_execute(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&shared.stats).received += 1;
    // The ingress checks the subdomain first and answers an empty 400: a blank or
    // whitespace-padded value counts as missing.
    let sub = headers
        .get("customersubdomain")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sub.is_empty() || sub.trim() != sub || sub != shared.subdomain {
        lock(&shared.stats).bad_subdomain += 1;
        return StatusCode::BAD_REQUEST.into_response();
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token != shared.token {
        lock(&shared.stats).unauthorized += 1;
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let req: Result<GraphQlRequest, _> = serde_json::from_slice(&body);
    let ops = req
        .as_ref()
        .map(|r| exec::root_fields(&r.query))
        .unwrap_or_default();
    let gate = {
        let mut c = lock(&shared.control);
        let now = Instant::now();
        let mut throttled = false;
        if let Some(limit) = c.rate_limit {
            while c
                .accepted
                .front()
                .is_some_and(|t| now.duration_since(*t) >= limit.window)
            {
                c.accepted.pop_front();
            }
            if c.accepted.len() >= limit.max_requests as usize {
                throttled = true;
            } else {
                c.accepted.push_back(now);
                let n = c.accepted.len() as u64;
                let mut s = lock(&shared.stats);
                s.peak_in_window = s.peak_in_window.max(n);
            }
        }
        if throttled {
            Gate::Throttled
        } else {
            let accepted = {
                let mut s = lock(&shared.stats);
                s.accepted += 1;
                s.accepted
            };
            let fault = c.next_fault(&ops);
            let mut due = Vec::new();
            let mut i = 0;
            while i < c.hooks.len() {
                if c.hooks[i].0 <= accepted {
                    due.push(c.hooks.remove(i).1);
                } else {
                    i += 1;
                }
            }
            Gate::Go(fault, due)
        }
    };
    let (fault, hooks) = match gate {
        Gate::Throttled => {
            lock(&shared.stats).throttled += 1;
            return json_response(
                exec::client_error_body(
                    "rate_limit_exceeded",
                    None,
                    "API limit reached",
                    json!({}),
                )
                .into_bytes(),
            );
        }
        Gate::Go(f, h) => (f, h),
    };
    if !hooks.is_empty() {
        let mut t = shared
            .tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for h in hooks {
            h(&mut t);
        }
    }
    let req: GraphQlRequest = match req {
        Ok(r) => r,
        Err(e) => {
            return json_response(
                json!({"errors": [{"message": format!("Invalid request body: {e}"), "extensions": {"classification": "InvalidSyntax"}}]})
                    .to_string()
                    .into_bytes(),
            )
        }
    };
    {
        let mut s = lock(&shared.stats);
        for op in ops {
            *s.by_operation.entry(op).or_default() += 1;
        }
    }
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html><body>upstream error</body></html>").into_response();
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ClientError(code)) => {
            return json_response(
                exec::client_error_body(&code, None, "Request failed", json!({})).into_bytes(),
            )
        }
        Some(Fault::SubSelectionNotAllowed) => {
            return json_response(exec::sub_selection_not_allowed(&req.query).into_bytes())
        }
        Some(Fault::Partial) | None => {}
    }
    let partial = matches!(fault, Some(Fault::Partial));
    let out = {
        let tenant = shared
            .tenant
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        exec::execute(&tenant, &shared.cache, &req, shared.opts)
    };
    if partial {
        return json_response(make_partial(&out).into_bytes());
    }
    json_response(out)
}

/// Keeps the first half of every list and adds the non-null violation graphql-java reports
/// when a resolver returns null for a `!` field: the page is partial and must not be
/// taken as complete.
fn make_partial(body: &[u8]) -> String {
    let mut v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut path = Vec::new();
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
        for (root, result) in data.iter_mut() {
            if let Some(obj) = result.as_object_mut() {
                for q in LIST_QUERIES {
                    if let Some(Value::Array(items)) = obj.get_mut(q.list_key) {
                        let keep = items.len() / 2;
                        items.truncate(keep);
                        path = vec![json!(root), json!(q.list_key), json!(keep), json!("type")];
                    }
                }
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "errors".into(),
            json!([{"message": "Cannot return null for non-nullable type: 'OfferedItemType' within parent 'OfferedItem'", "path": path}]),
        );
    }
    v.to_string()
}
