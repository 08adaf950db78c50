//! The example API of `tributary new-connector`'s template: `GET /items?updated_since=S&page=N`
//! with a bearer token answers `{"items": [...], "next_page": N|null}`, items in
//! `(updated_at, id)` order, `updated_since` inclusive, a few per page. Used to prove that a
//! generated connector builds and runs through the host.
//!
//! [`ItemsApi::update_after_next_page`] changes an item right after a page is served, as a
//! live API may between two requests of one read: a connector that pages by offset under
//! a fixed `updated_since` then skips an item; one that pages by instant does not.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Items per page.
pub const PAGE: usize = 3;

/// One item: (id, updated_at).
pub type Item = (u64, String);

struct Shared {
    token: String,
    items: Mutex<Vec<Item>>,
    /// Applied once, after the next page is served.
    after_next_page: Mutex<Option<Item>>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    updated_since: String,
    page: Option<usize>,
}

async fn items_index(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Json<Value>, StatusCode> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(shared.token.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let page = p.page.unwrap_or(1).max(1);
    let mut items = shared.items.lock().unwrap_or_else(|e| e.into_inner());
    let newer: Vec<&Item> = items
        .iter()
        .filter(|(_, at)| *at >= p.updated_since)
        .collect();
    let chunk: Vec<Value> = newer
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(|(id, at)| json!({"id": id, "updated_at": at, "name": format!("item {id}")}))
        .collect();
    let next = (page * PAGE < newer.len()).then_some(page + 1);
    let pending = shared
        .after_next_page
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(item) = pending {
        upsert(&mut items, item);
    }
    Ok(Json(json!({"items": chunk, "next_page": next})))
}

/// Replaces (or adds) the item with `item`'s id, keeping the API's order.
fn upsert(items: &mut Vec<Item>, item: Item) {
    items.retain(|(id, _)| *id != item.0);
    items.push(item);
    sort(items);
}

/// The API's order: by `updated_at`, ties by id (so paging within one instant is stable).
fn sort(items: &mut [Item]) {
    items.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
}

/// The example API, served on loopback until dropped.
pub struct ItemsApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl ItemsApi {
    /// Serves `items` (kept in `updated_at` order) to holders of `token`.
    pub fn start(token: &str, items: Vec<Item>) -> anyhow::Result<ItemsApi> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: token.to_string(),
            items: Mutex::new(Vec::new()),
            after_next_page: Mutex::new(None),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/items", get(items_index))
            .with_state(shared.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("items-api".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        r = axum::serve(listener, app) => if let Err(e) = r { tracing::error!("items api: {e}") },
                        _ = rx => {}
                    }
                });
            })?;
        let api = ItemsApi {
            addr,
            shared,
            _shutdown: tx,
        };
        api.set(items);
        Ok(api)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the items (sorted by `updated_at` and id, as the API promises).
    pub fn set(&self, mut items: Vec<Item>) {
        sort(&mut items);
        *self.shared.items.lock().unwrap_or_else(|e| e.into_inner()) = items;
    }

    /// Replaces (or adds) the item with `item`'s id right after the next page is served:
    /// an update that lands between two requests of one read.
    pub fn update_after_next_page(&self, item: Item) {
        *self
            .shared
            .after_next_page
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(item);
    }

    /// The items as they are now, in the API's order.
    pub fn items(&self) -> Vec<Item> {
        self.shared
            .items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
