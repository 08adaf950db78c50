//! `spec.valid_schema` and `spec.config_validates`.

use serde_json::Value;

use super::{verdict, SPEC_CONFIG, SPEC_SCHEMA};
use crate::testkit::report::CheckResult;
use crate::testkit::secrets::Secrets;

/// The spec is a valid JSON Schema (against its meta-schema) describing an object.
pub fn valid_schema(spec: &Value) -> CheckResult {
    if let Err(e) = jsonschema::meta::validate(spec) {
        return CheckResult::fail(SPEC_SCHEMA, format!("not a valid JSON Schema: {e}"));
    }
    if spec.get("type").and_then(Value::as_str) != Some("object") {
        return CheckResult::fail(SPEC_SCHEMA, "the config schema's type is not \"object\"");
    }
    CheckResult::pass(SPEC_SCHEMA, "a valid JSON Schema of an object")
}

/// The config validates against the spec. Messages are redacted: a failing secret field
/// must not be quoted.
pub fn config_validates(spec: &Value, config: &Value, secrets: &Secrets) -> CheckResult {
    let validator = match jsonschema::validator_for(spec) {
        Ok(v) => v,
        Err(e) => return CheckResult::fail(SPEC_CONFIG, format!("spec does not compile: {e}")),
    };
    let problems = validator
        .iter_errors(config)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            secrets.redact(&format!("at {at}: {e}"))
        })
        .collect();
    verdict(
        SPEC_CONFIG,
        problems,
        "the config validates against the spec",
    )
}
