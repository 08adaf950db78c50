//! ExampleHttp: the `items` of a JSON API, page by page, incrementally by `updated_at`.
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tributary_sdk::toolkit::http::{get_json, Api};
use tributary_sdk::{parse_config, Catalog, Connector, ConnectorError, ConnectorInfo};
use tributary_sdk::{Emitter, ReadRequest, Record, StreamDescriptor};

#[derive(Default)]
pub struct ExampleHttp;

/// `[sources.<name>.config]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API's base URL.
    pub base_url: String,
    /// Bearer token (secret: never logged).
    pub api_token: String,
}

/// One page of `GET /items`: items in `updated_at` order, `updated_since` inclusive.
#[derive(Deserialize)]
struct Page {
    items: Vec<Value>,
    next_page: Option<u32>,
}

/// Where a read resumes: the newest `updated_at` sent, and the ids sent at that instant
/// (asking again from it repeats them; more may share it), so nothing is lost or doubled.
#[derive(Default, Serialize, Deserialize)]
struct Position {
    at: String,
    ids: Vec<String>,
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
        json!({"type": "object", "required": ["base_url", "api_token"],
               "properties": {"base_url": {"type": "string"},
                              "api_token": {"type": "string", "secret": true}}})
    }
    async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        let config: Config = parse_config(config)?;
        let api = Api::bearer("example-http", &config.base_url, &config.api_token)?;
        get_json::<Page>(&api, "items", &[("page", "1")])
            .await
            .map(|_| ())
    }
    async fn discover(&self, _config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        let schema = json!({"type": "object", "required": ["id", "updated_at"],
                            "properties": {"id": {}, "updated_at": {"type": "string"}}});
        let items = StreamDescriptor::incremental("items", schema, &["id"], "updated_at");
        Ok(Catalog {
            streams: vec![items],
        })
    }
    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let config: Config = parse_config(request.config.clone())?;
        let api = Api::bearer("example-http", &config.base_url, &config.api_token)?;
        let mut pos: Position = request.state_of("items")?.unwrap_or_default();
        let since = pos.at.clone();
        let (mut page, mut left) = (Some(1), request.window.limit.unwrap_or(u64::MAX));
        out.stream_started("items");
        while let (Some(n), true) = (page, left > 0) {
            out.check_cancelled()?;
            let query = [("updated_since", since.as_str()), ("page", &n.to_string())];
            let got: Page = get_json(&api, "items", &query).await?;
            let mut batch = Vec::new();
            for item in got
                .items
                .into_iter()
                .take(usize::try_from(left).unwrap_or(usize::MAX))
            {
                let at = item["updated_at"].as_str().unwrap_or_default().to_string();
                let id = item["id"].to_string().trim_matches('"').to_string();
                if at == pos.at && pos.ids.contains(&id) {
                    continue; // sent by the read that saved this position
                }
                if at != pos.at {
                    pos = Position {
                        at: at.clone(),
                        ids: Vec::new(),
                    };
                }
                pos.ids.push(id.clone());
                batch.push(Record::from_json(id, item.to_string()).with_cursor(at));
            }
            left -= batch.len() as u64;
            out.records("items", batch)?;
            out.checkpoint("items", &pos)?;
            page = got.next_page;
        }
        out.stream_complete("items");
        Ok(())
    }
}

tributary_sdk::export_connector!(ExampleHttp);
