//! The simplest HTTP source: a JSON REST API behind a bearer token. [`Api`] is the
//! [`Requester`] with moderate default limits and retries and the [`REST`] table; a
//! connector that needs more (OAuth, fault codes in bodies, learned rates) builds its
//! own `Requester` and `Table`.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{
    client, Action, ClientSettings, Code, Failure, Requester, RetryPolicy, Rule, Secret,
    StaticToken, Status, Table,
};
use crate::toolkit::{Backoff, Budget, Limits};
use crate::{ConnectorError, ErrorKind};

/// The usual REST classification: 2xx accepted; 429 waits (for `Retry-After`); 408
/// and 5xx retry; 401 is a refused credential; other 4xx are the request's (or the
/// config's) fault.
pub const REST: Table = Table {
    rules: &[
        Rule::new(Status::Range(200, 299), Code::Any, Action::Accept),
        Rule::new(Status::Is(429), Code::Any, Action::Wait),
        Rule::new(Status::Is(408), Code::Any, Action::Retry),
        Rule::new(Status::Range(500, 599), Code::Any, Action::Retry),
        Rule::new(Status::Is(401), Code::Any, Action::Fail(ErrorKind::Auth)),
        Rule::new(
            Status::Range(400, 499),
            Code::Any,
            Action::Fail(ErrorKind::Config),
        ),
    ],
    otherwise: Action::Fail(ErrorKind::System),
};

/// A JSON REST API at a base URL, authorized by a bearer token.
#[derive(Debug)]
pub struct Api {
    service: &'static str,
    base: String,
    requester: Requester<StaticToken>,
}

impl Api {
    /// An API for `service` (its name in logs and messages) at `base_url`: at most 10
    /// requests a second and 4 in flight per token, 30 s per request, 5 attempts.
    pub fn bearer(
        service: &'static str,
        base_url: &str,
        token: &Secret,
    ) -> Result<Api, ConnectorError> {
        let http = client(&ClientSettings {
            user_agent: format!("tributary-{service}"),
            timeout: Duration::from_secs(30),
            connect_timeout: Some(Duration::from_secs(10)),
        })
        .map_err(ConnectorError::system)?;
        let limits = Limits {
            per_window: 0,
            window: Duration::from_secs(60),
            per_second: 10,
            concurrency: 4,
            margin: Limits::default_margin(Duration::from_secs(60)),
            learn: true,
        };
        // One budget per API and token (its fingerprint, never the token itself).
        let key = format!("{base_url}|{}", fingerprint(token.expose()));
        let policy = RetryPolicy {
            backoff: Backoff::default(),
            max_throttle_waits: 5,
            throttle_wait: Duration::from_secs(5),
            throttle_wait_doubles: true,
        };
        let tokens = StaticToken(token.clone());
        Ok(Api {
            service,
            base: base_url.trim_end_matches('/').to_string(),
            requester: Requester::new(service, http, Budget::shared(&key, limits), tokens, policy),
        })
    }

    /// `GET {base}/{path}?{query}`, the body read as `T`. Errors are classified by
    /// [`REST`] and name the path, never the token.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ConnectorError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let what = format!("{} GET /{}", self.service, path.trim_start_matches('/'));
        let build =
            |http: &reqwest::Client, token: &str| http.get(&url).bearer_auth(token).query(query);
        let classify = |reply: super::Reply| match REST.decide(reply.status, &[]) {
            Action::Accept => serde_json::from_slice::<T>(&reply.body).map_err(|e| {
                let message = format!("{what}: the body is not the expected JSON: {e}");
                (Action::Fail(ErrorKind::Data), ConnectorError::data(message))
            }),
            action => {
                let message = format!("{what}: answered HTTP {}", reply.status);
                Err((action, ConnectorError::new(action.kind(), message)))
            }
        };
        match self.requester.send(&what, build, classify).await {
            Ok(v) => Ok(v),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::GaveUp {
                error, attempts, ..
            }) => Err(ConnectorError::new(
                error.kind,
                format!("{} (gave up after {attempts} attempts)", error.message),
            )),
            Err(Failure::Transport { message, attempts }) => Err(ConnectorError::transient(
                format!("{what}: {message} ({attempts} attempts)"),
            )),
            Err(Failure::Token(never)) => match never {},
        }
    }
}

/// A short, non-reversible fingerprint of a token, to key budgets without holding it.
fn fingerprint(token: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}
