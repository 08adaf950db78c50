//! The outcome of a conformance run: one line per check, with the reason.

use serde::Serialize;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The invariant holds.
    Pass,
    /// The invariant is broken; the reason says where.
    Fail,
    /// The check could not apply (no secret field to blank, no stream to resume, ...).
    Skip,
}

impl Outcome {
    /// `pass`, `fail` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Stable name, e.g. `read.state_after_records` (see [`super::checks`]).
    pub name: &'static str,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// Why: what was verified, or the first violations found. Never a secret value.
    pub reason: String,
}

impl CheckResult {
    /// A passed check.
    pub fn pass(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Outcome::Pass, reason)
    }
    /// A failed check.
    pub fn fail(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Outcome::Fail, reason)
    }
    /// A check that did not apply.
    pub fn skip(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Outcome::Skip, reason)
    }
    fn new(name: &'static str, outcome: Outcome, reason: impl Into<String>) -> Self {
        CheckResult {
            name,
            outcome,
            reason: reason.into(),
        }
    }
}

/// Every check's result for one connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The connector's name.
    pub connector: String,
    /// Results in the order the checks ran.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Whether no check failed (skips do not fail a connector).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Fail)
    }

    /// The result of the check called `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Panics with every failure listed unless the connector passed; for `cargo test`.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            let lines: Vec<String> = self
                .failures()
                .map(|c| format!("  {}: {}", c.name, c.reason))
                .collect();
            panic!(
                "connector {} fails conformance:\n{}",
                self.connector,
                lines.join("\n")
            );
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "conformance of {}:", self.connector)?;
        for c in &self.checks {
            writeln!(f, "  {:<4} {:<32} {}", c.outcome.as_str(), c.name, c.reason)?;
        }
        Ok(())
    }
}
