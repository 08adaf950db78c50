//! Settings of the QuickBooks emulator: generated data volumes, credentials, limits and
//! the faults it can be told to inject.

use std::time::Duration;

use super::webhooks::WebhookConfig;
use crate::mutate::MutateConfig;

/// How many objects of each entity the emulator generates at start.
///
/// Entity names are the QuickBooks ones (`Invoice`, `Customer`, ...), as used in queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// `Customer` (every fifth one is a sub-customer/job of the one before it).
    pub customers: usize,
    /// `Vendor`.
    pub vendors: usize,
    /// `Account`.
    pub accounts: usize,
    /// `Item`.
    pub items: usize,
    /// `Invoice`.
    pub invoices: usize,
    /// `Payment`.
    pub payments: usize,
    /// `Purchase` (expenses).
    pub purchases: usize,
    /// `Bill`.
    pub bills: usize,
    /// `Deposit`.
    pub deposits: usize,
    /// `CreditMemo`.
    pub credit_memos: usize,
    /// `SalesReceipt`.
    pub sales_receipts: usize,
    /// `JournalEntry`.
    pub journal_entries: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            customers: 40,
            vendors: 15,
            accounts: 20,
            items: 12,
            invoices: 120,
            payments: 60,
            purchases: 45,
            bills: 30,
            deposits: 20,
            credit_memos: 10,
            sales_receipts: 25,
            journal_entries: 15,
        }
    }
}

impl Counts {
    /// Every count zero except `invoices` (and the few customers and items invoices
    /// refer to): for benchmarks that read one large stream.
    pub fn invoices_only(invoices: usize) -> Self {
        Counts {
            customers: 5,
            vendors: 0,
            accounts: 3,
            items: 3,
            invoices,
            payments: 0,
            purchases: 0,
            bills: 0,
            deposits: 0,
            credit_memos: 0,
            sales_receipts: 0,
            journal_entries: 0,
        }
    }
}

/// Server-side request limits per realm, as QuickBooks enforces them. Zero means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests allowed in any sliding `minute_window` (production: 500 per 60 s).
    pub per_minute: u32,
    /// Length of the "minute" window; shorten it to scale the limit down for quick tests.
    pub minute_window: Duration,
    /// Requests allowed in any sliding second (production: 10).
    pub per_second: u32,
    /// Requests in flight at once (production: 10).
    pub concurrency: u32,
    /// Answer throttled requests with HTTP 403 instead of 429 (seen in the wild).
    pub throttle_with_403: bool,
}

impl Limits {
    /// The production limits: 500/min, 10/s, 10 in flight, 429 status.
    pub fn production() -> Self {
        Limits {
            per_minute: 500,
            minute_window: Duration::from_secs(60),
            per_second: 10,
            concurrency: 10,
            throttle_with_403: false,
        }
    }

    /// No limits at all (benchmarks, most tests).
    pub fn off() -> Self {
        Limits {
            per_minute: 0,
            minute_window: Duration::from_secs(60),
            per_second: 0,
            concurrency: 0,
            throttle_with_403: false,
        }
    }
}

/// What `/cdc` does with a `changedSince` older than its 30-day memory. The reference
/// leaves the real answer unverified, so both plausible behaviours can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CdcOldSince {
    /// Refuse it: HTTP 400 `ValidationFault` (the reference's suggestion).
    #[default]
    Refuse,
    /// Answer anyway, with only the changes of the last 30 days (what an implementation
    /// that silently clamps the window would do): a client must notice by itself.
    Truncate,
}

/// Which changes a CDC answer over the 1,000-object cap keeps. The documentation does not
/// say, so a client must be right whatever the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CdcCapOrder {
    /// The oldest 1,000 (what peers have observed).
    #[default]
    OldestFirst,
    /// The newest 1,000.
    NewestFirst,
    /// The 1,000 with the lowest Ids, whatever their times.
    ById,
}

/// Everything the emulator needs to start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Seed of the generated data; the same seed gives the same objects.
    pub seed: u64,
    /// The company id (`realmId`) served under `/v3/company/{realm}`.
    pub realm_id: String,
    /// OAuth client id the token endpoint accepts.
    pub client_id: String,
    /// OAuth client secret the token endpoint accepts.
    pub client_secret: String,
    /// The refresh token valid at start.
    pub refresh_token: String,
    /// Objects to generate.
    pub counts: Counts,
    /// Generated objects' `LastUpdatedTime` spread over this many days before now (the
    /// newest is about a day old, inside the 30-day CDC window).
    pub history_days: i64,
    /// Lifetime of an access token (QuickBooks: 3600 s).
    pub access_token_ttl: Duration,
    /// Issue a new refresh token on every refresh and kill the old one. QuickBooks rotates
    /// about once a day; rotating every time is the strictest behaviour to test against.
    pub rotate_refresh_tokens: bool,
    /// Request limits.
    pub limits: Limits,
    /// The answer to a CDC `changedSince` beyond the 30-day horizon.
    pub cdc_old_since: CdcOldSince,
    /// Customers to create first, with exactly these ids and names (an MSP's clients, as
    /// the sandbox's roster lists them); `counts.customers` more follow, unmapped.
    pub roster: Vec<(u64, String)>,
    /// The instant generated data is relative to; `None` means the start time. A fixed
    /// anchor gives the same company, timestamps included, at every start.
    pub anchor: Option<chrono::DateTime<chrono::Utc>>,
    /// Added to every request's answer time (zero: none).
    pub latency: Duration,
    /// Port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Send signed webhooks for every change to this loopback receiver (`None`: none;
    /// `Emulator::set_webhook` sets it later, once the receiver's port is known).
    pub webhook: Option<WebhookConfig>,
    /// Change data on a timer (`None`: only when asked).
    pub mutate: Option<MutateConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: 42,
            realm_id: "9341452137165208".to_string(),
            client_id: "ABemulatorClientId0000000000000000000000000000".to_string(),
            client_secret: "emulator-client-secret-0000000000000000".to_string(),
            refresh_token: "AB11700000000emulatorInitialRefreshToken0000000".to_string(),
            counts: Counts::default(),
            history_days: 365,
            access_token_ttl: Duration::from_secs(3600),
            rotate_refresh_tokens: true,
            limits: Limits::off(),
            cdc_old_since: CdcOldSince::Refuse,
            roster: Vec::new(),
            anchor: None,
            latency: Duration::ZERO,
            port: 0,
            webhook: None,
            mutate: None,
        }
    }
}

/// What an injected fault does to a matching data request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP status and a `SystemFault` body (e.g. 500, 503).
    Status(u16),
    /// Wait this long before answering normally (to trip client timeouts).
    Slow(Duration),
    /// Answer 200 with a truncated, unparseable JSON body.
    MalformedJson,
    /// Answer as if throttled: the XML `ThrottleExceeded` body, no `Retry-After`.
    Throttle,
    /// A throttle with a `Retry-After: <secs>` header (QuickBooks does not send one today;
    /// clients should still honour it).
    ThrottleRetryAfter(u64),
    /// A code-3001 throttle fault as JSON with HTTP 403 (the older behaviour).
    ThrottleJson403,
    /// Answer normally, then update these objects of `entity` (stamped now), as an
    /// application editing data between two page requests of a client.
    EditAfterAnswer {
        /// The entity, e.g. `Invoice`.
        entity: String,
        /// Ids to update.
        ids: Vec<String>,
    },
}

/// A fault to inject into data requests (query, cdc, reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// Only requests whose decoded query string contains this text (e.g. `FROM Invoice`);
    /// `None` matches every data request.
    pub matching: Option<String>,
    /// Let this many matching requests through first.
    pub skip: u32,
    /// Then affect this many matching requests (`u32::MAX`: all of them).
    pub times: u32,
}

impl FaultSpec {
    /// A fault for the next `times` data requests.
    pub fn next(kind: FaultKind, times: u32) -> Self {
        FaultSpec {
            kind,
            matching: None,
            skip: 0,
            times,
        }
    }

    /// Restricts the fault to requests containing `text`.
    pub fn matching(mut self, text: impl Into<String>) -> Self {
        self.matching = Some(text.into());
        self
    }

    /// Lets `n` matching requests through before the fault starts.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }
}
