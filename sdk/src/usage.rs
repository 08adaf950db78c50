//! API usage a connector reports to the host: requests sent and throttled answers, which
//! the host counts per source (`watch` exports them as Prometheus metrics).
//!
//! Usage travels as a log event on a reserved target, so it needs no new boundary call:
//! the plugin forwards it whatever the log level, and a host that does not know the
//! target prints it as an ordinary debug line. `toolkit::http` reports every request it
//! sends; a connector with its own HTTP client calls [`request`] and [`throttle`].

/// The log target usage events travel on.
pub const TARGET: &str = "tributary::usage";

/// One request sent to the source's API.
pub fn request() {
    tracing::debug!(target: TARGET, requests = 1u64);
}

/// One answer that said "slow down" (HTTP 429, a rate-limit error).
pub fn throttle() {
    tracing::debug!(target: TARGET, throttles = 1u64);
}

/// Counts of API use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requests sent.
    pub requests: u64,
    /// Throttled answers.
    pub throttles: u64,
}

impl Usage {
    /// Reads a usage event's forwarded text (` requests=1`, ` throttles=1`); the host's
    /// side. Anything else counts nothing.
    pub fn parse(message: &str) -> Usage {
        let mut usage = Usage::default();
        for (key, value) in message
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
        {
            let n = value.parse::<u64>().unwrap_or(0);
            match key {
                "requests" => usage.requests += n,
                "throttles" => usage.throttles += n,
                _ => {}
            }
        }
        usage
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Usage) {
        self.requests += other.requests;
        self.throttles += other.throttles;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_forwarding_layer_writes() {
        assert_eq!(
            Usage::parse(" requests=1"),
            Usage {
                requests: 1,
                throttles: 0
            }
        );
        assert_eq!(Usage::parse(" throttles=2").throttles, 2);
        assert_eq!(Usage::parse("nonsense requests=x"), Usage::default());
    }
}
