//! One request loop for HTTP connectors (feature `http`).
//!
//! A connector supplies what is its own — how to build a request, how to read status
//! and fault codes from a response, its classification [`Table`] and its auth (a
//! [`TokenSource`]) — and [`Requester::send`] does the rest: the per-credential
//! [`Budget`](crate::toolkit::Budget), single-flight token refresh, throttle waits
//! (`Retry-After`), backoff with jitter, and transport-error wording.
//!
//! ```text
//! budget.acquire ─▶ token ─▶ send ─▶ classify ─▶ Accept ─▶ output
//!                                       │ Retry   ─▶ back off, again
//!                                       │ Refresh ─▶ refresh (single flight), again
//!                                       │ Wait    ─▶ Retry-After (budget pauses), again
//!                                       └ Fail    ─▶ connector's error
//! ```

mod api;
mod request;
mod secret;
mod table;
#[cfg(test)]
mod tests;
mod transport;

pub use api::{Api, REST};
pub use request::{Failure, Reply, Requester, RetryPolicy, StaticToken, Stats, TokenSource};
pub use secret::Secret;
pub use table::{Action, Code, Rule, Status, Table};
pub use transport::{client, retry_after, transport_message, ClientSettings};
