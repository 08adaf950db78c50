//! Streams declared once: what the catalog says about each stream, beside the connector's
//! own definition of it. `discover` returns [`Streams::catalog`]; the
//! [`Driver`](super::Driver) resolves requested names with [`Streams::find`]; neither
//! list can drift from the other.

use crate::{Catalog, StreamDescriptor};

/// A connector's streams, in catalog order: each descriptor beside the connector's
/// definition `D` (what it needs to read the stream: a query, an entity name, a kind).
#[derive(Debug, Clone)]
pub struct Streams<D> {
    connector: &'static str,
    declared: Vec<(StreamDescriptor, D)>,
}

impl<D> Streams<D> {
    /// No streams yet; `connector` names the connector in "unknown stream" errors.
    pub fn new(connector: &'static str) -> Self {
        Streams {
            connector,
            declared: Vec::new(),
        }
    }

    /// Declares one more stream.
    ///
    /// # Panics
    /// When the name is declared twice: a programming error caught by the first test.
    pub fn with(mut self, descriptor: StreamDescriptor, definition: D) -> Self {
        assert!(
            self.find(&descriptor.name).is_none(),
            "stream {} is declared twice",
            descriptor.name
        );
        self.declared.push((descriptor, definition));
        self
    }

    /// The catalog `discover` returns.
    pub fn catalog(&self) -> Catalog {
        self.declared
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>()
            .into()
    }

    /// The descriptor and definition of stream `name`.
    pub fn find(&self, name: &str) -> Option<(&StreamDescriptor, &D)> {
        self.declared
            .iter()
            .find(|(d, _)| d.name == name)
            .map(|(d, def)| (d, def))
    }

    /// The connector's name, as given to [`Streams::new`].
    pub fn connector(&self) -> &'static str {
        self.connector
    }

    /// Every declared name, in catalog order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.declared.iter().map(|(d, _)| d.name.as_str())
    }

    /// The message for a requested stream nobody declared.
    pub fn unknown(&self, name: &str) -> String {
        format!(
            "unknown stream {name}; {} has {}",
            self.connector,
            self.names().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn streams() -> Streams<u8> {
        Streams::new("demo")
            .with(
                StreamDescriptor::incremental("a", json!({}), &["id"], "at").client_field("c"),
                1,
            )
            .with(StreamDescriptor::full_refresh("b", json!({}), &["id"]), 2)
    }

    #[test]
    fn the_catalog_and_the_lookup_come_from_one_list() {
        let s = streams();
        let names: Vec<String> = s.catalog().streams.into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["a", "b"]);
        let (descriptor, def) = s.find("a").expect("declared");
        assert_eq!((descriptor.client_field.as_deref(), *def), (Some("c"), 1));
        assert!(s.find("c").is_none());
        assert_eq!(s.unknown("c"), "unknown stream c; demo has a, b");
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_name_is_declared_once() {
        let _ = streams().with(StreamDescriptor::full_refresh("a", json!({}), &["id"]), 3);
    }
}
