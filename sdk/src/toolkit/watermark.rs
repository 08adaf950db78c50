//! The resume position of an API that lists changes `since` an instant, inclusively.

use serde::{Deserialize, Serialize};

/// The newest instant sent, and the keys sent at that instant.
///
/// Asking again "since" the newest instant sent repeats the records of that instant
/// (and more may share it, still unsent), while asking "after" it would lose those. So a
/// resumed read asks since [`Watermark::at`] and [`Watermark::admit`] drops exactly what
/// was sent before: nothing lost at the boundary second, nothing doubled. Instants are
/// compared as text, so give them one format (e.g. RFC 3339 in UTC).
///
/// ```
/// use tributary_sdk::toolkit::Watermark;
///
/// let mut w = Watermark::default();
/// assert!(w.admit("2026-01-01T00:00:00Z", "1"));
/// assert!(w.admit("2026-01-01T00:00:01Z", "2"));
/// // Saved as state; the next read asks since 00:00:01 and gets item 2 again, and 3.
/// assert!(!w.admit("2026-01-01T00:00:01Z", "2"));
/// assert!(w.admit("2026-01-01T00:00:01Z", "3"));
/// assert_eq!(w.at, "2026-01-01T00:00:01Z");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The newest instant sent (empty before anything was).
    pub at: String,
    /// The keys sent at that instant.
    pub keys: Vec<String>,
}

impl Watermark {
    /// Whether the record `key` changed at `at` is new, noting it as sent when it is.
    /// A record older than the watermark (an API out of order) is let through and leaves
    /// the watermark where it is.
    pub fn admit(&mut self, at: &str, key: &str) -> bool {
        match at.cmp(self.at.as_str()) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal if self.keys.iter().any(|k| k == key) => false,
            std::cmp::Ordering::Equal => {
                self.keys.push(key.to_string());
                true
            }
            std::cmp::Ordering::Greater => {
                self.at = at.to_string();
                self.keys = vec![key.to_string()];
                true
            }
        }
    }
}
