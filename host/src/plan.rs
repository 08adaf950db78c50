//! Resolves a parsed manifest plus command-line overrides into a runnable plan: plugins
//! found, dates parsed, windows merged, secrets resolved. Every problem is collected and
//! reported together, before anything is written.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use tributary_sdk::Window;

use crate::credentials::Credentials;
use crate::isolation::{self, Isolation, IsolationMode, SourcePlugin};
use crate::loader::{self, Library, Registry, ScanMode};
use crate::manifest::{self, toml_to_json, Manifest, SourceSection};

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
    /// The loaded plugin, run in process or in a plugin process (`isolation`).
    pub plugin: SourcePlugin,
    /// Config for the plugin (manifest config with stored credentials merged over it).
    pub config: serde_json::Value,
    /// Streams the manifest (and `--stream`) select; `None` = all.
    pub streams: Option<Vec<String>>,
    /// Date range, limit, clients.
    pub window: Window,
    /// Served by the sandbox (`endpoint = "sandbox"` while the manifest has `[sandbox]`):
    /// its connection settings come from the emulator when the run starts.
    pub sandboxed: bool,
}

/// `[sandbox]`, resolved.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    /// Seed of the sample MSP.
    pub seed: u64,
    /// Clients of the sample MSP.
    pub clients: u32,
    /// The `tributary-sandbox` program.
    pub program: PathBuf,
    /// Added to every answer of the emulators.
    pub latency_ms: u64,
    /// The emulators change their data this often (milliseconds), for live demos.
    pub mutate_every_ms: Option<u64>,
}

/// Everything a command needs.
#[derive(Debug)]
pub struct Plan {
    /// Selected sources, in manifest order.
    pub sources: Vec<SourcePlan>,
    /// Where records land.
    pub destination: DestinationPlan,
    /// Credentials store.
    pub credentials_path: PathBuf,
    /// Sources synced at once.
    pub parallelism: usize,
    /// The sandbox, when a selected source uses it.
    pub sandbox: Option<SandboxPlan>,
}

/// `[destination]`, resolved.
#[derive(Clone)]
pub enum DestinationPlan {
    /// The SQLite warehouse file.
    Sqlite {
        /// The file (resolved).
        path: PathBuf,
    },
    /// A directory of JSONL files.
    Jsonl {
        /// The directory (resolved).
        path: PathBuf,
    },
    /// A schema in a PostgreSQL database.
    Postgres {
        /// Connection URL: a secret (it may hold a password), never printed.
        url: String,
        /// The schema holding the tables.
        schema: String,
    },
}

impl DestinationPlan {
    /// `sqlite`, `jsonl` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationPlan::Sqlite { .. } => "sqlite",
            DestinationPlan::Jsonl { .. } => "jsonl",
            DestinationPlan::Postgres { .. } => "postgres",
        }
    }

    /// For messages: the path, or server, database and schema without the credentials.
    pub fn describe(&self) -> String {
        match self {
            DestinationPlan::Sqlite { path } | DestinationPlan::Jsonl { path } => {
                path.display().to_string()
            }
            DestinationPlan::Postgres { url, schema } => {
                crate::destination::postgres_address(url, schema)
            }
        }
    }
}

// By hand: the URL may carry a password.
impl std::fmt::Debug for DestinationPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.describe())
    }
}

/// Why `schema` cannot name the PostgreSQL schema, if it cannot. Plain lower-case
/// identifiers only, so the name is the same quoted or not and never needs escaping.
pub fn schema_name_problem(schema: &str) -> Option<&'static str> {
    let ok = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_");
    (!ok).then_some(
        "a schema name is lower-case letters, digits and `_`, starts with a letter or `_`, is at most 63 bytes and does not start with `pg_`",
    )
}

/// Resolves `[destination]` alone (for commands that need no source).
pub fn resolve_destination(
    manifest: &Manifest,
    manifest_dir: &Path,
) -> Result<DestinationPlan, Vec<String>> {
    let mut errors = Vec::new();
    match destination_plan(manifest, manifest_dir, &mut errors) {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => Err(errors),
    }
}

/// Resolves `[destination]`; each problem names its key.
fn destination_plan(
    manifest: &Manifest,
    manifest_dir: &Path,
    errors: &mut Vec<String>,
) -> Option<DestinationPlan> {
    let at = |path: &[&str]| manifest.positions.describe(path);
    let section = &manifest.destination;
    let kind = section.kind.as_str();
    let mut misplaced = |key: &str, set: bool, for_kinds: &str| {
        if set {
            errors.push(format!(
                "{}: `{key}` is for {for_kinds} destinations, not `{kind}`",
                at(&["destination", key])
            ));
        }
    };
    match kind {
        "sqlite" | "jsonl" => {
            misplaced("url", section.url.is_some(), "`postgres`");
            misplaced("schema", section.schema.is_some(), "`postgres`");
            let path = match (&section.path, kind) {
                (Some(p), _) => p.as_str(),
                (None, "sqlite") => manifest::DEFAULT_DESTINATION_PATH,
                (None, _) => {
                    errors.push(format!(
                        "{}: a `jsonl` destination needs `path` (the directory of its files)",
                        at(&["destination"])
                    ));
                    return None;
                }
            };
            let path = manifest::resolve_path(manifest_dir, path);
            Some(if kind == "sqlite" {
                DestinationPlan::Sqlite { path }
            } else {
                DestinationPlan::Jsonl { path }
            })
        }
        "postgres" => {
            misplaced("path", section.path.is_some(), "`sqlite` and `jsonl`");
            let schema = section.schema.clone().unwrap_or_else(|| "public".into());
            if let Some(problem) = schema_name_problem(&schema) {
                errors.push(format!("{}: {problem}", at(&["destination", "schema"])));
            }
            // Never the value in a message: it may hold a password.
            match section.url.as_deref().map(str::trim) {
                None => errors.push(format!(
                    "{}: a `postgres` destination needs `url`, e.g. url = \"${{WAREHOUSE_URL}}\"",
                    at(&["destination"])
                )),
                Some("") => errors.push(format!(
                    "{}: the URL is empty (is its environment variable set to nothing?)",
                    at(&["destination", "url"])
                )),
                Some(url) => {
                    if let Err(e) = crate::destination::postgres_url_problem(url) {
                        errors.push(format!("{}: {e}", at(&["destination", "url"])));
                    } else if schema_name_problem(&schema).is_none() {
                        return Some(DestinationPlan::Postgres {
                            url: url.to_string(),
                            schema,
                        });
                    }
                }
            }
            None
        }
        other => {
            errors.push(format!(
                "{}: unknown destination `{other}` (expected `sqlite`, `jsonl` or `postgres`)",
                at(&["destination", "kind"])
            ));
            None
        }
    }
}

/// Where `tributary-sandbox` is: the manifest's `program`, else beside this executable,
/// else in the plugin directory (where `cargo build --release` puts both).
fn sandbox_program(
    manifest_dir: &Path,
    configured: Option<&str>,
    plugin_dir: &Path,
) -> Result<PathBuf, String> {
    if let Some(p) = configured {
        let path = manifest::resolve_path(manifest_dir, p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("program {} does not exist", path.display()))
        };
    }
    let name = format!("tributary-sandbox{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(&name)));
    beside
        .into_iter()
        .chain(std::iter::once(plugin_dir.join(&name)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} is neither beside tributary nor in {}; build it with `cargo build --release`",
                plugin_dir.display()
            )
        })
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

fn validate_interval(s: &str) -> Result<(), String> {
    parse_interval(s).map(|_| ())
}

/// A source's `interval` for `watch`: `"<n>s"`, 1–60 seconds.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let secs = s
        .trim()
        .strip_suffix('s')
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("interval `{s}` is not a duration like \"30s\""))?;
    if !(1..=60).contains(&secs) {
        return Err(format!("interval `{s}` must be between 1s and 60s"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// A duration like `"90s"`, `"5m"` or `"1h"`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like \"90s\", \"5m\" or \"1h\""))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "`{s}` is not a duration like \"90s\", \"5m\" or \"1h\""
            ))
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// How to scan the manifest's plugin directory: every library loaded into the host when
/// no source is isolated; otherwise each described by a plugin process, and only the
/// plugins of in-process sources loaded into the host (any library may be the untrusted
/// one, and loading it would run its load-time code in the host).
pub fn scan_mode(manifest: &Manifest) -> Result<ScanMode, String> {
    if manifest
        .sources
        .values()
        .all(|s| s.isolation == IsolationMode::InProcess)
    {
        return Ok(ScanMode::LoadAll);
    }
    let program = std::env::current_exe()
        .map_err(|e| format!("cannot find the tributary binary to describe plugins: {e}"))?;
    let in_process = manifest
        .sources
        .values()
        .filter(|s| s.isolation == IsolationMode::InProcess)
        .map(|s| s.plugin.clone())
        .collect();
    Ok(ScanMode::Describe {
        program,
        in_process,
    })
}

/// Resolves which plugin a source uses: a pinned path, or by name from the registry.
fn resolve_plugin(
    manifest_dir: &Path,
    name: &str,
    section: &SourceSection,
    isolation: &Isolation,
    registry: &Registry,
    plugin_dir: &Path,
) -> Result<Library, String> {
    let describe_with = match isolation {
        Isolation::Process { program, .. } => Some(program.as_path()),
        Isolation::InProcess => None,
    };
    if let Some(path) = &section.plugin_path {
        let path = manifest::resolve_path(manifest_dir, path);
        return loader::load_pinned(
            &path,
            section.sha256.as_deref(),
            &section.plugin,
            describe_with,
        )
        .map_err(|e| format!("source `{name}`: {e}"));
    }
    match (registry.plugins.get(&section.plugin), describe_with) {
        (Some(Library::Loaded(p)), _) => return Ok(Library::Loaded(p.clone())),
        (Some(library), Some(_)) => return Ok(library.clone()),
        (Some(_), None) => {
            return Err(format!(
                "source `{name}`: plugin `{}` was not loaded into the host (internal error: the scan described it only)",
                section.plugin
            ))
        }
        // Perhaps the library that crashed while loading: fail this source, not the run.
        (None, Some(_)) => {
            if let Some(unavailable) = registry.unavailable(&section.plugin, plugin_dir) {
                return Ok(Library::Unavailable(std::sync::Arc::new(unavailable)));
            }
        }
        (None, None) => {}
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
    // Where a manifest key is written, as a message prefix: file, line, column, key.
    let at = |path: &[&str]| manifest.positions.describe(path);
    let plugin_dir = manifest::resolve_path(manifest_dir, &manifest.host.plugin_dir);
    let credentials_path = manifest::resolve_path(manifest_dir, &manifest.host.credentials);
    let credentials = Credentials::new(credentials_path.clone());

    let destination = destination_plan(manifest, manifest_dir, &mut errors);
    if manifest.host.parallelism == Some(0) {
        errors.push(format!(
            "{}: must be at least 1",
            at(&["host", "parallelism"])
        ));
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

    let parse_opt = |what: String, v: &Option<String>, errors: &mut Vec<String>| {
        v.as_deref().and_then(|s| match parse_date(s) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{what}: {e}"));
                None
            }
        })
    };
    let cli_start = parse_opt("--since".into(), &overrides.since, &mut errors);
    let cli_end = parse_opt("--until".into(), &overrides.until, &mut errors);
    let def_start = parse_opt(
        at(&["defaults", "start_date"]),
        &manifest.defaults.start_date,
        &mut errors,
    );
    let def_end = parse_opt(
        at(&["defaults", "end_date"]),
        &manifest.defaults.end_date,
        &mut errors,
    );
    if overrides.limit == Some(0) {
        errors.push("--limit: must be at least 1".to_string());
    }
    if let (Some(s), Some(e)) = (cli_start, cli_end) {
        if e <= s {
            errors.push(format!(
                "--since/--until: --until {} is not after --since {}",
                e.format("%Y-%m-%d %H:%M:%S"),
                s.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }

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
            "{}: sources {} would write the same tables ({prefix}__<stream>): source names must differ in more than letter case or `-`/`_`",
            at(&["sources", names[1]]),
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
            errors.push(format!(
                "{}: [sources.{name}]: {problem}",
                at(&["sources", name])
            ));
            continue;
        }
        let selected = if overrides.sources.is_empty() {
            section.enabled
        } else {
            overrides.sources.contains(name)
        };
        if let Some(interval) = &section.interval {
            if let Err(e) = validate_interval(interval) {
                errors.push(format!("{}: {e}", at(&["sources", name, "interval"])));
            }
        }
        let sandboxed = match section.endpoint.as_deref() {
            None => false,
            Some("sandbox") => manifest.sandbox.is_some(),
            Some(other) => {
                errors.push(format!(
                    "{}: unknown endpoint `{other}` (expected `sandbox`, or no endpoint)",
                    at(&["sources", name, "endpoint"])
                ));
                false
            }
        };
        if !selected {
            continue;
        }
        // The sandbox supplies the connection settings, so the live ones may be unset.
        if let (Some(problems), false) = (manifest.env_errors.get(name), sandboxed) {
            errors.extend(problems.iter().cloned());
            continue;
        }
        let isolation = match isolation::from_manifest(
            section.isolation,
            section.call_timeout_secs,
            section.memory_limit_mb,
        ) {
            Ok(isolation) => isolation,
            Err((key, e)) => {
                errors.push(format!("{}: {e}", at(&["sources", name, key])));
                continue;
            }
        };
        let plugin = match resolve_plugin(
            manifest_dir,
            name,
            section,
            &isolation,
            registry,
            &plugin_dir,
        ) {
            Ok(library) => SourcePlugin::new(library, isolation),
            Err(e) => {
                let key = if section.plugin_path.is_some() {
                    "plugin_path"
                } else {
                    "plugin"
                };
                errors.push(format!("{}: {e}", at(&["sources", name, key])));
                continue;
            }
        };
        let src_start = parse_opt(
            at(&["sources", name, "start_date"]),
            &section.start_date,
            &mut errors,
        );
        let src_end = parse_opt(
            at(&["sources", name, "end_date"]),
            &section.end_date,
            &mut errors,
        );
        let start = cli_start.or(src_start).or(def_start);
        let end = cli_end.or(src_end).or(def_end);
        // Both from the command line was reported once, above.
        let origin = |cli: bool, key: &str, defaults: bool| -> String {
            if cli {
                if key == "start_date" {
                    "--since".into()
                } else {
                    "--until".into()
                }
            } else if defaults {
                format!("[defaults] {key}")
            } else {
                format!("[sources.{name}] {key}")
            }
        };
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s && !(cli_start.is_some() && cli_end.is_some()) {
                let start_from = origin(cli_start.is_some(), "start_date", src_start.is_none());
                let end_from = origin(cli_end.is_some(), "end_date", src_end.is_none());
                let key = if src_end.is_some() {
                    "end_date"
                } else {
                    "start_date"
                };
                errors.push(format!(
                    "{}: source `{name}`: end {} ({end_from}) is not after start {} ({start_from})",
                    at(&["sources", name, key]),
                    e.format("%Y-%m-%d %H:%M:%S"),
                    s.format("%Y-%m-%d %H:%M:%S")
                ));
            }
        }
        let limit = overrides
            .limit
            .or(section.limit)
            .or(manifest.defaults.limit);
        if limit == Some(0) && overrides.limit.is_none() {
            let path: &[&str] = if section.limit.is_some() {
                &["sources", name, "limit"]
            } else {
                &["defaults", "limit"]
            };
            errors.push(format!("{}: must be at least 1", at(path)));
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
        // Stored credentials belong to the live service; a sandbox starts afresh each run.
        match credentials.get(name) {
            Ok(_) if sandboxed => {}
            Ok(stored) => {
                if let serde_json::Value::Object(map) = &mut config {
                    for (k, v) in stored {
                        map.insert(k, serde_json::Value::String(v));
                    }
                }
            }
            Err(e) => errors.push(format!("source `{name}`: {e}")),
        }
        // The plugin's config against the plugin's own schema, before anything runs. An
        // unavailable plugin has none: the source fails when it runs, with the cause.
        let spec = match plugin.library() {
            Library::Unavailable(_) => Ok(serde_json::json!({})),
            _ => plugin.spec(),
        };
        match spec {
            Ok(spec) => match crate::validation::problems(&spec, &config) {
                Ok(found) => {
                    errors.extend(found.into_iter().filter(|p| !(sandboxed && p.missing)).map(
                        |p| {
                            let mut path = vec!["sources", name.as_str(), "config"];
                            path.extend(p.path.iter().map(String::as_str));
                            format!("{}: {}", at(&path), p.message)
                        },
                    ))
                }
                Err(e) => errors.push(format!(
                    "source `{name}`: plugin {} has a config schema that does not compile: {e}",
                    plugin.info().name
                )),
            },
            Err(e) => errors.push(format!(
                "source `{name}`: plugin {} cannot describe its config: {e}",
                plugin.info().name
            )),
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
            sandboxed,
        });
    }

    let sandbox = match &manifest.sandbox {
        Some(section) if sources.iter().any(|s| s.sandboxed) => {
            match sandbox_program(manifest_dir, section.program.as_deref(), &plugin_dir) {
                Ok(program) => Some(SandboxPlan {
                    seed: section.seed,
                    clients: section.clients,
                    program,
                    latency_ms: section.latency_ms,
                    mutate_every_ms: section.mutate_every_ms,
                }),
                Err(e) => {
                    errors.push(format!("{}: {e}", at(&["sandbox"])));
                    None
                }
            }
        }
        _ => None,
    };

    let Some(destination) = destination.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let parallelism = manifest.host.parallelism.unwrap_or(sources.len()).max(1);
    Ok(Plan {
        sources,
        destination,
        credentials_path,
        parallelism,
        sandbox,
    })
}
