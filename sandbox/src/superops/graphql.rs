//! A small GraphQL document parser: enough of the query language for what SuperOps clients
//! send (operations with variables, fields with aliases and arguments, nested selections,
//! literal values). Fragments, directives and mutations are rejected with a syntax error,
//! which is how the emulator tells a connector it used something it does not model.

use serde_json::{Map, Number, Value};

/// A parsed operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Declared variables: name (without `$`) and type text (`ListInfoInput!`).
    pub variables: Vec<(String, String)>,
    /// The root selection set.
    pub selection: Vec<Field>,
}

/// One selected field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Response key: the alias, or the name.
    pub alias: Option<String>,
    /// Field name.
    pub name: String,
    /// Arguments, unresolved (may hold variables).
    pub arguments: Vec<(String, Literal)>,
    /// Sub-selection; `None` for a leaf.
    pub selection: Option<Vec<Field>>,
    /// 1-based line and column of the field name.
    pub location: (usize, usize),
}

impl Field {
    /// The key this field has in the response.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A GraphQL input value as written in the document.
#[derive(Debug, Clone)]
pub enum Literal {
    /// `$name`.
    Variable(String),
    /// Any constant value.
    Const(Value),
    /// A list that may contain variables.
    List(Vec<Literal>),
    /// An object that may contain variables.
    Object(Vec<(String, Literal)>),
}

impl Literal {
    /// Substitutes variables, giving plain JSON.
    pub fn resolve(&self, vars: &Map<String, Value>) -> Value {
        match self {
            Literal::Variable(n) => vars.get(n).cloned().unwrap_or(Value::Null),
            Literal::Const(v) => v.clone(),
            Literal::List(items) => Value::Array(items.iter().map(|l| l.resolve(vars)).collect()),
            Literal::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, l)| (k.clone(), l.resolve(vars)))
                    .collect(),
            ),
        }
    }
}

/// A syntax error with its position, worded like graphql-java's `InvalidSyntax`.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// What was wrong.
    pub message: String,
    /// 1-based line and column.
    pub location: (usize, usize),
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

/// Parses a document holding one query operation (a shorthand `{ ... }` or `query Name(...) { ... }`).
pub fn parse(document: &str) -> Result<Operation, SyntaxError> {
    let mut p = Parser {
        src: document.as_bytes(),
        pos: 0,
    };
    p.skip_ignored();
    let mut variables = Vec::new();
    if p.peek() != Some(b'{') {
        let keyword = p.name()?;
        if keyword != "query" {
            return Err(p.error(&format!(
                "offending token '{keyword}': only query operations are supported"
            )));
        }
        p.skip_ignored();
        if p.peek().is_some_and(is_name_start) {
            p.name()?;
            p.skip_ignored();
        }
        if p.peek() == Some(b'(') {
            p.bump();
            loop {
                p.skip_ignored();
                if p.peek() == Some(b')') {
                    p.bump();
                    break;
                }
                p.expect(b'$')?;
                let name = p.name()?;
                p.skip_ignored();
                p.expect(b':')?;
                p.skip_ignored();
                let ty = p.type_ref()?;
                p.skip_ignored();
                if p.peek() == Some(b'=') {
                    p.bump();
                    p.skip_ignored();
                    p.value()?;
                }
                variables.push((name, ty));
            }
            p.skip_ignored();
        }
    }
    let selection = p.selection_set()?;
    p.skip_ignored();
    if p.pos < p.src.len() {
        return Err(p.error("extraneous input after the operation (one operation per request)"));
    }
    Ok(Operation {
        variables,
        selection,
    })
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn location(&self) -> (usize, usize) {
        let before = &self.src[..self.pos.min(self.src.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        (line, col)
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            message: message.to_string(),
            location: self.location(),
        }
    }

    fn skip_ignored(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.bump(),
                0xEF if self.src[self.pos..].starts_with(&[0xEF, 0xBB, 0xBF]) => self.pos += 3,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), SyntaxError> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return Err(self.error("expected a name"));
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.bump();
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn type_ref(&mut self) -> Result<String, SyntaxError> {
        let mut out = String::new();
        if self.peek() == Some(b'[') {
            self.bump();
            self.skip_ignored();
            out.push('[');
            out.push_str(&self.type_ref()?);
            self.skip_ignored();
            self.expect(b']')?;
            out.push(']');
        } else {
            out.push_str(&self.name()?);
        }
        if self.peek() == Some(b'!') {
            self.bump();
            out.push('!');
        }
        Ok(out)
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, SyntaxError> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        loop {
            self.skip_ignored();
            match self.peek() {
                Some(b'}') => {
                    self.bump();
                    break;
                }
                Some(b'.') => {
                    return Err(self.error("fragments are not supported by this emulator"))
                }
                Some(b'@') => {
                    return Err(self.error("directives are not supported by this emulator"))
                }
                None => return Err(self.error("unexpected end of document")),
                _ => fields.push(self.field()?),
            }
        }
        if fields.is_empty() {
            return Err(self.error("empty selection set"));
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<Field, SyntaxError> {
        let location = self.location();
        let first = self.name()?;
        self.skip_ignored();
        let (alias, name) = if self.peek() == Some(b':') {
            self.bump();
            self.skip_ignored();
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        self.skip_ignored();
        let mut arguments = Vec::new();
        if self.peek() == Some(b'(') {
            self.bump();
            loop {
                self.skip_ignored();
                if self.peek() == Some(b')') {
                    self.bump();
                    break;
                }
                let arg = self.name()?;
                self.skip_ignored();
                self.expect(b':')?;
                self.skip_ignored();
                arguments.push((arg, self.value()?));
            }
            self.skip_ignored();
        }
        let selection = if self.peek() == Some(b'{') {
            Some(self.selection_set()?)
        } else {
            None
        };
        Ok(Field {
            alias,
            name,
            arguments,
            selection,
            location,
        })
    }

    fn value(&mut self) -> Result<Literal, SyntaxError> {
        match self.peek() {
            Some(b'$') => {
                self.bump();
                Ok(Literal::Variable(self.name()?))
            }
            Some(b'"') => Ok(Literal::Const(Value::String(self.string()?))),
            Some(b'[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(b']') {
                        self.bump();
                        break;
                    }
                    items.push(self.value()?);
                }
                Ok(Literal::List(items))
            }
            Some(b'{') => {
                self.bump();
                let mut fields = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(b'}') {
                        self.bump();
                        break;
                    }
                    let k = self.name()?;
                    self.skip_ignored();
                    self.expect(b':')?;
                    self.skip_ignored();
                    fields.push((k, self.value()?));
                }
                Ok(Literal::Object(fields))
            }
            Some(b) if b == b'-' || b.is_ascii_digit() => {
                let start = self.pos;
                self.bump();
                while self.peek().is_some_and(|b| {
                    b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                }) {
                    self.bump();
                }
                let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
                let n = if let Ok(i) = text.parse::<i64>() {
                    Number::from(i)
                } else if let Ok(u) = text.parse::<u64>() {
                    Number::from(u)
                } else {
                    text.parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .ok_or_else(|| self.error("invalid number"))?
                };
                Ok(Literal::Const(Value::Number(n)))
            }
            Some(b) if is_name_start(b) => {
                let n = self.name()?;
                Ok(Literal::Const(match n.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    // Enum values travel as their names.
                    _ => Value::String(n),
                }))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        if self.src[self.pos..].starts_with(b"\"\"\"") {
            self.pos += 3;
            let start = self.pos;
            while !self.src[self.pos..].starts_with(b"\"\"\"") {
                if self.pos >= self.src.len() {
                    return Err(self.error("unterminated block string"));
                }
                self.bump();
            }
            let s = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
            self.pos += 3;
            return Ok(s);
        }
        // A GraphQL string literal uses JSON's escapes, so let serde_json decode it.
        let start = self.pos;
        self.bump();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.error("unterminated string")),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.bump();
                    break;
                }
                _ => self.bump(),
            }
        }
        let text = String::from_utf8_lossy(&self.src[start..self.pos]);
        serde_json::from_str(&text).map_err(|_| self.error("invalid string escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_query_with_variables() {
        let op = parse(
            "query getTicketList($input: ListInfoInput!) { getTicketList(input: $input) { tickets { ticketId client } listInfo { hasMore } } }",
        )
        .expect("parses");
        assert_eq!(
            op.variables,
            vec![("input".to_string(), "ListInfoInput!".to_string())]
        );
        let root = &op.selection[0];
        assert_eq!(root.name, "getTicketList");
        let inner = root.selection.as_ref().expect("selection");
        assert_eq!(inner[0].selection.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn parses_literal_arguments_and_aliases() {
        let op = parse(r#"{ a: getClientList(input: {page: 2, pageSize: 5, sort: [{attribute: "name", order: ASC}]}) { clients { name } } }"#)
            .expect("parses");
        let f = &op.selection[0];
        assert_eq!(f.key(), "a");
        let v = f.arguments[0].1.resolve(&Map::new());
        assert_eq!(v["page"], 2);
        assert_eq!(v["sort"][0]["order"], "ASC");
    }
}
