//! The invariants, one module per concern. Each function looks at what the connector
//! returned or emitted (already recorded by the suite) and returns one [`CheckResult`];
//! none of them calls the connector.
//!
//! | name | invariant |
//! |---|---|
//! | `spec.valid_schema` | `spec` is a valid JSON Schema of an object |
//! | `spec.config_validates` | the config under test validates against it |
//! | `check.accepts_config` | `check` passes with that config |
//! | `check.rejects_bad_credentials` | with wrong secrets, `check` fails with a `config` or `auth` error |
//! | `discover.catalog` | every stream has a schema, a key in it, and a cursor in it when incremental |
//! | `read.completes` | a full read returns without error, every stream complete |
//! | `read.records_match_schema` | every record validates against its stream's schema |
//! | `read.records_carry_key` | every record holds its key fields, and its key text matches them |
//! | `read.state_after_records` | no checkpoint before the stream's records, none naming a record not yet sent |
//! | `read.resume` | a read resumed from a limited read's state has no gap and no duplicate |
//! | `read.limit` | a read with a record limit emits at most that many records per stream |
//! | `read.window` | a read with a start date emits only records of the full read, none before it |
//! | `read.cancel` | a cancelled read returns within the grace period |
//! | `boundary.no_panic` | no call ended in a panic |
//! | `secrets.not_in_output` | no secret config value in records, state, logs, errors or the catalog |

pub mod catalog;
pub mod leaks;
pub mod ordering;
pub mod records;
pub mod resume;
pub mod spec;
pub mod window;

use super::report::CheckResult;

/// `spec.valid_schema`
pub const SPEC_SCHEMA: &str = "spec.valid_schema";
/// `spec.config_validates`
pub const SPEC_CONFIG: &str = "spec.config_validates";
/// `check.accepts_config`
pub const CHECK_ACCEPTS: &str = "check.accepts_config";
/// `check.rejects_bad_credentials`
pub const CHECK_REJECTS: &str = "check.rejects_bad_credentials";
/// `discover.catalog`
pub const DISCOVER_CATALOG: &str = "discover.catalog";
/// `read.completes`
pub const READ_COMPLETES: &str = "read.completes";
/// `read.records_match_schema`
pub const READ_SCHEMA: &str = "read.records_match_schema";
/// `read.records_carry_key`
pub const READ_KEY: &str = "read.records_carry_key";
/// `read.state_after_records`
pub const READ_ORDER: &str = "read.state_after_records";
/// `read.resume`
pub const READ_RESUME: &str = "read.resume";
/// `read.limit`
pub const READ_LIMIT: &str = "read.limit";
/// `read.window`
pub const READ_WINDOW: &str = "read.window";
/// `read.cancel`
pub const READ_CANCEL: &str = "read.cancel";
/// `boundary.no_panic`
pub const NO_PANIC: &str = "boundary.no_panic";
/// `secrets.not_in_output`
pub const NO_SECRETS: &str = "secrets.not_in_output";

/// At most this many violations are quoted in a reason; the rest are counted.
const QUOTED: usize = 3;

/// A pass, or a fail quoting the first few `problems` and counting the rest.
fn verdict(name: &'static str, problems: Vec<String>, passed: impl Into<String>) -> CheckResult {
    if problems.is_empty() {
        return CheckResult::pass(name, passed);
    }
    let mut reason = problems
        .iter()
        .take(QUOTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > QUOTED {
        reason.push_str(&format!(" (and {} more)", problems.len() - QUOTED));
    }
    CheckResult::fail(name, reason)
}
