//! What the benchmark binaries share: where the workspace is, building the release host
//! and plugins, running the real `tributary` binary, and reading a process's peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// Builds `packages` in release mode with the cargo that runs the benchmark, so that the
/// binary and `.so` files measured are the current code.
pub fn build_release(packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace()).args(["build", "--release"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if !cmd.status()?.success() {
        bail!("release build failed");
    }
    Ok(())
}

/// What one run of the release `tributary` binary printed and took.
pub struct TributaryRun {
    /// Wall time, seconds.
    pub secs: f64,
    /// Standard output (the summary table).
    pub stdout: String,
    /// The peak RSS the host printed (`"35.5 MiB"`), or `?`.
    pub rss: String,
}

/// Runs `target/release/tributary --manifest <manifest> run <args>` with warnings-only
/// logs; a failed run is an error carrying its output.
pub fn run_tributary(manifest: &Path, args: &[&str]) -> Result<TributaryRun> {
    let started = Instant::now();
    let output = Command::new(workspace().join("target/release/tributary"))
        .arg("--manifest")
        .arg(manifest)
        .arg("run")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "tributary failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let rss = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak memory (RSS): "))
        .unwrap_or("?")
        .to_string();
    Ok(TributaryRun { secs, stdout, rss })
}

/// This process's peak resident set size (`VmHWM`), in KiB; 0 where /proc cannot tell.
pub fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
