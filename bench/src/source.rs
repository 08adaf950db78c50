//! The source of the 1M-row benchmarks that read the internal database, included by
//! those binaries only (`#[path]`): linking the internal-db plugin into the bench library
//! would put two plugins' exported symbols into the SaaS benchmarks.

use std::path::Path;

use anyhow::Result;

/// Writes a fresh SQLite sample database at `db` holding about `rows` `service_history`
/// rows (and nothing else of size): the source of the 1M-row benchmarks. Returns the rows
/// written.
pub fn service_history_source(db: &Path, rows: u32) -> Result<u64> {
    use anyhow::Context;
    use tributary_internal_db::sample::{self, SampleSpec};
    let per_client = 500;
    let spec = SampleSpec {
        service_history_per_client: per_client,
        satisfaction_scores_per_client: 0,
        communication_engagement_per_client: 0,
        contracts_per_client: 0,
        ..SampleSpec::with_clients(rows.div_ceil(per_client), 42)
    };
    let _ = std::fs::remove_file(db);
    let counts = tokio::runtime::Runtime::new()?
        .block_on(sample::generate(&format!("sqlite:{}", db.display()), &spec))
        .context("generating sample data")?;
    Ok(counts.get("service_history").copied().unwrap_or(0) as u64)
}
