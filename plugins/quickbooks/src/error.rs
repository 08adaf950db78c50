//! Errors of the QuickBooks connector and the one table that classifies HTTP statuses and
//! QuickBooks fault codes ([`TABLE`], read by [`classify`]).

use serde_json::Value;
use tributary_sdk::toolkit::http::{Code, Rule, Status, Table};
use tributary_sdk::{ConnectorError, ErrorKind};

/// Everything that can go wrong. Messages never contain tokens or secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings in the manifest.
    #[error("{0}")]
    Config(String),
    /// The refresh token was refused: the user must reconnect.
    #[error("quickbooks refused the refresh token for realm {realm} (invalid_grant): it was revoked, expired or superseded; reconnect the app to QuickBooks and put the new refresh token in the credentials store")]
    InvalidGrant {
        /// Company id.
        realm: String,
    },
    /// The token endpoint rejected client id/secret.
    #[error("quickbooks rejected client_id/client_secret (invalid_client); check the app's keys in the Intuit developer portal")]
    InvalidClient,
    /// Any other token endpoint failure.
    #[error("token endpoint answered HTTP {status} ({error})")]
    TokenEndpoint {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` field, or a short description.
        error: String,
        /// Whether it is worth retrying.
        retryable: bool,
    },
    /// The host could not persist a rotated refresh token, so it must not be used.
    #[error("could not persist the rotated refresh token: {0}")]
    Persist(String),
    /// QuickBooks answered with a fault.
    #[error("{what}: HTTP {status}, fault code {code} ({fault_type}): {message}{tid}")]
    Fault {
        /// Which request (`query invoices at STARTPOSITION 1`).
        what: String,
        /// HTTP status.
        status: u16,
        /// QuickBooks fault code (string in the API), `-` if none.
        code: String,
        /// Fault type (`ValidationFault`, `AUTHENTICATION`, ...).
        fault_type: String,
        /// Message and detail.
        message: String,
        /// ` (intuit_tid ...)` when the response had one.
        tid: String,
        /// Class from [`classify`].
        kind: ErrorKind,
    },
    /// Throttled more times in a row than allowed.
    #[error("{what}: still throttled (code 3001) after {attempts} waits")]
    Throttled {
        /// Which request.
        what: String,
        /// Throttle faults seen.
        attempts: u32,
    },
    /// Network failure or timeout, after retries.
    #[error("{what}: {message}")]
    Transport {
        /// Which request.
        what: String,
        /// What happened (no URL query, no headers).
        message: String,
    },
    /// A response that is not the JSON it should be.
    #[error("malformed response from quickbooks for stream {stream} at {position}: {detail}")]
    Malformed {
        /// Stream name.
        stream: String,
        /// Where: `STARTPOSITION 1001 after LastUpdatedTime ...`, a CDC or report window.
        position: String,
        /// Parser message.
        detail: String,
    },
    /// The host refused output (cancelled, destination failed).
    #[error("{0}")]
    Host(ConnectorError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The class the host sees.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::InvalidGrant { .. } | Error::InvalidClient => {
                ErrorKind::Config
            }
            Error::TokenEndpoint {
                retryable: true, ..
            } => ErrorKind::Transient,
            Error::TokenEndpoint { .. } => ErrorKind::Auth,
            Error::Persist(_) => ErrorKind::System,
            Error::Fault { kind, .. } => *kind,
            Error::Throttled { .. } => ErrorKind::RateLimited,
            Error::Transport { .. } => ErrorKind::Transient,
            Error::Malformed { .. } => ErrorKind::Data,
            Error::Host(e) => e.kind,
        }
    }

    /// QuickBooks answered HTTP 400: it refuses the request as asked (for CDC, a
    /// `changedSince` it will not serve), as opposed to failing to answer it.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Error::Fault { status: 400, .. })
    }

    /// Errors after which no other stream can succeed either (credentials, host gone).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::InvalidGrant { .. }
                | Error::InvalidClient
                | Error::Persist(_)
                | Error::Host(_)
                | Error::Config(_)
        )
    }
}

impl tributary_sdk::toolkit::StreamError for Error {
    fn is_fatal(&self) -> bool {
        Error::is_fatal(self)
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        match e {
            Error::Host(e) => e,
            other => ConnectorError::new(other.kind(), other.to_string()),
        }
    }
}

impl From<ConnectorError> for Error {
    fn from(e: ConnectorError) -> Self {
        Error::Host(e)
    }
}

pub use tributary_sdk::toolkit::http::Action;

/// The pseudo-code [`classify`] adds when a fault's text says `ThrottleExceeded`.
const THROTTLE_TEXT: &str = "ThrottleExceeded";

/// THE classification table: HTTP status and QuickBooks fault code to an action.
///
/// | status | code | action |
/// |---|---|---|
/// | any | 3001 or `ThrottleExceeded` | wait, retry (throttle; XML or JSON body, 429 or 403) |
/// | 429 | any | wait, retry |
/// | 401 | 130 (wrong cluster) | `Config` |
/// | 401 | 3200, 100, none | refresh once, retry once; then `Auth` |
/// | 403 | 3100, 3201, 120 | `Config` (app not authorised for this realm) |
/// | 404 | any | `Config` (wrong base_url or realm) |
/// | 400 | 4000, 4001, 4002, 2030, other validation | `System` (the connector built a bad query; not retried) |
/// | 408, 500, 502, 503, 504 | any | back off, retry (`Transient`) |
/// | 2xx | 3200, 100 (a fault in a success) | refresh, retry |
/// | other | any | `System` |
pub const TABLE: Table = Table {
    rules: &[
        Rule::new(Status::Any, Code::Is("3001"), Action::Wait),
        Rule::new(Status::Any, Code::Is(THROTTLE_TEXT), Action::Wait),
        Rule::new(Status::Is(429), Code::Any, Action::Wait),
        Rule::new(
            Status::Is(401),
            Code::Is("130"),
            Action::Fail(ErrorKind::Config),
        ),
        Rule::new(Status::Is(401), Code::Any, Action::Refresh),
        Rule::new(Status::Is(403), Code::Any, Action::Fail(ErrorKind::Config)),
        Rule::new(Status::Is(404), Code::Any, Action::Fail(ErrorKind::Config)),
        Rule::new(Status::Is(400), Code::Any, Action::Fail(ErrorKind::System)),
        Rule::new(Status::Is(408), Code::Any, Action::Retry),
        Rule::new(Status::Is(500), Code::Any, Action::Retry),
        Rule::new(Status::Range(502, 504), Code::Any, Action::Retry),
        Rule::new(Status::Range(200, 299), Code::Is("3200"), Action::Refresh),
        Rule::new(Status::Range(200, 299), Code::Is("100"), Action::Refresh),
    ],
    otherwise: Action::Fail(ErrorKind::System),
};

/// The action of [`TABLE`] for a fault: its status, its code (leading zeros aside) and
/// whether its text said `ThrottleExceeded`.
pub fn classify(status: u16, code: Option<&str>, throttle_text: bool) -> Action {
    let code = code.map(|c| c.trim_start_matches('0'));
    let mut codes: Vec<&str> = code.into_iter().collect();
    if throttle_text {
        codes.push(THROTTLE_TEXT);
    }
    TABLE.decide(status, &codes)
}

/// A fault as parsed from either JSON envelope or the XML body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// Fault code, if any.
    pub code: Option<String>,
    /// `type`.
    pub fault_type: String,
    /// Message plus detail.
    pub message: String,
    /// The body said `ThrottleExceeded`.
    pub throttle: bool,
    /// The envelope `time` (server clock), when the body carried one.
    pub time: Option<chrono::DateTime<chrono::FixedOffset>>,
}

fn get_ci<'a>(v: &'a Value, upper: &str, lower: &str) -> Option<&'a Value> {
    v.get(upper).or_else(|| v.get(lower))
}

/// Parses a fault body: `Fault`/`fault`, `Error`/`error`, `Message`/`message`,
/// `Detail`/`detail`, or the XML `<Fault><Error code="...">`. `None` when the body holds
/// no fault.
pub fn parse_fault(body: &[u8]) -> Option<Fault> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        let code = trimmed
            .split("code=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_string);
        let tag = |name: &str| {
            trimmed
                .split(&format!("<{name}>"))
                .nth(1)
                .and_then(|s| s.split(&format!("</{name}>")).next())
                .unwrap_or("")
                .to_string()
        };
        let fault_type = trimmed
            .split("type=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        if code.is_none() && !trimmed.contains("Fault") {
            return None;
        }
        let time = trimmed
            .split("time=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(crate::parse::parse_time);
        return Some(Fault {
            throttle: trimmed.contains("ThrottleExceeded"),
            time,
            code,
            fault_type,
            message: format!("{} {}", tag("Message"), tag("Detail"))
                .trim()
                .to_string(),
        });
    }
    let v: Value = serde_json::from_str(trimmed).ok()?;
    let fault = get_ci(&v, "Fault", "fault").filter(|f| !f.is_null())?;
    let first = get_ci(fault, "Error", "error").and_then(|e| e.get(0));
    let field = |upper: &str, lower: &str| {
        first
            .and_then(|e| get_ci(e, upper, lower))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let code = first.and_then(|e| e.get("code")).and_then(|c| match c {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let message = format!(
        "{} {}",
        field("Message", "message"),
        field("Detail", "detail")
    )
    .trim()
    .to_string();
    Some(Fault {
        throttle: message.contains("ThrottleExceeded"),
        time: v.get("time").and_then(crate::parse::envelope_time),
        code,
        fault_type: fault
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message,
    })
}

/// The message of an OAuth error body (`{"error":"invalid_grant",...}`).
pub fn oauth_error(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER_401: &str = r#"{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","detail":null,"code":"3200","element":null}],"type":"AUTHENTICATION"},"report":null,"queryResponse":null,"batchItemResponse":[],"attachableResponse":[],"syncErrorResponse":null,"requestId":null,"time":1533811101733,"status":null,"cdcresponse":[]}"#;
    const XML_429: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<IntuitResponse time=\"2017-07-30T22:45:22.933-07:00\" xmlns=\"http://schema.intuit.com/finance/v3\">\n    <Fault type=\"SERVICE\">\n        <Error code=\"3001\">\n            <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>\n            <Detail>The request limit was reached.  Try again later</Detail>\n        </Error>\n    </Fault>\n</IntuitResponse>";
    const TEMPLATE_400: &str = r#"{"Fault":{"Error":[{"Message":"<message>","Detail":"<detail>","code":"4001","element":""}],"type":"ValidationFault"},"time":"2017-09-29T09:17:31.892-07:00"}"#;

    #[test]
    fn parses_every_fault_shape() {
        let f = parse_fault(LOWER_401.as_bytes()).expect("lower-case envelope");
        assert_eq!(f.code.as_deref(), Some("3200"));
        assert_eq!(f.time.map(|t| t.timestamp_millis()), Some(1533811101733));
        assert_eq!(
            classify(401, f.code.as_deref(), f.throttle),
            Action::Refresh
        );
        let f = parse_fault(XML_429.as_bytes()).expect("xml");
        assert_eq!(f.code.as_deref(), Some("3001"));
        assert!(f.throttle);
        assert_eq!(classify(403, f.code.as_deref(), f.throttle), Action::Wait);
        assert_eq!(
            f.time,
            crate::parse::parse_time("2017-07-30T22:45:22.933-07:00")
        );
        let f = parse_fault(TEMPLATE_400.as_bytes()).expect("upper-case envelope");
        assert_eq!(
            f.time,
            crate::parse::parse_time("2017-09-29T09:17:31.892-07:00")
        );
        assert_eq!(
            classify(400, f.code.as_deref(), f.throttle),
            Action::Fail(ErrorKind::System)
        );
        assert!(parse_fault(br#"{"QueryResponse":{}}"#).is_none());
    }

    #[test]
    fn table() {
        assert_eq!(classify(503, None, false), Action::Retry);
        assert_eq!(classify(500, Some("10000"), false), Action::Retry);
        assert_eq!(
            classify(401, Some("130"), false),
            Action::Fail(ErrorKind::Config)
        );
        assert_eq!(
            classify(403, Some("3100"), false),
            Action::Fail(ErrorKind::Config)
        );
        assert_eq!(classify(429, None, false), Action::Wait);
        assert_eq!(classify(200, Some("3200"), false), Action::Refresh);
    }
}
