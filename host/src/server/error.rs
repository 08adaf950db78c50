//! The server's errors.

/// What can fail in the server or in `tail`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener or a connection failed.
    #[error("server i/o: {0}")]
    Io(#[from] std::io::Error),
    /// `tail`'s URL or filters do not form a request.
    #[error("bad events url {url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The WebSocket connection failed or was refused (401 without the right token).
    /// Not a `source`: the message already includes the cause, once.
    #[error("events feed: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server dropped this subscriber for falling behind.
    #[error("dropped by the server after missing {missed} events (read faster or filter more)")]
    Lagged {
        /// Events the subscriber missed.
        missed: u64,
    },
}

/// The server's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
