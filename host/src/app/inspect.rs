//! `validate`, `plugins`, `spec`, `check` and `discover`: what a manifest and its plugins
//! say, without syncing anything.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use super::{build_plan, lock_credentials, only, scan, scan_with, services, usage, Loaded};
use crate::isolation::{self, IsolationMode, SourcePlugin};
use crate::loader::ScanMode;
use crate::plan::{Overrides, SourcePlan};
use crate::{runner, sandbox};
use tributary_sdk::host::HostHandler;

/// `validate`: resolves the manifest and its plugins without touching any source.
pub fn validate(loaded: &Loaded) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let plan = build_plan(loaded, &registry, &Overrides::default())?;
    println!(
        "{}: OK ({} source(s), {} enabled; destination {} at {})",
        loaded.path.display(),
        loaded.manifest.sources.len(),
        plan.sources.len(),
        plan.destination.kind(),
        plan.destination.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `plugins`: the plugins in the plugin directory, and why any was refused. Each library
/// is described by a plugin process, none is loaded into the host: listing a directory
/// must not run an untrusted library's load-time code here, and a library that crashes
/// while loading is listed as refused with the cause.
pub fn plugins(loaded: &Loaded) -> Result<ExitCode> {
    let program = std::env::current_exe()
        .map_err(|e| anyhow!("cannot find the tributary binary to describe plugins: {e}"))?;
    let mode = ScanMode::Describe {
        program,
        in_process: Default::default(),
    };
    let registry = scan_with(loaded, &mode, false)?;
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["name", "version", "sdk", "path", "compatible"]);
    for p in registry.plugins.values() {
        let info = p.info();
        table.add_row(vec![
            info.name.clone(),
            info.version.clone(),
            info.sdk_version.clone(),
            p.path().display().to_string(),
            "yes".to_string(),
        ]);
    }
    for (path, reason) in &registry.refused {
        let reason = reason
            .strip_prefix(&format!("{}: ", path.display()))
            .unwrap_or(reason)
            .to_string();
        table.add_row(vec![
            "?".into(),
            "?".into(),
            "?".into(),
            path.display().to_string(),
            format!("no: {reason}"),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// `spec`: the config schema of a source's plugin, or of a plugin by name. For an
/// isolated source it is what the plugin process said when it described the library: the
/// library is not loaded into the host.
pub fn spec(loaded: &Loaded, name: &str) -> Result<ExitCode> {
    let registry = scan(loaded, true)?;
    let source = loaded.manifest.sources.get(name);
    let plugin_name = source
        .map(|s| s.plugin.clone())
        .unwrap_or_else(|| name.to_string());
    let library = match registry.plugins.get(&plugin_name) {
        Some(library) => library,
        // An isolated source whose library crashed or hung while loading: say so.
        None => {
            let dir = super::plugin_dir(loaded)?;
            return Err(match registry.unavailable(&plugin_name, &dir) {
                Some(u) if source.is_some_and(|s| s.isolation == IsolationMode::Process) => {
                    anyhow!("source `{name}`: {}", u.cause)
                }
                _ => usage(format!("no source or plugin named `{name}`")),
            });
        }
    };
    let isolation = match source {
        Some(s) if s.isolation == IsolationMode::Process => {
            isolation::from_manifest(s.isolation, s.call_timeout_secs, s.memory_limit_mb)
                .map_err(|(key, e)| usage(format!("source `{name}`: {key}: {e}")))?
        }
        // A plugin by name runs where the scan put it: in the host only when an
        // in-process source uses it (or no source is isolated).
        _ if library.loaded().is_some() => isolation::Isolation::InProcess,
        _ => isolation::Isolation::process(Default::default()).map_err(|e| anyhow!(e))?,
    };
    let spec = SourcePlugin::new(library.clone(), isolation)
        .spec()
        .map_err(|e| anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&spec)?);
    Ok(ExitCode::SUCCESS)
}

/// `check`: connects and authenticates every selected source (exit 1 if one fails).
pub fn check(
    loaded: &Loaded,
    source: Option<&String>,
    cancel: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let ok = each_source(loaded, source, cancel, |s, handler| {
        match s.plugin.check(&s.config, handler) {
            Ok(()) => println!("{}: OK", s.name),
            Err(e) => {
                println!("{}: FAILED ({}): {}", s.name, e.kind, e.message);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(exit_code(ok))
}

/// `discover`: the catalog of every selected source, as JSON.
pub fn discover(
    loaded: &Loaded,
    source: Option<&String>,
    cancel: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let mut out = serde_json::Map::new();
    let ok = each_source(loaded, source, cancel, |s, handler| {
        match s.plugin.discover(&s.config, handler) {
            Ok(catalog) => out.insert(s.name.clone(), serde_json::to_value(&catalog)?),
            Err(e) => {
                eprintln!("{}: FAILED ({}): {}", s.name, e.kind, e.message);
                return Ok(false);
            }
        };
        Ok(true)
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit_code(ok))
}

/// Calls `call` for every selected source with its handler, credentials locked and
/// sandboxes up; whether every call said it succeeded.
fn each_source(
    loaded: &Loaded,
    source: Option<&String>,
    cancel: Arc<AtomicBool>,
    mut call: impl FnMut(&SourcePlan, Arc<dyn HostHandler>) -> Result<bool>,
) -> Result<bool> {
    let registry = scan(loaded, true)?;
    let mut plan = build_plan(loaded, &registry, &only(source))?;
    let _locks = lock_credentials(&plan, false)?;
    let _sandboxes = sandbox::start(&mut plan)?;
    let services = services(&plan, cancel);
    let mut ok = true;
    for s in &plan.sources {
        ok &= call(s, runner::control_handler(&s.name, &services))?;
    }
    Ok(ok)
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
