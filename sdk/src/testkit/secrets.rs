//! Which config values are secret, and finding them in output.
//!
//! A field is secret when its schema in `spec` says so in any of the spellings in use:
//! `"secret": true` (Tributary's connectors), `"writeOnly": true` (JSON Schema) or
//! `"airbyte_secret": true` (Airbyte specs). The password inside a URL-valued field
//! (`postgres://user:password@host/db`) is secret too, whatever the spec says.

use std::collections::BTreeMap;

use serde_json::Value;

/// Values shorter than this are not searched for: they would be found by chance
/// (`"abc"` inside any word) and tell nothing.
pub const MIN_SECRET_LEN: usize = 6;

/// Secret values by where they came from (`api_token`, `url (password)`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// The secrets of `config` according to `spec`.
    pub fn of(spec: &Value, config: &Value) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.collect(spec, config, "");
        secrets
    }

    /// Adds a secret value under a name (a rotated token from a CONTROL message, say).
    pub fn add(&mut self, name: &str, value: &str) {
        if value.chars().count() >= MIN_SECRET_LEN {
            self.values.insert(name.to_string(), value.to_string());
        }
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Names of the secret fields (top-level paths, dotted below).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The name of the first secret found in `text`.
    pub fn found_in(&self, text: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(_, v)| text.contains(v.as_str()))
            .map(|(k, _)| k.as_str())
    }

    /// `text` with every secret value replaced by `<secret>`, for reasons and messages.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in self.values.values() {
            out = out.replace(value.as_str(), "<secret>");
        }
        out
    }

    fn collect(&mut self, schema: &Value, config: &Value, prefix: &str) {
        let Some(fields) = config.as_object() else {
            return;
        };
        for (key, value) in fields {
            let name = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let field_schema = &schema["properties"][key];
            if marked_secret(field_schema) {
                match value {
                    Value::String(s) => self.add(&name, s),
                    other => self.add(&name, &other.to_string()),
                }
            } else if let Some(password) = value.as_str().and_then(url_password) {
                self.add(&format!("{name} (password)"), password);
            } else if value.is_object() {
                self.collect(field_schema, value, &name);
            }
        }
    }
}

/// Whether a property schema marks its value as secret.
pub fn marked_secret(schema: &Value) -> bool {
    ["secret", "writeOnly", "airbyte_secret"]
        .iter()
        .any(|k| schema[*k] == Value::Bool(true))
}

/// The config with every secret field (per `spec`) replaced by a wrong value of the same
/// type: what `check` must refuse as bad credentials. `None` when nothing is secret.
pub fn with_wrong_secrets(spec: &Value, config: &Value) -> Option<Value> {
    let mut changed = false;
    let mut out = config.clone();
    if let Some(fields) = out.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if marked_secret(&spec["properties"][key.as_str()]) && value.is_string() {
                *value = Value::String(format!("conformance-wrong-{key}"));
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The password of a `scheme://user:password@host/...` URL.
fn url_password(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}
