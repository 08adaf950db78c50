//! A connector's `spec` derived from its `Config` type (feature `schema`).
//!
//! `#[derive(JsonSchema)]` beside `#[derive(Deserialize)]` reads the same serde attributes,
//! so the schema the host validates a manifest with, the docs `tributary spec` prints and
//! the defaults serde applies come from one declaration and cannot drift apart:
//!
//! - `description`s are the fields' doc comments; `title` is `#[schemars(title = "…")]`;
//! - `default`s are the values of the `#[serde(default = "…")]` functions (for field types
//!   that implement `Serialize`);
//! - `#[serde(deny_unknown_fields)]` gives `additionalProperties: false`;
//! - bounds are `#[schemars(range(min = 1, max = 100))]`, patterns
//!   `#[schemars(regex(pattern = r"…"))]`, anything else `#[schemars(extend("k" = v))]`;
//! - a [`Secret`](crate::toolkit::http::Secret) field is `"secret": true`, which the host
//!   and the conformance kit use to redact it and to prove it never leaks.
//!
//! [`spec_drift`] is the unit test every connector runs on its `Config`.

use std::fmt::Debug;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The JSON Schema (draft 2020-12, the host's validator's default) of the config type `C`,
/// for [`Connector::spec`](crate::Connector::spec).
///
/// Every subschema is inlined: the host looks for `"secret"` and for a nested table's keys
/// on the property itself, not behind a `$ref`. An `Option` field is written as its inner
/// type, without `null`: the manifest is TOML, which has no null, so an unset option is an
/// absent key, and the property keeps the type an author writes.
pub fn config_spec<C: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .with_transform(RecursiveTransform(drop_null))
        .with_transform(RecursiveTransform(enum_of_consts))
        .into_generator();
    generator.into_root_schema_for::<C>().to_value()
}

/// `{"oneOf": [{"const": "a", "description": "…"}, …]}` (a unit enum with documented
/// variants) → `{"enum": ["a", …]}`, the variants' docs appended to the description: the
/// host then says "must be one of …" rather than "does not match any of the allowed forms".
fn enum_of_consts(schema: &mut Schema) {
    let Some(variants) = schema.get("oneOf").and_then(Value::as_array) else {
        return;
    };
    let simple = |v: &Value| {
        v.as_object().is_some_and(|o| {
            o.contains_key("const")
                && o.keys()
                    .all(|k| ["const", "type", "description"].contains(&k.as_str()))
        })
    };
    if variants.is_empty() || !variants.iter().all(simple) {
        return;
    }
    let values: Vec<Value> = variants.iter().map(|v| v["const"].clone()).collect();
    let docs: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            Some(format!(
                "`{}`: {}",
                v["const"].as_str()?,
                v["description"].as_str()?
            ))
        })
        .collect();
    let kind = variants[0].get("type").cloned();
    let same_type = variants.iter().all(|v| v.get("type") == kind.as_ref());
    schema.remove("oneOf");
    if let (Some(kind), true) = (kind, same_type) {
        schema.insert("type".into(), kind);
    }
    schema.insert("enum".into(), Value::Array(values));
    if !docs.is_empty() {
        let description = match schema.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d} {}", docs.join("; ")),
            None => docs.join("; "),
        };
        schema.insert("description".into(), description.into());
    }
}

/// Rewrites the properties of an object schema that accept `null` only because their
/// field is an `Option`.
fn drop_null(schema: &mut Schema) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for property in properties.values_mut() {
        if let Some(p) = property.as_object_mut() {
            drop_null_from(p);
        }
    }
}

fn drop_null_from(p: &mut Map<String, Value>) {
    let is_null = |v: &Value| v.get("type") == Some(&Value::from("null"));
    if p.get("default") == Some(&Value::Null) {
        p.remove("default");
    }
    // `{"type": ["string", "null"]}` → `{"type": "string"}`.
    if let Some(Value::Array(types)) = p.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            p.insert("type".into(), only);
        }
    }
    // `{"anyOf": [T, {"type": "null"}], …}` → T with the property's own keywords.
    let inner = match p.get("anyOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([t, n] | [n, t]) if is_null(n) && !is_null(t) => t.as_object().cloned(),
        _ => None,
    };
    if let Some(mut inner) = inner {
        p.remove("anyOf");
        inner.extend(std::mem::take(p));
        *p = inner;
    }
}

/// Every way the spec derived from `C` disagrees with how serde reads `C`, given `minimal`,
/// a config holding exactly the required keys. `Debug` compares parsed configs, so it must
/// show every field (secrets redacted is fine: no secret has a default).
///
/// - `minimal` parses, and each required key of the spec is needed: without it, parsing fails;
/// - each `default` in the spec is serde's: setting it explicitly parses to the same config;
/// - each other property is optional: `minimal` parses without it;
/// - with `additionalProperties: false`, serde refuses an unknown key too.
pub fn spec_drift<C: JsonSchema + DeserializeOwned + Debug>(
    minimal: &Value,
) -> Result<(), Vec<String>> {
    let spec = config_spec::<C>();
    let parse = |v: &Value| serde_json::from_value::<C>(v.clone()).map(|c| format!("{c:?}"));
    let base = match parse(minimal) {
        Ok(base) => base,
        Err(e) => return Err(vec![format!("the minimal config does not parse: {e}")]),
    };
    let mut problems = Vec::new();
    let required: Vec<&str> = spec["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let given: Vec<&str> = minimal
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let (mut want, mut have) = (required.clone(), given.clone());
    want.sort_unstable();
    have.sort_unstable();
    if want != have {
        problems.push(format!(
            "spec requires {want:?}, the minimal config has {have:?}"
        ));
    }
    for key in &required {
        let mut without = minimal.clone();
        if let Some(m) = without.as_object_mut() {
            m.remove(*key);
        }
        if parse(&without).is_ok() {
            problems.push(format!("`{key}` is required by the spec, not by serde"));
        }
    }
    let properties = spec["properties"].as_object().cloned().unwrap_or_default();
    for (key, property) in &properties {
        let Some(default) = property.get("default") else {
            continue;
        };
        let mut with = minimal.clone();
        if let Some(m) = with.as_object_mut() {
            m.insert(key.clone(), default.clone());
        }
        match parse(&with) {
            Ok(explicit) if explicit == base => {}
            Ok(_) => problems.push(format!(
                "`{key}`: the spec's default {default} is not serde's"
            )),
            Err(e) => problems.push(format!(
                "`{key}`: the spec's default {default} does not parse: {e}"
            )),
        }
    }
    if spec["additionalProperties"] == Value::Bool(false) {
        let mut unknown = minimal.clone();
        if let Some(m) = unknown.as_object_mut() {
            m.insert("no_such_key_in_any_config".into(), Value::Bool(true));
        }
        if parse(&unknown).is_ok() {
            problems.push("the spec refuses unknown keys, serde accepts them".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// A table with a nested one.
    #[allow(dead_code)]
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(title = "Example")]
    struct Config {
        /// The token.
        #[cfg(feature = "http")]
        token: crate::toolkit::http::Secret,
        /// Rows per page.
        #[serde(default = "default_page_size")]
        #[schemars(range(min = 1, max = 100))]
        page_size: u32,
        /// An optional nested table.
        #[serde(default)]
        nested: Option<Nested>,
        /// An optional day.
        #[serde(default)]
        label: Option<String>,
        /// Which way.
        #[serde(default)]
        way: Way,
    }

    #[derive(Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Way {
        /// Up it goes.
        #[default]
        Up,
        /// Down.
        Down,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        #[serde(default)]
        count: u32,
    }

    fn default_page_size() -> u32 {
        50
    }

    #[test]
    fn title_defaults_bounds_descriptions_and_options_without_null() {
        let spec = config_spec::<Config>();
        assert_eq!(spec["title"], "Example");
        assert_eq!(spec["additionalProperties"], false);
        let page = &spec["properties"]["page_size"];
        assert_eq!(
            (
                &page["type"],
                &page["default"],
                &page["minimum"],
                &page["maximum"]
            ),
            (&json!("integer"), &json!(50), &json!(1), &json!(100))
        );
        assert_eq!(page["description"], "Rows per page.");
        assert_eq!(spec["properties"]["label"]["type"], "string");
        assert!(spec["properties"]["label"].get("default").is_none());
        let nested = &spec["properties"]["nested"];
        assert_eq!(nested["type"], "object");
        assert_eq!(nested["description"], "An optional nested table.");
        assert_eq!(nested["additionalProperties"], false);
        assert_eq!(nested["properties"]["count"]["default"], 0);
        assert!(spec.get("$defs").is_none(), "{spec}");
        assert_eq!(
            spec["properties"]["way"],
            json!({"type": "string", "enum": ["up", "down"], "default": "up",
                   "description": "Which way. `up`: Up it goes.; `down`: Down."})
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_secret_is_marked_on_its_property() {
        let spec = config_spec::<Config>();
        assert_eq!(
            spec["properties"]["token"],
            json!({"type": "string", "secret": true, "description": "The token."})
        );
        assert_eq!(spec["required"], json!(["token"]));
        assert_eq!(spec_drift::<Config>(&json!({"token": "t"})), Ok(()));
    }

    #[test]
    fn drift_is_found() {
        /// `page_size`'s spec default is not serde's.
        #[allow(dead_code)]
        #[derive(Debug, Deserialize, JsonSchema)]
        struct Drifted {
            #[serde(default = "default_page_size")]
            #[schemars(extend("default" = 10))]
            page_size: u32,
        }
        let problems = spec_drift::<Drifted>(&json!({})).expect_err("drift");
        assert!(
            problems.iter().any(|p| p.contains("`page_size`")),
            "{problems:?}"
        );
    }

    /// The schema of `reconcile_every` accepts exactly what the config parser does.
    #[cfg(feature = "testkit")]
    #[test]
    fn reconcile_every_pattern_matches_its_parser() {
        use crate::toolkit::ReconcileEvery;
        #[derive(Deserialize, JsonSchema)]
        struct R {
            #[allow(dead_code)]
            every: ReconcileEvery,
        }
        let spec = config_spec::<R>();
        let validator = jsonschema::validator_for(&spec).expect("compiles");
        for text in [
            "always", "never", "0", "0s", "24h", " 30 m ", "7d", "weekly", "24", "h", "1w", "",
        ] {
            let config = json!({ "every": text });
            assert_eq!(
                validator.is_valid(&config),
                ReconcileEvery::parse(text).is_ok(),
                "{text:?}"
            );
        }
    }
}
