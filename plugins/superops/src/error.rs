//! The connector's errors and, in [`Error::kind`], the one table that maps each to an
//! [`ErrorKind`] (and so decides what is retried).

use tributary_sdk::{ConnectorError, ErrorKind};

/// Everything that can go wrong talking to SuperOps. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings in the manifest.
    #[error("{0}")]
    Config(String),
    /// HTTP 400 with an empty body: the ingress rejected the `CustomerSubDomain` header.
    #[error("superops answered http 400 with an empty body: the CustomerSubDomain header is missing or invalid; check `subdomain` ({subdomain:?}) against Settings → MSP Information (it must be the bare subdomain, no spaces or domain)")]
    BadSubdomain {
        /// The subdomain that was sent (not a secret).
        subdomain: String,
    },
    /// HTTP 400 with a body.
    #[error("superops rejected the request (http 400): {0}")]
    BadRequest(String),
    /// HTTP 401: the token is wrong, revoked or regenerated.
    #[error("superops rejected the api token (http 401): it is invalid, deleted or was regenerated; create a new one under Settings → My Profile → API token and update api_token")]
    Unauthorized,
    /// `forbidden` (or HTTP 403).
    #[error("superops denied access (forbidden) to {context}: the api token's user lacks the permission; grant it to that user's role or use another user's token")]
    Forbidden {
        /// Stream, query and page.
        context: String,
    },
    /// `subscription_trial_expired`, `subscription_paused`, `subscription_cancelled`.
    #[error("the superops subscription is not active ({code}) for {context}: the API is unavailable until the subscription is renewed or resumed")]
    Subscription {
        /// The clientError code.
        code: String,
        /// Stream, query and page.
        context: String,
    },
    /// `rate_limit_exceeded` or HTTP 429, after the retries ran out.
    #[error("superops rate limit exceeded on {operation} and still exceeded after retrying; lower requests_per_minute")]
    RateLimited {
        /// The query.
        operation: String,
        /// Seconds the server asked to wait, if it said.
        retry_after: Option<f64>,
    },
    /// HTTP 5xx, 408, a timeout or a connection failure.
    #[error("{0}")]
    Transient(String),
    /// GraphQL `errors` (validation, clientError codes other than the above, or partial
    /// data): the page failed and nothing of it is used.
    #[error("superops returned errors for {operation}: {detail}")]
    GraphQl {
        /// The query and page.
        operation: String,
        /// Codes and messages.
        detail: String,
    },
    /// A response that is not what the API documents.
    #[error("malformed superops response for {context}: {detail}")]
    Malformed {
        /// Stream, query and page.
        context: String,
        /// What was wrong (with a byte offset where serde gives one).
        detail: String,
    },
    /// Anything else (unexpected HTTP status, client construction).
    #[error("{0}")]
    Other(String),
    /// The host asked us to stop.
    #[error("cancelled by the host")]
    Cancelled,
}

impl Error {
    /// The error policy: the kind of each error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::BadSubdomain { .. } | Error::BadRequest(_) => {
                ErrorKind::Config
            }
            Error::Forbidden { .. } | Error::Subscription { .. } => ErrorKind::Config,
            Error::Unauthorized => ErrorKind::Auth,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Transient(_) => ErrorKind::Transient,
            Error::GraphQl { .. } | Error::Malformed { .. } => ErrorKind::Data,
            Error::Other(_) | Error::Cancelled => ErrorKind::System,
        }
    }

    /// Whether the whole read should stop because every stream would fail the same way:
    /// bad settings, a rejected token or subdomain, or the host's stop. `forbidden` and
    /// `subscription_*` are answered per query (a role may lack one permission, a plan
    /// one module), so they fail only their stream and the others go on.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Forbidden { .. } | Error::Subscription { .. } => false,
            Error::Cancelled => true,
            other => matches!(other.kind(), ErrorKind::Config | ErrorKind::Auth),
        }
    }
}

impl tributary_sdk::toolkit::StreamError for Error {
    fn is_fatal(&self) -> bool {
        Error::is_fatal(self)
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        ConnectorError::new(e.kind(), e.to_string())
    }
}

impl From<ConnectorError> for Error {
    fn from(e: ConnectorError) -> Self {
        if e == ConnectorError::cancelled() {
            Error::Cancelled
        } else {
            Error::Other(e.message)
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
