//! The GraphQL client: headers, [`TABLE`] (the classification of every HTTP status and
//! GraphQL error code) and the connector's error for each failure. Budget, throttle
//! waits and retries are the SDK's request loop ([`Requester`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tributary_sdk::toolkit::http::{
    self, Action, ClientSettings, Code, Failure, Reply, Requester, RetryPolicy, Rule, StaticToken,
    Stats, Status, Table,
};
use tributary_sdk::toolkit::{Backoff, Budget, Limits};
use tributary_sdk::ErrorKind;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::json::{self, Body, GqlError, Page};

/// THE classification table: HTTP status and GraphQL `clientError` codes to an action.
/// `forbidden` and `subscription_*` fail only their stream (see [`Error::is_fatal`]).
pub const TABLE: Table = Table {
    rules: &[
        Rule::new(Status::Is(200), Code::Absent, Action::Accept),
        Rule::new(Status::Is(200), Code::Is(RATE_LIMITED), Action::Wait),
        Rule::new(
            Status::Is(200),
            Code::Is("forbidden"),
            Action::Fail(ErrorKind::Config),
        ),
        Rule::new(
            Status::Is(200),
            Code::Prefix("subscription_"),
            Action::Fail(ErrorKind::Config),
        ),
        Rule::new(Status::Is(200), Code::Any, Action::Fail(ErrorKind::Data)),
        Rule::new(Status::Is(400), Code::Any, Action::Fail(ErrorKind::Config)),
        Rule::new(Status::Is(401), Code::Any, Action::Fail(ErrorKind::Auth)),
        Rule::new(Status::Is(403), Code::Any, Action::Fail(ErrorKind::Config)),
        Rule::new(Status::Is(429), Code::Any, Action::Wait),
        Rule::new(Status::Is(408), Code::Any, Action::Retry),
        Rule::new(Status::Range(500, 599), Code::Any, Action::Retry),
    ],
    otherwise: Action::Fail(ErrorKind::System),
};

const RATE_LIMITED: &str = "rate_limit_exceeded";

/// A SuperOps GraphQL client; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Client {
    requester: Requester<StaticToken>,
    url: String,
    subdomain: String,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: &Config) -> Result<Arc<Client>> {
        let http = http::client(&ClientSettings {
            user_agent: concat!("tributary-superops/", env!("CARGO_PKG_VERSION")).to_string(),
            timeout: config.timeout(),
            connect_timeout: None,
        })
        .map_err(Error::Other)?;
        let window = Duration::from_secs_f64(config.rate_window_seconds);
        let limits = Limits {
            per_window: config.requests_per_minute,
            window,
            per_second: 0,
            concurrency: 0,
            // The server counts arrivals, which latency can bunch closer together than
            // our departures: 1/60 of the window (one second of the documented minute)
            // keeps a full-speed run strictly under its count.
            margin: (window / 60).max(Duration::from_millis(50)),
            // Each throttled request waits for itself, as the API documents.
            learn: false,
        };
        let budget = Budget::shared(&format!("{}|{}", config.api_url, config.subdomain), limits);
        let policy = RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(30),
                max_attempts: config.max_retries + 1,
            },
            max_throttle_waits: config.max_retries,
            throttle_wait: Duration::from_secs_f64(config.rate_limit_wait_seconds),
            throttle_wait_doubles: true,
        };
        let token = StaticToken(config.api_token.clone());
        Ok(Arc::new(Client {
            requester: Requester::new("superops", http, budget, token, policy),
            url: config.api_url.clone(),
            subdomain: config.subdomain.clone(),
        }))
    }

    /// Counters, for the end-of-read log line.
    pub fn stats(&self) -> &Stats {
        &self.requester.stats
    }

    /// Runs list query `query` (whose root field is `root`) with `variables`, retrying
    /// what may pass, and returns the page. `context` names stream and page for messages.
    pub async fn list(
        &self,
        query: &str,
        root: &str,
        list_key: &str,
        variables: &Value,
        context: &str,
    ) -> Result<Page> {
        let body = json!({"query": query, "variables": variables}).to_string();
        let build = |http: &reqwest::Client, token: &str| {
            http.post(&self.url)
                .bearer_auth(token)
                .header("CustomerSubDomain", &self.subdomain)
                .header("Content-Type", "application/json")
                .body(body.clone())
        };
        let classify = |reply: Reply| self.classify(reply, root, list_key, context);
        match self.requester.send(context, build, classify).await {
            Ok(page) => Ok(page),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::GaveUp {
                action: Action::Wait,
                ..
            }) => Err(Error::RateLimited {
                operation: context.to_string(),
                retry_after: None,
            }),
            Err(Failure::GaveUp { error, .. }) => Err(error),
            Err(Failure::Transport { message, .. }) => Err(Error::Transient(format!(
                "{context}: request to superops failed: {message}"
            ))),
            Err(Failure::Token(never)) => match never {},
        }
    }

    /// The page of a reply, or the table's action and this connector's error for it.
    fn classify(
        &self,
        reply: Reply,
        root: &str,
        list_key: &str,
        context: &str,
    ) -> std::result::Result<Page, (Action, Error)> {
        let status = reply.status;
        let retry_after = http::retry_after(&reply.headers).map(|d| d.as_secs_f64());
        let text = reply.into_text();
        if status != 200 {
            let action = TABLE.decide(status, &[]);
            let error = match status {
                400 if text.trim().is_empty() => Error::BadSubdomain {
                    subdomain: self.subdomain.clone(),
                },
                400 => Error::BadRequest(snippet(&text)),
                401 => Error::Unauthorized,
                403 => Error::Forbidden {
                    context: context.to_string(),
                },
                _ if action == Action::Wait => Error::RateLimited {
                    operation: context.to_string(),
                    retry_after,
                },
                _ if action == Action::Retry => {
                    Error::Transient(format!("{context}: superops answered http {status}"))
                }
                other => Error::Other(format!(
                    "{context}: unexpected http {other} from superops: {}",
                    snippet(&text)
                )),
            };
            return Err((action, error));
        }
        let data_error = |e: Error| (Action::Fail(e.kind()), e);
        match json::parse_body(&text, root, context).map_err(data_error)? {
            Body::Data(result) => json::parse_list(result, list_key, context).map_err(data_error),
            Body::Errors { errors, partial } => {
                let codes: Vec<&str> = errors.iter().flat_map(|e| e.codes()).collect();
                let action = TABLE.decide(status, &codes);
                Err((
                    action,
                    graphql_error(action, &codes, &errors, partial, retry_after, context),
                ))
            }
        }
    }
}

/// The error for GraphQL `errors`, by the action [`TABLE`] gave them.
fn graphql_error(
    action: Action,
    codes: &[&str],
    errors: &[GqlError],
    partial: bool,
    retry_after: Option<f64>,
    context: &str,
) -> Error {
    if action == Action::Wait {
        return Error::RateLimited {
            operation: context.to_string(),
            retry_after,
        };
    }
    if codes.contains(&"forbidden") {
        return Error::Forbidden {
            context: context.to_string(),
        };
    }
    if let Some(code) = codes.iter().find(|c| c.starts_with("subscription_")) {
        return Error::Subscription {
            code: code.to_string(),
            context: context.to_string(),
        };
    }
    let mut detail: Vec<String> = errors
        .iter()
        .map(|e| {
            let codes: Vec<&str> = e.codes().collect();
            let msg = e.message.as_deref().unwrap_or("(no message)");
            if codes.is_empty() {
                msg.to_string()
            } else {
                format!("{} ({msg})", codes.join(","))
            }
        })
        .collect();
    if partial {
        detail.insert(0, "partial data with errors, page rejected".to_string());
    }
    Error::GraphQl {
        operation: context.to_string(),
        detail: detail.join("; "),
    }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    if t.len() > 300 {
        let mut end = 300;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &t[..end])
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_retries_throttles_and_server_trouble_and_fails_the_rest() {
        assert_eq!(TABLE.decide(200, &[]), Action::Accept);
        assert_eq!(TABLE.decide(200, &["rate_limit_exceeded"]), Action::Wait);
        assert_eq!(TABLE.decide(429, &[]), Action::Wait);
        assert_eq!(TABLE.decide(503, &[]), Action::Retry);
        assert_eq!(TABLE.decide(408, &[]), Action::Retry);
        assert_eq!(TABLE.decide(401, &[]), Action::Fail(ErrorKind::Auth));
        assert_eq!(TABLE.decide(400, &[]), Action::Fail(ErrorKind::Config));
        assert_eq!(
            TABLE.decide(200, &["subscription_paused"]),
            Action::Fail(ErrorKind::Config)
        );
        assert_eq!(
            TABLE.decide(200, &["invalid_input"]),
            Action::Fail(ErrorKind::Data)
        );
        assert_eq!(TABLE.decide(302, &[]), Action::Fail(ErrorKind::System));
    }
}
