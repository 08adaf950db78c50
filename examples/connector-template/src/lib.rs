//! ExampleHttp: the `items` of a JSON API, page by page, incrementally by `updated_at`.
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use tributary_sdk::{
    parse_config, Catalog, Connector, ConnectorError, ConnectorInfo, Emitter, ReadRequest, Record,
    StreamDescriptor, SyncMode,
};

#[derive(Default)]
pub struct ExampleHttp;

/// `[sources.<name>.config]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API's base URL.
    pub base_url: String,
    /// Bearer token (a secret: never logged).
    pub api_token: String,
}

/// One page of the API's answer.
#[derive(Deserialize)]
struct Page {
    items: Vec<Box<RawValue>>,
    next_page: Option<u32>,
}

/// The fields every item has: its key and its cursor.
#[derive(Deserialize)]
struct Item {
    id: Value,
    updated_at: String,
}

impl ExampleHttp {
    /// GET one page; the status decides the error class (retries: `toolkit::retry`).
    async fn page(config: &Config, since: &str, page: u32) -> Result<Page, ConnectorError> {
        let url = format!("{}/items", config.base_url.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(&config.api_token)
            .query(&[("updated_since", since), ("page", &page.to_string())])
            .send()
            .await
            .map_err(|e| ConnectorError::transient(e.without_url().to_string()))?;
        match response.status().as_u16() {
            200 => response
                .json()
                .await
                .map_err(|e| ConnectorError::data(e.without_url().to_string())),
            401 | 403 => Err(ConnectorError::auth("the API refused the token")),
            429 => Err(ConnectorError::rate_limited("the API is throttling")),
            s => Err(ConnectorError::transient(format!("the API answered {s}"))),
        }
    }
}

impl Connector for ExampleHttp {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new(
            "example-http",
            env!("CARGO_PKG_VERSION"),
            "Items of a JSON API",
        )
    }
    fn spec(&self) -> Value {
        json!({"type": "object", "required": ["base_url", "api_token"], "additionalProperties": false,
               "properties": {"base_url": {"type": "string", "format": "uri"},
                              "api_token": {"type": "string", "secret": true}}})
    }
    async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        Self::page(&parse_config(config)?, "", 1).await.map(|_| ())
    }
    async fn discover(&self, _config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        let schema = json!({"type": "object", "required": ["id", "updated_at"],
                            "properties": {"id": {}, "updated_at": {"type": "string"}}});
        Ok(Catalog {
            streams: vec![StreamDescriptor {
                name: "items".into(),
                json_schema: schema,
                primary_key: vec!["id".into()],
                cursor_field: Some("updated_at".into()),
                sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
            }],
        })
    }
    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let config: Config = parse_config(request.config.clone())?;
        // Pages are of one query: its start stays put while the checkpoint moves on.
        let start = request.state_of::<String>("items")?.unwrap_or_default();
        let mut since = start.clone();
        let (mut page, mut left) = (Some(1), request.window.limit.unwrap_or(u64::MAX));
        out.stream_started("items");
        while let (Some(n), true) = (page, left > 0) {
            out.check_cancelled()?;
            let got = Self::page(&config, &start, n).await?;
            let mut batch = Vec::new();
            for raw in got
                .items
                .into_iter()
                .take(left.try_into().unwrap_or(usize::MAX))
            {
                let item: Item = serde_json::from_str(raw.get())
                    .map_err(|e| ConnectorError::data(e.to_string()))?;
                since = item.updated_at.clone();
                batch.push(
                    Record::from_json(item.id.to_string().trim_matches('"'), raw.get().to_string())
                        .with_cursor(item.updated_at),
                );
            }
            left -= batch.len() as u64;
            out.records("items", batch)?;
            out.checkpoint("items", &since)?; // items come in `updated_at` order
            page = got.next_page;
        }
        out.stream_complete("items");
        Ok(())
    }
}

tributary_sdk::export_connector!(ExampleHttp);
