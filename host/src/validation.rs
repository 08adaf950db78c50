//! Checks a JSON value against a JSON Schema and reports every problem with the key path
//! it concerns. Messages never quote the offending value: in a plugin's config it may be
//! a secret.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::ValidationError;
use serde_json::Value;

/// One problem: where (a key path from the instance's root) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Keys (and array indexes) from the root to the key concerned.
    pub path: Vec<String>,
    /// What is wrong, without the value.
    pub message: String,
    /// The problem is a required key that is missing.
    pub missing: bool,
}

/// Every way `instance` fails `schema`. `Err` when the schema itself does not compile
/// (a plugin bug, reported as such).
pub fn problems(schema: &Value, instance: &Value) -> Result<Vec<Problem>, String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for error in validator.iter_errors(instance) {
        collect(schema, &error, &mut out);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
    out.dedup();
    Ok(out)
}

fn path_of(error: &ValidationError<'_>) -> Vec<String> {
    error
        .instance_path()
        .segments()
        .map(|s| match s {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

fn collect(schema: &Value, error: &ValidationError<'_>, out: &mut Vec<Problem>) {
    let path = path_of(error);
    let message = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let allowed = allowed_keys(schema, error.schema_path().as_str());
            for key in unexpected {
                let mut at = path.clone();
                at.push(key.clone());
                out.push(Problem {
                    path: at,
                    message: unknown_key_message(key, &allowed),
                    missing: false,
                });
            }
            return;
        }
        // An `Option<T>` is "T or null": report what is wrong with the T branch.
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let relevant: Vec<&Vec<ValidationError<'static>>> = context
                .iter()
                .filter(|branch| !branch.iter().all(is_null_type_error))
                .collect();
            if relevant.len() == 1 {
                for e in relevant[0] {
                    collect(schema, e, out);
                }
                return;
            }
            "does not match any of the allowed forms".to_string()
        }
        ValidationErrorKind::Required { property } => {
            let mut at = path.clone();
            at.push(property.as_str().unwrap_or_default().to_string());
            out.push(Problem {
                path: at,
                message: "is required but missing".to_string(),
                missing: true,
            });
            return;
        }
        ValidationErrorKind::Type { kind } => format!("must be {}", type_names(kind)),
        ValidationErrorKind::Enum { options } => format!("must be one of {options}"),
        ValidationErrorKind::Constant { expected_value } => format!("must be {expected_value}"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be more than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters long")
        }
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        ValidationErrorKind::Format { format } => format!("must be a valid {format}"),
        ValidationErrorKind::UniqueItems => "must not repeat items".to_string(),
        other => format!("is not valid here ({})", other.keyword()),
    };
    out.push(Problem {
        path,
        message,
        missing: false,
    });
}

fn is_null_type_error(e: &ValidationError<'_>) -> bool {
    matches!(e.kind(), ValidationErrorKind::Type { kind: TypeKind::Single(t) } if t.to_string() == "null")
}

fn type_names(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set
            .into_iter()
            .map(|t| t.to_string())
            .filter(|t| t != "null")
            .collect(),
    };
    let names: Vec<String> = names
        .into_iter()
        .map(|n| match n.as_str() {
            "integer" => "an integer".to_string(),
            "object" => "a table".to_string(),
            "array" => "an array".to_string(),
            "string" => "a string".to_string(),
            "boolean" => "true or false".to_string(),
            "number" => "a number".to_string(),
            other => other.to_string(),
        })
        .collect();
    names.join(" or ")
}

/// The property names the object schema at `schema_path` (ending in
/// `/additionalProperties`) allows.
fn allowed_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    let mut keys: Vec<String> = schema
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn unknown_key_message(key: &str, allowed: &[String]) -> String {
    let close = allowed
        .iter()
        .map(|a| (strsim::damerau_levenshtein(key, a), a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a);
    match (close, allowed.is_empty()) {
        (Some(c), _) => format!("unknown key; did you mean `{c}`?"),
        (None, false) => format!("unknown key (known keys: {})", allowed.join(", ")),
        (None, true) => "unknown key".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_with_its_path_and_no_values() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["url"],
            "properties": {
                "url": {"type": "string"},
                "pool_size": {"type": "integer", "minimum": 1},
                "nested": {"type": "object", "additionalProperties": false,
                           "properties": {"clients": {"type": "integer"}}}
            }
        });
        let got = problems(
            &schema,
            &json!({"poolsize": 3, "pool_size": 0, "nested": {"clients": "s3cret"}}),
        )
        .expect("schema compiles");
        let text: Vec<String> = got
            .iter()
            .map(|p| format!("{}: {}", p.path.join("."), p.message))
            .collect();
        assert_eq!(
            text,
            [
                "nested.clients: must be an integer",
                "pool_size: must be at least 1",
                "poolsize: unknown key; did you mean `pool_size`?",
                "url: is required but missing",
            ]
        );
        assert!(!text.concat().contains("s3cret"), "values never appear");
    }
}
