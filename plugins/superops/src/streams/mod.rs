//! Reading streams: the shared page machinery ([`Scan`], [`full_scan`]), the generic
//! full-refresh reader for list streams, and dispatch to tickets (incremental) and the
//! derived metric streams.
//!
//! **Deletions.** The API has no deletion feed; a deleted object is simply no longer
//! listed. So every full-refresh stream read without a narrowing window is a snapshot
//! ([`Coverage::Window`]): the host marks the rows it did not see `_deleted`. A snapshot is
//! completed only when the listing is provably whole ([`ScanOutcome::is_whole`]): every
//! page read, no limit hit, no error, and the list did not move under the offsets while
//! it was paged. Tickets have their own listing of ids (`reconcile`).

mod defs;
mod metrics;
mod reconcile;
mod tickets;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tributary_sdk::toolkit::{Limit, StreamRun};
use tributary_sdk::{Coverage, Emitter, Record, Snapshot, Window};

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::json::{normalize_ids, Page, RowView};
use crate::schema::Stream;
use crate::time;

pub use defs::{find, StreamDef, STREAMS};
pub use metrics::{METRIC_FIELDS, SLA_SUMMARY, TECHNICIAN_PRODUCTIVITY};
pub use tickets::TicketState;

use defs::Shape;

/// Everything a stream reader needs.
pub struct Ctx {
    /// The API client.
    pub client: Arc<Client>,
    /// Settings.
    pub config: Config,
    /// Window from the manifest.
    pub window: Window,
    /// Output.
    pub out: Emitter,
    /// Ticket facts, scanned once per read when metrics or client-filtered worklogs need them.
    facts: OnceCell<Arc<metrics::Facts>>,
}

impl Ctx {
    /// A context for one read.
    pub fn new(client: Arc<Client>, config: Config, window: Window, out: Emitter) -> Ctx {
        Ctx {
            client,
            config,
            window,
            out,
            facts: OnceCell::new(),
        }
    }

    fn clients(&self) -> Option<HashSet<&str>> {
        (!self.window.clients.is_empty())
            .then(|| self.window.clients.iter().map(String::as_str).collect())
    }

    fn in_window(&self, t: DateTime<Utc>) -> bool {
        self.window.start.is_none_or(|s| t >= s) && self.window.end.is_none_or(|e| t < e)
    }
}

/// One list query with fixed conditions, paged.
#[derive(Debug, Clone)]
pub struct Scan {
    stream: &'static str,
    query: Arc<str>,
    root: &'static str,
    list_key: &'static str,
    shape: Shape,
    module: Option<&'static str>,
    client_id: Option<String>,
    condition: Option<Value>,
    sort: Option<Value>,
    page_size: u32,
}

impl Scan {
    /// A scan of `def` selecting every field of a row.
    pub fn all(def: &'static StreamDef, page_size: u32) -> Scan {
        Scan::new(def, &crate::schema::selection(def.fields), page_size)
    }

    /// A scan of `def` selecting `selection`.
    pub fn new(def: &'static StreamDef, selection: &str, page_size: u32) -> Scan {
        let query = format!(
            "query {root}($input: {arg}) {{ {root}(input: $input) {{ {list} {{ {selection} }} listInfo {{ page pageSize hasMore totalCount }} }} }}",
            root = def.root,
            arg = def.arg_type,
            list = def.list_key,
        );
        Scan {
            stream: def.name,
            query: query.into(),
            root: def.root,
            list_key: def.list_key,
            shape: def.shape,
            module: None,
            client_id: None,
            condition: None,
            sort: None,
            page_size,
        }
    }

    fn with_condition(mut self, operands: Vec<Value>) -> Scan {
        self.condition = match operands.len() {
            0 => None,
            1 => operands.into_iter().next(),
            _ => Some(json!({"joinOperator": "AND", "operands": operands})),
        };
        self
    }

    fn with_sort(mut self, attribute: &str, descending: bool) -> Scan {
        self.sort = Some(
            json!([{"attribute": attribute, "order": if descending { "DESC" } else { "ASC" }}]),
        );
        self
    }

    fn variables(&self, page: u32, page_size: u32) -> Value {
        let mut li = json!({"page": page, "pageSize": page_size});
        if let Some(c) = &self.condition {
            li["condition"] = c.clone();
        }
        if let Some(s) = &self.sort {
            li["sort"] = s.clone();
        }
        let input = match self.shape {
            Shape::ListInfo => li,
            Shape::Sites => match &self.client_id {
                Some(id) => json!({"listInfo": li, "clientId": id}),
                None => json!({"listInfo": li}),
            },
            Shape::Worklogs => json!({"module": self.module.unwrap_or("TICKET"), "listInfo": li}),
        };
        json!({"input": input})
    }

    async fn fetch(&self, client: &Client, page: u32, page_size: u32) -> Result<Page> {
        let context = match self.module {
            Some(m) => format!("stream {} ({} {m}) page {page}", self.stream, self.root),
            None => format!("stream {} ({}) page {page}", self.stream, self.root),
        };
        client
            .list(
                &self.query,
                self.root,
                self.list_key,
                &self.variables(page, page_size),
                &context,
            )
            .await
    }
}

/// `{"joinOperator":"OR"}` of `client.accountId is <id>` for the window's clients.
fn client_condition(clients: &[String]) -> Option<Value> {
    let leaves: Vec<Value> = clients
        .iter()
        .map(|c| json!({"attribute": "client.accountId", "operator": "is", "value": c}))
        .collect();
    match leaves.len() {
        0 => None,
        1 => leaves.into_iter().next(),
        _ => Some(json!({"joinOperator": "OR", "operands": leaves})),
    }
}

/// The keys a listing has delivered, to notice one delivered twice (the order moved
/// under the offsets, so another row may have been skipped). Only a 64-bit hash of each
/// key is kept, about 10 bytes a key instead of the key itself: a million tickets cost
/// some 16 MB. Two keys sharing a hash (odds about 1 in 30 million at a million keys)
/// would only make a whole listing look unsound, never the reverse.
#[derive(Debug, Default)]
pub struct SeenKeys {
    hashes: HashSet<u64>,
    state: std::hash::RandomState,
}

impl SeenKeys {
    /// Records `key`; false if it was seen before.
    pub fn insert(&mut self, key: &str) -> bool {
        use std::hash::BuildHasher;
        self.hashes.insert(self.state.hash_one(key))
    }

    /// Keys recorded.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// How a [`full_scan`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The scan reached the last page (`on_page` did not stop it).
    pub finished: bool,
    /// Rows delivered, over all pages.
    pub rows: u64,
    /// `totalCount` of page 1, when the API sent one.
    pub total: Option<u64>,
    /// Every page reported page 1's `totalCount`.
    pub steady: bool,
}

impl ScanOutcome {
    /// Whether the pages add up to one listing of the whole list: the scan finished, the
    /// count did not move while it was paged, and the rows delivered are that count.
    ///
    /// Offset paging is exact only over a list that holds still: an object deleted (or
    /// added in front) between two page requests shifts the later pages by one, and a
    /// live row is skipped, which a snapshot would then mark deleted. A moving count
    /// reveals that; so does an unstable sort order (a row served twice means another was
    /// skipped), which callers detect by key. What this cannot see is a deletion and a
    /// creation that cancel out between the same two requests; such a row is marked and
    /// comes back live on the next run.
    pub fn is_whole(&self) -> bool {
        self.finished && self.steady && self.total.is_none_or(|t| t == self.rows)
    }
}

/// Reads every page of `scan`, fetching up to `config.concurrency` pages at once and
/// handing them to `on_page` in page order. `on_page` returns `false` to stop early.
///
/// Page 1 is fetched alone to learn `totalCount`; the planned pages follow concurrently,
/// and if the last planned page still says `hasMore: true` (rows were added) the scan
/// continues one page at a time. It stops at the first page that does not say
/// `hasMore: true` or is empty.
pub async fn full_scan(
    ctx: &Ctx,
    scan: &Scan,
    mut on_page: impl FnMut(Page) -> Result<bool>,
) -> Result<ScanOutcome> {
    let size = scan.page_size;
    ctx.out.check_cancelled()?;
    let first = scan.fetch(&ctx.client, 1, size).await?;
    let (more, total) = (first.has_more, first.total_count);
    let mut outcome = ScanOutcome {
        finished: false,
        rows: first.items.len() as u64,
        total,
        steady: true,
    };
    if !on_page(first)? {
        return Ok(outcome);
    }
    if !more {
        outcome.finished = true;
        return Ok(outcome);
    }
    let mut planned = total.map_or(2, |t| t.div_ceil(u64::from(size)).max(2)) as u32;
    let mut next = 2u32;
    let mut inflight: VecDeque<tokio::task::JoinHandle<Result<Page>>> = VecDeque::new();
    let concurrency = ctx.config.concurrency.max(1) as usize;
    let result = loop {
        while inflight.len() < concurrency && next <= planned {
            let (client, scan) = (ctx.client.clone(), scan.clone());
            let page = next;
            inflight.push_back(tokio::spawn(async move {
                scan.fetch(&client, page, size).await
            }));
            next += 1;
        }
        let Some(handle) = inflight.pop_front() else {
            // Not reached (a page saying `hasMore` always plans the next); conservatively
            // an unfinished scan.
            break Ok(outcome);
        };
        let page = match handle.await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => break Err(e),
            Err(e) => break Err(Error::Other(format!("page task failed: {e}"))),
        };
        if let Err(e) = ctx.out.check_cancelled() {
            break Err(e.into());
        }
        let (more, empty) = (page.has_more, page.items.is_empty());
        outcome.rows += page.items.len() as u64;
        outcome.steady &= page.total_count == total;
        match on_page(page) {
            Ok(true) => {}
            Ok(false) => break Ok(outcome),
            Err(e) => break Err(e),
        }
        if !more || empty {
            outcome.finished = true;
            break Ok(outcome);
        }
        if inflight.is_empty() && next > planned {
            planned = next;
        }
    };
    for h in inflight {
        h.abort();
    }
    result
}

/// Parses one raw row: normalised text plus the fields the connector reads.
pub fn parse_row(
    raw: &RawValue,
    stream: &str,
    page: u32,
    index: usize,
) -> Result<(String, RowView)> {
    let text = normalize_ids(raw.get()).into_owned();
    let view: RowView = serde_json::from_str(&text).map_err(|e| Error::Malformed {
        context: format!("stream {stream} page {page} row {index}"),
        detail: e.to_string(),
    })?;
    Ok((text, view))
}

/// Reads one stream from its saved state.
pub async fn read_stream(ctx: &Ctx, run: StreamRun<Stream>) -> Result<()> {
    match run.definition {
        Stream::Tickets(_) => {
            let state = run
                .state_as::<TicketState>()
                .map_err(|e| Error::Config(e.message))?;
            tickets::read(ctx, state, &run.limit).await
        }
        Stream::Metric(name) => metrics::read(ctx, name, &run.limit).await,
        Stream::List(def) => read_list(ctx, def, &run.limit).await,
    }
}

/// Opens a [`Coverage::Window`] snapshot of `stream`, unless the window narrows the read
/// (a client filter or dates): then absent rows prove nothing, and none is opened.
fn open_snapshot(ctx: &Ctx, stream: &str) -> Result<Option<Snapshot>> {
    if ctx.window.narrows() {
        return Ok(None);
    }
    Ok(Some(ctx.out.snapshot(stream, Coverage::Window)?))
}

/// Completes `snapshot` when the listing was `whole`, otherwise gives it up (nothing is
/// concluded) and logs `why_not`. Returns whether it was completed.
fn conclude(snapshot: Option<Snapshot>, whole: bool, why_not: &str) -> Result<bool> {
    let Some(snap) = snapshot else {
        return Ok(false);
    };
    if whole {
        snap.complete()?;
        Ok(true)
    } else {
        tracing::warn!(
            "stream {}: {why_not}; no deletions are concluded this run",
            snap.stream()
        );
        snap.abandon();
        Ok(false)
    }
}

/// A full-refresh list stream: every page, deduplicated by primary key, filtered by the
/// window's clients and dates, at most `window.limit` records. Read without a narrowing
/// window it is a snapshot, spanning both modules for worklogs.
async fn read_list(ctx: &Ctx, def: &'static StreamDef, limit: &Limit) -> Result<()> {
    let clients = ctx.clients();
    // Worklogs have no client; with a client filter they are kept when logged on one of
    // that client's tickets (PROJECT entries cannot be attributed and are left out).
    let facts = match (&clients, def.name) {
        (Some(_), "worklog_entries") => Some(metrics::ticket_facts(ctx).await?),
        _ => None,
    };
    let ticket_ids = facts.as_ref().and_then(|f| f.client_ticket_ids.as_ref());
    let modules: &[Option<&'static str>] = if def.shape == Shape::Worklogs {
        &[Some("TICKET"), Some("PROJECT")]
    } else {
        &[None]
    };
    // Opened before the first page, so that everything emitted below counts as seen;
    // an error or a cancel drops it, which abandons it.
    let snapshot = open_snapshot(ctx, def.name)?;
    let mut seen = SeenKeys::default();
    let mut whole = true;
    for module in modules {
        if limit.reached() {
            whole = false;
            break;
        }
        let mut scan = Scan::all(def, ctx.config.page_size);
        scan.module = *module;
        if let Some(sort) = def.sort {
            scan = scan.with_sort(sort, false);
        }
        // The one documented server-side client filter: the sites query's clientId.
        if def.shape == Shape::Sites && ctx.window.clients.len() == 1 {
            scan.client_id = ctx.window.clients.first().cloned();
        }
        let mut page_no = 0u32;
        let mut repeated = false;
        let outcome = full_scan(ctx, &scan, |page| {
            page_no += 1;
            let mut batch = Vec::with_capacity(page.items.len());
            for (i, raw) in page.items.iter().enumerate() {
                let (text, view) = parse_row(raw, def.name, page_no, i)?;
                let Some(pk) = (def.pk)(&view) else {
                    tracing::warn!(
                        "stream {} page {page_no} row {i}: no primary key; row skipped",
                        def.name
                    );
                    continue;
                };
                if let (Some(clients), Some((_, client_of))) = (&clients, def.client) {
                    if !client_of(&view).is_some_and(|c| clients.contains(c.as_str())) {
                        continue;
                    }
                }
                if let Some(ids) = ticket_ids {
                    if !defs::worklog_ticket(&view).is_some_and(|t| ids.contains(&t)) {
                        continue;
                    }
                }
                if let Some((_, date_of)) = def.date {
                    if let Some(t) = date_of(&view).and_then(time::parse) {
                        if !ctx.in_window(t) {
                            continue;
                        }
                    }
                }
                if !seen.insert(&pk) {
                    // Served twice: the order moved under the offsets, so another row
                    // may have been skipped.
                    repeated = true;
                    continue;
                }
                batch.push(Record::from_json(pk, text));
                limit.admit();
                if limit.reached() {
                    break;
                }
            }
            ctx.out.records(def.name, batch)?;
            Ok(!limit.reached())
        })
        .await?;
        whole &= outcome.is_whole() && !repeated;
    }
    conclude(
        snapshot,
        whole,
        "the listing was cut by the record limit or changed while it was paged",
    )?;
    Ok(())
}
