//! The crate's error type, its mapping to the SDK's error classes, and URL redaction.
//!
//! Every message that can reach a log or the user is built from a redacted URL and has any
//! password scrubbed out of driver messages, so secrets never leave the plugin.

use tributary_sdk::{ConnectorError, ErrorKind};

/// Errors of the internal-db connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or has a bad value.
    #[error("invalid config: {0}")]
    Config(String),
    /// The database URL cannot be used.
    #[error("invalid database url {url}: {reason}")]
    Url {
        /// The URL with its password replaced by `***`.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Saved state is not what this connector writes.
    #[error("saved state of stream {stream} is not understood ({reason}); reset it with `tributary state reset`")]
    State {
        /// The stream.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database or the driver reported an error.
    #[error("{context}: {message}")]
    Database {
        /// What the connector was doing, e.g. `connecting to postgres://u:***@h/db`.
        context: String,
        /// The driver's message, password scrubbed.
        message: String,
        /// How the SDK should treat it.
        kind: ErrorKind,
    },
    /// Something the connector did not expect of itself or the database (a malformed
    /// page, a task that stopped).
    #[error("{0}")]
    Internal(String),
    /// A file operation (creating the sample database) failed.
    #[error("{context}: {message}")]
    Io {
        /// What the connector was doing.
        context: String,
        /// The OS message.
        message: String,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SDK error class: bad settings are `Config`, refused connections and timeouts
    /// `Transient`, rejected credentials `Auth`, everything else `System`.
    pub fn class(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Url { .. } | Error::State { .. } => ErrorKind::Config,
            Error::Database { kind, .. } => *kind,
            Error::Io { .. } | Error::Internal(_) => ErrorKind::System,
        }
    }

    /// Wraps a driver error, classifying it and scrubbing `secret` out of its message.
    pub(crate) fn db(context: impl Into<String>, e: sqlx::Error, secret: Option<&str>) -> Self {
        let kind = classify(&e);
        let mut message = e.to_string();
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            message = message.replace(secret, "***");
        }
        Error::Database {
            context: context.into(),
            message,
            kind,
        }
    }

    pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        ConnectorError::new(e.class(), e.to_string())
    }
}

/// Error codes that mean "your credentials or privileges are wrong".
const AUTH_CODES: &[&str] = &[
    "28000", // PG invalid_authorization_specification, MySQL access denied (SQLSTATE)
    "28P01", // PG invalid_password
    "42501", // PG insufficient_privilege
];

/// Error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "40001", "40P01", // serialization failure, deadlock
    "53300", // too many connections
    "57P01", "57P02", "57P03", // admin shutdown, crash shutdown, cannot connect now
    "08000", "08001", "08003", "08004", "08006", // connection exceptions
];

/// Error codes that mean "the settings point at the wrong place".
const CONFIG_CODES: &[&str] = &[
    "3D000", // PG database does not exist
    "42P01", // PG undefined table
    "42703", // PG undefined column (a soft-delete column the table lacks)
    "3F000", // PG schema does not exist
    "42S02", // MySQL table does not exist
];

fn classify(e: &sqlx::Error) -> ErrorKind {
    use sqlx::Error as E;
    match e {
        E::Configuration(_) => ErrorKind::Config,
        E::Tls(_) => ErrorKind::Config,
        E::Io(_) | E::PoolTimedOut => ErrorKind::Transient,
        E::Database(db) => classify_database(db.as_ref()),
        _ => ErrorKind::System,
    }
}

fn classify_database(db: &dyn sqlx::error::DatabaseError) -> ErrorKind {
    // MySQL reports most failures as SQLSTATE HY000/42000; its error number is precise.
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.number() {
            1044 | 1045 | 1142 | 1227 | 1698 => ErrorKind::Auth,
            1049 | 1054 | 1146 => ErrorKind::Config,
            1040 | 1053 | 1205 | 1213 | 2002 | 2003 | 2006 | 2013 => ErrorKind::Transient,
            _ => ErrorKind::System,
        };
    }
    if let Some(code) = db.code() {
        let code = code.as_ref();
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            // SQLite primary result codes (low byte of the extended code).
            let primary = code.parse::<i32>().unwrap_or(0) & 0xff;
            return match primary {
                5 | 6 => ErrorKind::Transient, // BUSY, LOCKED
                14 | 26 => ErrorKind::Config,  // CANTOPEN, NOTADB
                23 => ErrorKind::Auth,         // AUTH
                1 if db.message().contains("no such table")
                    || db.message().contains("no such column") =>
                {
                    ErrorKind::Config
                }
                _ => ErrorKind::System,
            };
        }
        if AUTH_CODES.contains(&code) {
            return ErrorKind::Auth;
        }
        if CONFIG_CODES.contains(&code) {
            return ErrorKind::Config;
        }
        if TRANSIENT_CODES.contains(&code) {
            return ErrorKind::Transient;
        }
    }
    ErrorKind::System
}

/// `url` with the password (and any `password`-like query parameter) replaced by `***`.
///
/// Works on the raw text so that even a URL too malformed to parse is redacted.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_len = out[rest_start..]
            .find(['/', '?', '#'])
            .unwrap_or(out.len() - rest_start);
        let authority = &out[rest_start..rest_start + authority_len];
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                let (from, to) = (rest_start + colon + 1, rest_start + at);
                out.replace_range(from..to, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{base}{query}");
    }
    out
}

/// The password in `url`, raw and percent-decoded, so it can be scrubbed from messages.
pub(crate) fn password_of(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    Some(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_and_password_params() {
        assert_eq!(
            redact_url("postgres://user:s3cr%40t@db.example:5432/msp?sslmode=require"),
            "postgres://user:***@db.example:5432/msp?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/test?password=hunter2&x=1"),
            "mysql://root@localhost/test?password=***&x=1"
        );
        assert_eq!(
            redact_url("sqlite:data/internal.db"),
            "sqlite:data/internal.db"
        );
        assert_eq!(
            password_of("postgres://u:p%40ss@h/db").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(password_of("postgres://u@h/db"), None);
    }

    #[test]
    fn classes() {
        assert_eq!(Error::Config("x".into()).class(), ErrorKind::Config);
        assert_eq!(
            Error::db("c", sqlx::Error::PoolTimedOut, None).class(),
            ErrorKind::Transient
        );
        let e = Error::db("c", sqlx::Error::Protocol("pw=abc".into()), Some("abc"));
        assert!(!e.to_string().contains("abc"), "{e}");
    }
}
