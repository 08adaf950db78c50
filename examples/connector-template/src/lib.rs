//! ExampleHttp: the `items` of a JSON API, page by page, incrementally by `updated_at`.
use serde::Deserialize;
use serde_json::{json, Value};
use tributary_sdk::toolkit::http::{Api, Secret};
use tributary_sdk::toolkit::Watermark;
use tributary_sdk::{parse_config, Catalog, Connector, ConnectorError, ConnectorInfo};
use tributary_sdk::{Emitter, ReadRequest, Record, StreamDescriptor};

#[derive(Default)]
pub struct ExampleHttp;

/// `[sources.<name>.config]`; `spec` is derived from it (docs, defaults, `"secret"`).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The API's base URL.
    base_url: String,
    /// Bearer token (never logged).
    api_token: Secret,
}

/// The API of a config. Requests get a budget, retries and error classes from the SDK.
fn api(config: Value) -> Result<Api, ConnectorError> {
    let config: Config = parse_config(config)?;
    Api::bearer("example-http", &config.base_url, &config.api_token)
}

impl Connector for ExampleHttp {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo::new("example-http", env!("CARGO_PKG_VERSION"), "JSON items")
    }
    fn spec(&self) -> Value {
        tributary_sdk::config_spec::<Config>()
    }
    async fn check(&self, config: Value, _out: Emitter) -> Result<(), ConnectorError> {
        api(config)?
            .get::<Value>("items", &[("page", "1")])
            .await
            .map(|_| ())
    }
    async fn discover(&self, _config: Value, _out: Emitter) -> Result<Catalog, ConnectorError> {
        let schema = json!({"type": "object", "required": ["id", "updated_at"],
                            "properties": {"id": {}, "updated_at": {"type": "string"}}});
        let items = StreamDescriptor::incremental("items", schema, &["id"], "updated_at");
        Ok(vec![items].into())
    }
    async fn read(&self, request: ReadRequest, out: Emitter) -> Result<(), ConnectorError> {
        let api = api(request.config.clone())?;
        // Keyset paging, so an item updated mid-read cannot shift others past a page: ask
        // since the newest instant sent (`admit` drops repeats); `n` only walks ties > a page.
        let mut mark: Watermark = request.state_of("items")?.unwrap_or_default();
        let (mut since, mut n, mut more) = (request.window.since(&mark.at), 1, true);
        let mut left = request.window.limit.unwrap_or(u64::MAX);
        out.stream_started("items");
        while more && left > 0 {
            out.check_cancelled()?;
            let query = [("updated_since", since.as_str()), ("page", &n.to_string())];
            // {"items": [...], "next_page": n | null}: by `updated_at`, since inclusive.
            let got: Value = api.get("items", &query).await?;
            let mut batch = Vec::new();
            for item in got["items"].as_array().into_iter().flatten() {
                let at = item["updated_at"].as_str().unwrap_or_default().to_string();
                let id = item["id"].to_string().trim_matches('"').to_string();
                if (batch.len() as u64) < left && mark.admit(&at, &id) {
                    batch.push(Record::from_json(id, item.to_string()).with_cursor(at));
                }
            }
            left -= batch.len() as u64;
            out.records("items", batch)?;
            out.checkpoint("items", &mark)?;
            more = !got["next_page"].is_null();
            n = if mark.at == since { n + 1 } else { 1 };
            since = mark.at.clone();
        }
        out.stream_complete("items");
        Ok(())
    }
}

tributary_sdk::export_connector!(ExampleHttp);
