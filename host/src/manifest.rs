//! `connectors.toml`: the raw, serde-only shape of the manifest, and `${VAR}` interpolation.
//!
//! Parsing is strict: unknown keys are errors, and every error names the file, the line,
//! the column and the key. Resolving plugins, dates and paths happens in `plan.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

/// The manifest as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Host settings.
    #[serde(default)]
    pub host: HostSection,
    /// Where records land.
    #[serde(default)]
    pub destination: DestinationSection,
    /// Fallbacks for every source.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// Built-in emulators for sources marked `endpoint = "sandbox"`.
    #[serde(default)]
    pub sandbox: Option<SandboxSection>,
    /// Sources by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    /// `[clients."Name"] source = "id"`: who a client is in each source, for `--client`
    /// without an internal database (which is the directory otherwise).
    #[serde(default)]
    pub clients: BTreeMap<String, BTreeMap<String, String>>,
    /// Data quality: validation and the thresholds a run must meet.
    #[serde(default)]
    pub quality: QualitySection,
    /// `tributary watch`: its HTTP server, feed and retry settings.
    #[serde(default)]
    pub watch: WatchSection,
    /// Where `watch` publishes committed changes besides its WebSocket feed.
    #[serde(default)]
    pub sinks: SinksSection,
    /// Unset `${VAR}` references inside each source's section. Reported only when that
    /// source is selected, so a disabled source may name credentials nobody has yet.
    #[serde(skip)]
    pub env_errors: BTreeMap<String, Vec<String>>,
    /// Where each key is written, for messages about values found wrong later.
    #[serde(skip)]
    pub positions: Positions,
}

/// `[host]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Directory scanned for plugin libraries, relative to the manifest.
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: String,
    /// Sources synced at once (default: all selected).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Credentials store for rotated secrets, relative to the manifest.
    #[serde(default = "default_credentials")]
    pub credentials: String,
}

fn default_plugin_dir() -> String {
    "target/release".to_string()
}

fn default_credentials() -> String {
    "data/credentials.json".to_string()
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            plugin_dir: default_plugin_dir(),
            parallelism: None,
            credentials: default_credentials(),
        }
    }
}

/// `[destination]`.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    /// `sqlite`, `jsonl` or `postgres`.
    #[serde(default = "default_destination_kind")]
    pub kind: String,
    /// SQLite file, or the JSONL directory; relative to the manifest (default for
    /// `sqlite`: `data/warehouse.db`). Not for `postgres`.
    #[serde(default)]
    pub path: Option<String>,
    /// PostgreSQL URL (`postgres` only), normally `"${WAREHOUSE_URL}"`: a secret, never
    /// printed.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL schema of the tables (`postgres` only; default `public`, created if
    /// missing).
    #[serde(default)]
    pub schema: Option<String>,
}

fn default_destination_kind() -> String {
    "sqlite".to_string()
}

/// Where `kind = "sqlite"` writes when the manifest names no path.
pub const DEFAULT_DESTINATION_PATH: &str = "data/warehouse.db";

impl Default for DestinationSection {
    fn default() -> Self {
        DestinationSection {
            kind: default_destination_kind(),
            path: None,
            url: None,
            schema: None,
        }
    }
}

// By hand: the URL may carry a password.
impl std::fmt::Debug for DestinationSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationSection")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("schema", &self.schema)
            .finish()
    }
}

/// `[sandbox]`: while present, every source with `endpoint = "sandbox"` is served by a
/// local emulator (`tributary-sandbox`) filled with a sample MSP, credentials included;
/// remove it to go live with the same sources.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// Seed of the sample MSP: the same seed gives the same clients everywhere.
    #[serde(default = "default_sandbox_seed")]
    pub seed: u64,
    /// Clients of the sample MSP.
    #[serde(default = "default_sandbox_clients")]
    pub clients: u32,
    /// The `tributary-sandbox` program (default: beside `tributary`, else in `plugin_dir`).
    pub program: Option<String>,
    /// Milliseconds the emulators add to every answer, as a distant server would.
    #[serde(default)]
    pub latency_ms: u64,
    /// The SaaS emulators make a small change this often (milliseconds): live data for
    /// `tributary watch`. Off unless set.
    pub mutate_every_ms: Option<u64>,
}

fn default_sandbox_seed() -> u64 {
    42
}

fn default_sandbox_clients() -> u32 {
    200
}

/// `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// `YYYY-MM-DD` or RFC 3339.
    pub start_date: Option<String>,
    /// `YYYY-MM-DD` or RFC 3339 (exclusive).
    pub end_date: Option<String>,
    /// Records per stream per run.
    pub limit: Option<u64>,
}

/// `[watch]`: the long-running `tributary watch` (see docs/realtime.md).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// Address of the HTTP server (webhooks, `/events`, `/health`, `/metrics`, the status
    /// page), e.g. `"127.0.0.1:8787"`; absent: no server.
    pub listen: Option<String>,
    /// Bearer token subscribers of `/events` (and the status page) must present; normally
    /// `"${TRIBUTARY_EVENTS_TOKEN}"`. Required with `listen`.
    pub events_token: Option<String>,
    /// Polling interval of sources without their own `interval` (default `"10s"`).
    pub interval: Option<String>,
    /// Longest wait before retrying a failing source (default `"5m"`); waits double from
    /// the source's interval up to this.
    pub backoff_max: Option<String>,
    /// Failed cycles in a row after which `/health` answers 503 (default 3).
    pub health_failures: Option<u32>,
    /// Committed events kept for `/events?since=` replay (default 10,000).
    pub replay: Option<usize>,
    /// Events a subscriber may fall behind before it is dropped (default 4,096).
    pub subscriber_lag: Option<usize>,
    /// QuickBooks webhooks by source: `[watch.webhooks.<source>] verifier_token = "${..}"`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSection>,
}

/// `[watch.webhooks.<source>]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// The app's webhook verifier token (Intuit developer portal); a secret.
    pub verifier_token: String,
}

/// `[quality]`: every limit is off unless set; a run (or `tributary quality`) that breaks
/// one exits with code 3, naming the stream and the field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualitySection {
    /// Measure records during `run` (schema, completeness, duplicates, regressions).
    /// `false` skips the per-record work and the run's quality figures.
    #[serde(default = "default_true")]
    pub validate: bool,
    /// Least overall completeness of a stream (populated values / fields × records), 0–1.
    pub min_completeness: Option<f64>,
    /// Most records breaking the stream's schema.
    pub max_violations: Option<u64>,
    /// Most duplicate primary keys within a run.
    pub max_duplicates: Option<u64>,
    /// Most cursor regressions within a run.
    pub max_regressions: Option<u64>,
    /// Oldest acceptable newest cursor, in hours before now.
    pub max_freshness_hours: Option<f64>,
    /// Overrides per stream, keyed `"source.stream"`.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamQualitySection>,
}

impl Default for QualitySection {
    fn default() -> Self {
        QualitySection {
            validate: true,
            min_completeness: None,
            max_violations: None,
            max_duplicates: None,
            max_regressions: None,
            max_freshness_hours: None,
            streams: BTreeMap::new(),
        }
    }
}

/// `[quality.streams."source.stream"]`: limits of one stream, over `[quality]`'s.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamQualitySection {
    /// Overrides `[quality].min_completeness`.
    pub min_completeness: Option<f64>,
    /// Overrides `[quality].max_violations`.
    pub max_violations: Option<u64>,
    /// Overrides `[quality].max_duplicates`.
    pub max_duplicates: Option<u64>,
    /// Overrides `[quality].max_regressions`.
    pub max_regressions: Option<u64>,
    /// Overrides `[quality].max_freshness_hours`.
    pub max_freshness_hours: Option<f64>,
    /// Least completeness of single top-level fields, e.g. `{ email_domain = 1.0 }`.
    #[serde(default)]
    pub fields: BTreeMap<String, f64>,
}

/// `[sources.<name>]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Plugin name (as `tributary plugins` lists it).
    pub plugin: String,
    /// Pin the plugin to this library file instead of searching `plugin_dir`.
    pub plugin_path: Option<String>,
    /// Expected sha256 (hex) of the pinned library.
    pub sha256: Option<String>,
    /// Whether `run` includes this source by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `"sandbox"`: served by the built-in emulator while the manifest has `[sandbox]`.
    pub endpoint: Option<String>,
    /// Streams to read (default: all the plugin offers).
    pub streams: Option<Vec<String>>,
    /// Overrides `[defaults].start_date`.
    pub start_date: Option<String>,
    /// Overrides `[defaults].end_date`.
    pub end_date: Option<String>,
    /// Overrides `[defaults].limit`.
    pub limit: Option<u64>,
    /// Only these clients (ids in the source's id space).
    pub clients: Option<Vec<String>>,
    /// Polling interval for `watch`, e.g. `"30s"` (1–60 s).
    pub interval: Option<String>,
    /// `"in-process"` (default) or `"process"`: run the plugin in a child process, so
    /// that its crash, hang or memory blow-up fails this source only.
    #[serde(default)]
    pub isolation: crate::isolation::IsolationMode,
    /// With `isolation = "process"`: seconds a call may go without a message from the
    /// plugin before its process is killed (default 300).
    #[schemars(range(min = 1))]
    pub call_timeout_secs: Option<u64>,
    /// With `isolation = "process"`: address-space limit of the plugin process, in MiB
    /// (default: none).
    #[schemars(range(min = 1))]
    pub memory_limit_mb: Option<u64>,
    /// Passed to the plugin as its config (checked against the plugin's `spec()`).
    #[serde(default = "empty_table")]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: toml::Table,
}

fn default_true() -> bool {
    true
}

/// `[sinks]`: message systems `watch` publishes committed changes to, each acknowledging
/// a transaction's events before it commits.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinksSection {
    /// `[sinks.nats]`: a NATS JetStream stream.
    #[serde(default)]
    pub nats: Option<NatsSinkConfig>,
}

/// `[sinks.nats]`: publish every committed change to NATS JetStream, on subject
/// `<subject_prefix>.<source>.<stream>`, with its message id as `Nats-Msg-Id` so that
/// JetStream drops re-sends within `duplicate_window_secs`.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222` or `tls://nats.example.com:4222`; several
    /// separated by commas. May carry `user:password@`: a secret, never printed.
    pub url: String,
    /// JetStream stream the events are stored in.
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// First subject token(s); subjects are `<subject_prefix>.<source>.<stream>`.
    #[serde(default = "default_nats_subject_prefix")]
    pub subject_prefix: String,
    /// A `.creds` file (JWT and NKey seed), relative to the manifest. Not with `token` or
    /// `user`.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Authentication token, normally `"${NATS_TOKEN}"`: a secret, never printed.
    #[serde(default)]
    pub token: Option<String>,
    /// User name, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user`, normally `"${NATS_PASSWORD}"`: a secret, never printed.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds JetStream remembers a message id to drop a re-send of it (the stream's
    /// duplicate window). A crash and restart must fit in it for exactly-once delivery.
    #[serde(default = "default_nats_duplicate_window_secs")]
    #[schemars(range(min = 1))]
    pub duplicate_window_secs: u64,
    /// Create the stream when missing (subjects `<subject_prefix>.>`), and widen an
    /// existing one's subjects and duplicate window to fit; `false` only checks that it
    /// exists, for servers whose streams an administrator manages.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// Seconds a transaction's events may take to be acknowledged, all together, before
    /// the transaction fails and rolls back.
    #[serde(default = "default_nats_ack_timeout_secs")]
    #[schemars(range(min = 1))]
    pub ack_timeout_secs: u64,
}

fn default_nats_stream() -> String {
    "TRIBUTARY".to_string()
}

fn default_nats_subject_prefix() -> String {
    "tributary".to_string()
}

const fn default_nats_duplicate_window_secs() -> u64 {
    120
}

const fn default_nats_ack_timeout_secs() -> u64 {
    10
}

impl NatsSinkConfig {
    /// A configuration with every default, for `url`.
    pub fn new(url: impl Into<String>) -> NatsSinkConfig {
        NatsSinkConfig {
            url: url.into(),
            stream: default_nats_stream(),
            subject_prefix: default_nats_subject_prefix(),
            credentials: None,
            token: None,
            user: None,
            password: None,
            duplicate_window_secs: default_nats_duplicate_window_secs(),
            create_stream: true,
            ack_timeout_secs: default_nats_ack_timeout_secs(),
        }
    }

    /// Every problem of the values (the shape was checked by the schema), each naming its
    /// key as `at` describes it. No value of a secret appears in a message.
    pub fn problems(&self, at: impl Fn(&str) -> String) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.url.trim();
        if url.is_empty() {
            problems.push(format!(
                "{}: the URL is empty (is its environment variable set to nothing?)",
                at("url")
            ));
        } else {
            for server in url.split(',').map(str::trim) {
                let scheme = server.split_once("://").map(|(s, _)| s);
                if !matches!(scheme, None | Some("nats" | "tls")) || server.is_empty() {
                    problems.push(format!(
                        "{}: expected `nats://host:port` or `tls://host:port`, got a {} address",
                        at("url"),
                        scheme.map_or("malformed".to_string(), |s| format!("`{s}://`"))
                    ));
                }
            }
        }
        if let Some(problem) = stream_name_problem(&self.stream) {
            problems.push(format!("{}: {problem}", at("stream")));
        }
        if let Some(problem) = subject_prefix_problem(&self.subject_prefix) {
            problems.push(format!("{}: {problem}", at("subject_prefix")));
        }
        let methods: Vec<&str> = [
            ("credentials", self.credentials.is_some()),
            ("token", self.token.is_some()),
            ("user", self.user.is_some() || self.password.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if methods.len() > 1 {
            problems.push(format!(
                "{}: choose one way to authenticate, not {}",
                at(methods[1]),
                methods
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        match (&self.user, &self.password) {
            (Some(_), None) => problems.push(format!("{}: `user` needs `password`", at("user"))),
            (None, Some(_)) => {
                problems.push(format!("{}: `password` needs `user`", at("password")))
            }
            _ => {}
        }
        for (key, value) in [
            ("credentials", &self.credentials),
            ("token", &self.token),
            ("user", &self.user),
            ("password", &self.password),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!(
                    "{}: `{key}` is empty (is its environment variable set to nothing?)",
                    at(key)
                ));
            }
        }
        problems
    }

    /// `credentials` resolved against the manifest's directory.
    pub fn credentials_path(&self, manifest_dir: &Path) -> Option<PathBuf> {
        self.credentials
            .as_deref()
            .map(|p| resolve_path(manifest_dir, p))
    }
}

// By hand: the URL, token and password are secrets.
impl std::fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("credentials", &self.credentials)
            .field("token", &redacted(&self.token))
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("create_stream", &self.create_stream)
            .field("ack_timeout_secs", &self.ack_timeout_secs)
            .finish()
    }
}

/// The server list of a NATS URL without any `user:password@`, for messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = match server.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, server),
            };
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            match scheme {
                Some(scheme) => format!("{scheme}://{host}"),
                None => host.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Why `name` cannot name a JetStream stream, if it cannot. Letters, digits, `-` and `_`
/// only: the server refuses `.`, `*`, `>`, whitespace and path separators, and the name
/// becomes a file name on its disk.
pub fn stream_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 255 {
        return Some("a stream name needs 1 to 255 characters".to_string());
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        .map(|c| format!("`{c}` cannot be in a stream name (letters, digits, `-` and `_` only)"))
}

/// Why `prefix` cannot start a subject, if it cannot: one or more `.`-separated tokens,
/// none empty or holding `*`, `>` or whitespace.
pub fn subject_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.split('.').any(str::is_empty) {
        return Some(
            "a subject prefix is one or more `.`-separated tokens, none of them empty".to_string(),
        );
    }
    prefix
        .chars()
        .find(|c| *c == '*' || *c == '>' || c.is_whitespace())
        .map(|c| format!("{c:?} cannot be in a subject prefix (no wildcards, no whitespace)"))
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

/// A manifest that could not be read; the message is complete and user-facing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// The default manifest, compiled in for when no `connectors.toml` is around.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../connectors.toml");

/// Reads and parses the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError(format!("{}: cannot read manifest: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses manifest text; `path` is used in messages only.
///
/// Every structural problem (unknown keys, wrong types) and every unset `${VAR}` outside
/// the sources is reported at once, each with its file, line, column and key. Only a
/// TOML syntax error stops at the first.
pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // toml's message already carries "line L, column C", the offending line and key.
        ManifestError(format!("{}: {}", path.display(), e.to_string().trim_end()))
    })?;
    let positions = Positions::new(text, path);
    let mut problems = structure_problems(&table, &positions);
    let mut source_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (source, problem) in check_env_references(text, path) {
        match source {
            Some(name) => source_env.entry(name).or_default().push(problem),
            None => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(ManifestError(list_problems(&problems)));
    }
    let mut manifest: Manifest =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                ManifestError(format!("{}: {}", path.display(), e.to_string().trim_end()))
            })?;
    manifest.env_errors = source_env;
    manifest.positions = positions;
    interpolate_manifest(&mut manifest);
    // After interpolation: the values checked are the ones the sinks will use.
    let problems = sink_problems(&manifest);
    if !problems.is_empty() {
        return Err(ManifestError(list_problems(&problems)));
    }
    Ok(manifest)
}

/// Problems of the values in `[sinks]`, each naming its key.
fn sink_problems(manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(nats) = &manifest.sinks.nats {
        let at = |key: &str| manifest.positions.describe(&["sinks", "nats", key]);
        problems.extend(nats.problems(at));
    }
    problems
}

/// `N problem(s):` and one indented line each; every line names its own origin.
pub fn list_problems(problems: &[String]) -> String {
    format!(
        "{} problem(s):\n{}",
        problems.len(),
        problems
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Checks the manifest's shape against the JSON Schema of [`Manifest`], so that every
/// unknown key and wrong type is found, not only the first one serde meets.
fn structure_problems(table: &toml::Table, positions: &Positions) -> Vec<String> {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(Manifest))
            .unwrap_or(serde_json::Value::Bool(true))
    });
    let instance = toml_to_json(&toml::Value::Table(table.clone()));
    match crate::validation::problems(schema, &instance) {
        Ok(found) => found
            .into_iter()
            // A source's `config` belongs to its plugin, checked against the plugin's spec.
            .filter(|p| !(p.path.len() > 3 && p.path[0] == "sources" && p.path[2] == "config"))
            .map(|p| {
                let path: Vec<&str> = p.path.iter().map(String::as_str).collect();
                format!("{}: {}", positions.describe(&path), p.message)
            })
            .collect(),
        Err(e) => vec![format!(
            "internal error: the manifest schema does not compile: {e}"
        )],
    }
}

/// `toml::Value` → `serde_json::Value` (datetimes become strings).
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
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

/// Finds every `${VAR}` outside comments and reports the ones not set, with line, column
/// and key. Values are substituted later, into parsed strings only, so a variable's
/// content can never change the TOML structure.
fn check_env_references(text: &str, path: &Path) -> Vec<(Option<String>, String)> {
    let mut problems = Vec::new();
    let mut section: Option<String> = None;
    for (lineno, line) in text.lines().enumerate() {
        let code = strip_comment(line);
        let trimmed = code.trim();
        if trimmed.starts_with('[') {
            // `[sources.NAME]`, `[sources.NAME.config]`, `[[...]]`: remember the source.
            let header = trimmed.trim_matches(|c| c == '[' || c == ']').trim();
            section = header.strip_prefix("sources.").map(|rest| {
                rest.split('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            });
            continue;
        }
        let key = code.split('=').next().unwrap_or("").trim();
        for (col, name) in env_refs(code) {
            if std::env::var_os(name).is_none() {
                problems.push((section.clone(), format!(
                    "{}: line {}, column {}: key `{}` references environment variable `{}`, which is not set",
                    path.display(),
                    lineno + 1,
                    col + 1,
                    key,
                    name
                )));
            }
        }
    }
    problems
}

/// The line without a trailing `# comment` (a `#` inside a quoted string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_str: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match in_str {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    in_str = None;
                }
            }
            None if c == '"' || c == '\'' => in_str = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

/// `(byte offset, name)` of each `${NAME}` in `s`; `$${` is an escaped literal.
fn env_refs(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            if let Some(end) = s[i + 2..].find('}') {
                out.push((i, &s[i + 2..i + 2 + end]));
                i += 3 + end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Replaces `${VAR}` in a string with the variable's value and `$$` with `$`.
/// Unset variables were rejected by [`check_env_references`], so they become empty here
/// only if the environment changed in between.
pub fn interpolate(s: &str) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let (Some(body), true) = (tail.strip_prefix("${"), tail.contains('}')) {
            let end = body.find('}').unwrap_or(body.len());
            out.push_str(&std::env::var(&body[..end]).unwrap_or_default());
            rest = &body[(end + 1).min(body.len())..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_value(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) => *s = interpolate(s),
        toml::Value::Array(items) => items.iter_mut().for_each(interpolate_value),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| interpolate_value(v)),
        _ => {}
    }
}

fn interpolate_opt(s: &mut Option<String>) {
    if let Some(v) = s {
        *v = interpolate(v);
    }
}

fn interpolate_manifest(m: &mut Manifest) {
    m.host.plugin_dir = interpolate(&m.host.plugin_dir);
    m.host.credentials = interpolate(&m.host.credentials);
    interpolate_opt(&mut m.destination.path);
    interpolate_opt(&mut m.destination.url);
    interpolate_opt(&mut m.destination.schema);
    if let Some(sb) = &mut m.sandbox {
        interpolate_opt(&mut sb.program);
    }
    interpolate_opt(&mut m.defaults.start_date);
    interpolate_opt(&mut m.defaults.end_date);
    if let Some(nats) = &mut m.sinks.nats {
        nats.url = interpolate(&nats.url);
        nats.stream = interpolate(&nats.stream);
        nats.subject_prefix = interpolate(&nats.subject_prefix);
        interpolate_opt(&mut nats.credentials);
        interpolate_opt(&mut nats.token);
        interpolate_opt(&mut nats.user);
        interpolate_opt(&mut nats.password);
    }
    for source in m.sources.values_mut() {
        source.plugin = interpolate(&source.plugin);
        interpolate_opt(&mut source.plugin_path);
        interpolate_opt(&mut source.start_date);
        interpolate_opt(&mut source.end_date);
        source
            .config
            .iter_mut()
            .for_each(|(_, v)| interpolate_value(v));
    }
}

/// Resolves `p` against the manifest's directory.
pub fn resolve_path(manifest_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        manifest_dir.join(p)
    }
}

mod positions;
pub use positions::Positions;

#[cfg(test)]
mod tests;
