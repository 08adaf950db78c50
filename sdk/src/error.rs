//! The classified error every connector returns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure an error is; decides whether the host (or the connector) retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad settings: never retried, the user must change the manifest or credentials.
    Config,
    /// Authentication failed after one refresh attempt.
    Auth,
    /// The remote API throttled us; wait and retry.
    RateLimited,
    /// A passing fault (5xx, timeout, connection reset); back off and retry.
    Transient,
    /// One bad record or response: reported, counted, not fatal to other streams.
    Data,
    /// Anything else: I/O, the destination, the runtime.
    System,
    /// The connector panicked; caught at the plugin boundary.
    Panic,
}

impl ErrorKind {
    /// Whether an operation failing with this kind may succeed if simply tried again.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Transient)
    }

    /// Stable lower-case name, as used in logs and the summary table.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Data => "data",
            ErrorKind::System => "system",
            ErrorKind::Panic => "panic",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> ErrorKind {
        match v {
            0 => ErrorKind::Config,
            1 => ErrorKind::Auth,
            2 => ErrorKind::RateLimited,
            3 => ErrorKind::Transient,
            4 => ErrorKind::Data,
            6 => ErrorKind::Panic,
            _ => ErrorKind::System,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified connector error: a kind plus a human-readable message.
///
/// Messages must never contain secrets (tokens, passwords, connection strings with
/// passwords): they are shown to the user and written to logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct ConnectorError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What went wrong, lower-case, no trailing period, no secrets.
    pub message: String,
}

impl ConnectorError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
        }
    }
    /// A [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// An [`ErrorKind::Auth`] error.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    /// An [`ErrorKind::RateLimited`] error.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited, message)
    }
    /// An [`ErrorKind::Transient`] error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    /// An [`ErrorKind::Data`] error.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }
    /// An [`ErrorKind::System`] error.
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::System, message)
    }
    /// The error a connector returns when the host asked it to stop.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::System, "cancelled by the host")
    }
}

/// `Result` with [`ConnectorError`] as the default error.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
