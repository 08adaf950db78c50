//! Resolves a parsed manifest plus command-line overrides into a runnable plan: plugins
//! found, dates parsed, windows merged, secrets resolved. Every problem is collected and
//! reported together, before anything is written.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use tributary_sdk::host::Plugin;
use tributary_sdk::Window;

use crate::credentials::Credentials;
use crate::loader::{self, Registry};
use crate::manifest::{self, Manifest, SourceSection};

/// Options from the command line that narrow or override the manifest.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Only these sources (enabled or not).
    pub sources: Vec<String>,
    /// Only these streams (`stream` or `source.stream`).
    pub streams: Vec<String>,
    /// Start of the window.
    pub since: Option<String>,
    /// End of the window.
    pub until: Option<String>,
    /// Record limit per stream.
    pub limit: Option<u64>,
    /// Client filter.
    pub clients: Vec<String>,
}

/// One source ready to run.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// Name in the manifest.
    pub name: String,
    /// The loaded plugin.
    pub plugin: Plugin,
    /// Config for the plugin (manifest config with stored credentials merged over it).
    pub config: serde_json::Value,
    /// Streams the manifest (and `--stream`) select; `None` = all.
    pub streams: Option<Vec<String>>,
    /// Date range, limit, clients.
    pub window: Window,
}

/// Everything a command needs.
#[derive(Debug)]
pub struct Plan {
    /// Selected sources, in manifest order.
    pub sources: Vec<SourcePlan>,
    /// Destination kind.
    pub destination_kind: String,
    /// Destination path (resolved).
    pub destination_path: PathBuf,
    /// Credentials store.
    pub credentials_path: PathBuf,
    /// Sources synced at once.
    pub parallelism: usize,
}

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub fn parse_date(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("`{s}` is not a date (expected YYYY-MM-DD or RFC 3339)"))
}

/// `toml::Value` → `serde_json::Value` (datetimes become strings).
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn validate_interval(s: &str) -> Result<(), String> {
    let secs = s
        .trim()
        .strip_suffix('s')
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("interval `{s}` is not a duration like \"30s\""))?;
    if !(1..=60).contains(&secs) {
        return Err(format!("interval `{s}` must be between 1s and 60s"));
    }
    Ok(())
}

/// Resolves which plugin a source uses: a pinned path, or by name from the registry.
fn resolve_plugin(
    manifest_dir: &Path,
    name: &str,
    section: &SourceSection,
    registry: &Registry,
    plugin_dir: &Path,
) -> Result<Plugin, String> {
    if let Some(path) = &section.plugin_path {
        let path = manifest::resolve_path(manifest_dir, path);
        return loader::load_pinned(&path, section.sha256.as_deref(), &section.plugin)
            .map_err(|e| format!("source `{name}`: {e}"));
    }
    if let Some(p) = registry.plugins.get(&section.plugin) {
        return Ok(p.clone());
    }
    let available: Vec<&str> = registry.plugins.keys().map(String::as_str).collect();
    Err(format!(
        "source `{name}`: unknown plugin `{}` (plugins found in {}: {})",
        section.plugin,
        plugin_dir.display(),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    ))
}

/// Builds the plan. `registry` must come from the manifest's plugin directory.
pub fn build(
    manifest: &Manifest,
    manifest_dir: &Path,
    registry: &Registry,
    overrides: &Overrides,
) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let plugin_dir = manifest::resolve_path(manifest_dir, &manifest.host.plugin_dir);
    let credentials_path = manifest::resolve_path(manifest_dir, &manifest.host.credentials);
    let credentials = Credentials::new(credentials_path.clone());

    if !matches!(manifest.destination.kind.as_str(), "sqlite" | "jsonl") {
        errors.push(format!(
            "[destination] kind: unknown destination `{}` (expected `sqlite` or `jsonl`)",
            manifest.destination.kind
        ));
    }
    if manifest.host.parallelism == Some(0) {
        errors.push("[host] parallelism must be at least 1".to_string());
    }
    for name in &overrides.sources {
        if !manifest.sources.contains_key(name) {
            errors.push(format!(
                "--source {name}: no such source in the manifest (sources: {})",
                manifest
                    .sources
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    let parse_opt = |what: &str, v: &Option<String>, errors: &mut Vec<String>| {
        v.as_deref().and_then(|s| match parse_date(s) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{what}: {e}"));
                None
            }
        })
    };
    let cli_start = parse_opt("--since", &overrides.since, &mut errors);
    let cli_end = parse_opt("--until", &overrides.until, &mut errors);
    let def_start = parse_opt(
        "[defaults] start_date",
        &manifest.defaults.start_date,
        &mut errors,
    );
    let def_end = parse_opt(
        "[defaults] end_date",
        &manifest.defaults.end_date,
        &mut errors,
    );

    // (source, stream) → table must be injective: names that fold to the same table
    // prefix would silently share tables.
    let mut by_prefix: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for name in manifest.sources.keys() {
        if crate::destination::source_name_problem(name).is_none() {
            by_prefix
                .entry(crate::destination::table_prefix(name))
                .or_default()
                .push(name);
        }
    }
    for (prefix, names) in by_prefix.iter().filter(|(_, n)| n.len() > 1) {
        errors.push(format!(
            "sources {} would write the same tables ({prefix}__<stream>): source names must differ in more than letter case or `-`/`_`",
            names
                .iter()
                .map(|n| format!("[sources.{n}]"))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }

    let mut sources = Vec::new();
    for (name, section) in &manifest.sources {
        if let Some(problem) = crate::destination::source_name_problem(name) {
            errors.push(format!("[sources.{name}]: {problem}"));
            continue;
        }
        let selected = if overrides.sources.is_empty() {
            section.enabled
        } else {
            overrides.sources.contains(name)
        };
        if let Some(interval) = &section.interval {
            if let Err(e) = validate_interval(interval) {
                errors.push(format!("[sources.{name}] {e}"));
            }
        }
        if !selected {
            continue;
        }
        if let Some(problems) = manifest.env_errors.get(name) {
            errors.extend(problems.iter().cloned());
            continue;
        }
        let plugin = match resolve_plugin(manifest_dir, name, section, registry, &plugin_dir) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let src_start = parse_opt(
            &format!("[sources.{name}] start_date"),
            &section.start_date,
            &mut errors,
        );
        let src_end = parse_opt(
            &format!("[sources.{name}] end_date"),
            &section.end_date,
            &mut errors,
        );
        let start = cli_start.or(src_start).or(def_start);
        let end = cli_end.or(src_end).or(def_end);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                errors.push(format!(
                    "source `{name}`: end date {} is not after start date {}",
                    e.format("%Y-%m-%d %H:%M:%S"),
                    s.format("%Y-%m-%d %H:%M:%S")
                ));
            }
        }
        let limit = overrides
            .limit
            .or(section.limit)
            .or(manifest.defaults.limit);
        if limit == Some(0) {
            errors.push(format!("source `{name}`: limit must be at least 1"));
        }
        let clients = if overrides.clients.is_empty() {
            section.clients.clone().unwrap_or_default()
        } else {
            overrides.clients.clone()
        };

        let mut streams = section.streams.clone();
        if !overrides.streams.is_empty() {
            let wanted: Vec<String> = overrides
                .streams
                .iter()
                .filter_map(|s| match s.split_once('.') {
                    Some((src, stream)) if src == name => Some(stream.to_string()),
                    Some(_) => None,
                    None => Some(s.clone()),
                })
                .collect();
            streams = Some(match streams {
                Some(listed) => listed.into_iter().filter(|s| wanted.contains(s)).collect(),
                None => wanted,
            });
        }

        let mut config = toml_to_json(&toml::Value::Table(section.config.clone()));
        match credentials.get(name) {
            Ok(stored) => {
                if let serde_json::Value::Object(map) = &mut config {
                    for (k, v) in stored {
                        map.insert(k, serde_json::Value::String(v));
                    }
                }
            }
            Err(e) => errors.push(format!("source `{name}`: {e}")),
        }

        sources.push(SourcePlan {
            name: name.clone(),
            plugin,
            config,
            streams,
            window: Window {
                start,
                end,
                limit,
                clients,
            },
        });
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let parallelism = manifest.host.parallelism.unwrap_or(sources.len()).max(1);
    Ok(Plan {
        sources,
        destination_kind: manifest.destination.kind.clone(),
        destination_path: manifest::resolve_path(manifest_dir, &manifest.destination.path),
        credentials_path,
        parallelism,
    })
}
