//! What each source's plugin reported of its API use (see `tributary_sdk::usage`).

use std::collections::HashMap;
use std::sync::Mutex;

use tributary_sdk::usage::Usage;

/// Requests and throttles per source, since the command started.
#[derive(Debug, Default)]
pub struct UsageBook(Mutex<HashMap<String, Usage>>);

impl UsageBook {
    /// Adds a usage event of `source`.
    pub fn add(&self, source: &str, usage: Usage) {
        let mut book = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match book.get_mut(source) {
            Some(total) => total.add(usage),
            None => {
                book.insert(source.to_string(), usage);
            }
        }
    }

    /// What `source` used so far.
    pub fn of(&self, source: &str) -> Usage {
        let book = self.0.lock().unwrap_or_else(|p| p.into_inner());
        book.get(source).copied().unwrap_or_default()
    }
}
