//! Where a key is written in the manifest, so that every problem found after parsing (an
//! unknown key, a bad date, a plugin config that fails its schema) names the file, line,
//! column and key like toml's own errors do.

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Value};

/// The manifest's text with the spans of its keys.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    file: PathBuf,
    doc: Option<ImDocument<String>>,
}

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Positions {
    /// Spans of `text`, read from `file`. Text that does not parse has no spans (toml's
    /// own error already reported it).
    pub fn new(text: &str, file: &Path) -> Self {
        Positions {
            file: file.to_owned(),
            doc: ImDocument::parse(text.to_string()).ok(),
        }
    }

    /// Where the deepest existing part of `path` is written (the key itself when it
    /// exists; its table otherwise).
    pub fn locate(&self, path: &[&str]) -> Option<LineCol> {
        let doc = self.doc.as_ref()?;
        let mut item_span: Option<std::ops::Range<usize>> = None;
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut current: Option<Node<'_>> = Some(Node::Item(doc.as_item()));
        for segment in path {
            let Some(node) = current.take() else { break };
            match node.child(segment) {
                Some((span, child)) => {
                    if let Some(span) = span {
                        best = Some(span);
                    }
                    item_span = child.span();
                    current = Some(child);
                }
                None => break,
            }
        }
        let offset = best.or(item_span)?.start;
        Some(line_col(doc.raw(), offset))
    }

    /// `file: line L, column C: key `a.b.c`` (the position left out when unknown).
    pub fn describe(&self, path: &[&str]) -> String {
        let key = path.join(".");
        match self.locate(path) {
            Some(at) => format!(
                "{}: line {}, column {}: key `{key}`",
                self.file.display(),
                at.line,
                at.column
            ),
            None => format!("{}: key `{key}`", self.file.display()),
        }
    }
}

/// A node while walking a key path: an item, an inline value, or a table of an array of
/// tables.
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }

    /// The child at `segment` (a key, or an index into an array) and the span of its key.
    fn child(&self, segment: &str) -> Option<(Option<std::ops::Range<usize>>, Node<'a>)> {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => {
                let table = tables.get(segment.parse().ok()?)?;
                Some((table.span(), Node::Table(table)))
            }
            Node::Table(table) => {
                let (key, child) = table.get_key_value(segment)?;
                Some((key.span(), Node::Item(child)))
            }
            Node::Item(Item::Value(v)) => Node::Value(v).child(segment),
            Node::Item(item) => {
                let (key, child) = item.as_table_like()?.get_key_value(segment)?;
                Some((key.span(), Node::Item(child)))
            }
            Node::Value(Value::Array(array)) => {
                let v = array.get(segment.parse().ok()?)?;
                Some((v.span(), Node::Value(v)))
            }
            Node::Value(Value::InlineTable(table)) => {
                let (key, child) = table.get_key_value(segment)?;
                Some((key.span(), Node::Item(child)))
            }
            Node::Value(_) => None,
        }
    }
}

fn line_col(text: &str, offset: usize) -> LineCol {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    LineCol { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_in_tables_inline_tables_and_arrays() {
        let text = "[host]\nplugin_dir = \"x\"\n\n[sources.a]\nplugin = \"p\"\nstreams = [\"s1\", \"s2\"]\n[sources.a.config]\nurl = \"u\"\nsample = { clients = 3 }\n";
        let p = Positions::new(text, Path::new("m.toml"));
        assert_eq!(
            p.locate(&["host", "plugin_dir"]),
            Some(LineCol { line: 2, column: 1 })
        );
        assert_eq!(
            p.locate(&["sources", "a", "plugin"]),
            Some(LineCol { line: 5, column: 1 })
        );
        assert_eq!(
            p.locate(&["sources", "a", "streams", "1"]),
            Some(LineCol {
                line: 6,
                column: 18
            })
        );
        assert_eq!(
            p.locate(&["sources", "a", "config", "sample", "clients"]),
            Some(LineCol {
                line: 9,
                column: 12
            })
        );
        // A key that is missing: its table's position.
        assert_eq!(
            p.locate(&["sources", "a", "config", "nope"])
                .map(|l| l.line),
            Some(7)
        );
        assert_eq!(
            p.describe(&["sources", "a", "plugin"]),
            "m.toml: line 5, column 1: key `sources.a.plugin`"
        );
    }
}
