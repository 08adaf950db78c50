//! Isolation for untrusted plugins: `isolation = "process"` runs a source's plugin in a
//! child process of the `tributary` binary (`tributary plugin-host <lib>`), so that a
//! segfault, an abort, an endless loop or a memory blow-up fails that source only.
//!
//! - [`SourcePlugin`] is what a planned source calls: the same entry points as
//!   [`Plugin`], run in process or in a plugin process as the manifest says.
//! - [`wire`] is the framing on the pipes; [`parent`] drives a plugin process from the
//!   host; [`child`] is the plugin process.
//! - [`describe`] learns what a library is (`info`, `spec`) in a plugin process, so that
//!   an untrusted library is never loaded in the host.
//! - [`oom`] lets a plugin process name its death by its memory limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tributary_sdk::host::{CollectingHandler, HostHandler, Plugin};

use crate::loader::Library;
use tributary_sdk::{Catalog, ConnectorError, ConnectorInfo, ReadRequest};

pub mod child;
pub mod describe;
pub mod oom;
pub mod parent;
pub mod wire;

pub use child::{plugin_host, PluginHostArgs};

use wire::Method;

/// A call may go this long without a message from the plugin process by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `isolation` of a source in the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// The plugin runs inside the host process (first-party plugins; the fastest).
    #[default]
    InProcess,
    /// The plugin runs in a child process of its own.
    Process,
}

/// The limits of a plugin process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// The longest the plugin may stay silent during a call before it is killed.
    pub call_timeout: Duration,
    /// Address-space limit of the plugin process in MiB (`None`: unlimited).
    pub memory_limit_mb: Option<u64>,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        ProcessLimits {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            memory_limit_mb: None,
        }
    }
}

/// Where a source's plugin runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// In the host process.
    InProcess,
    /// In a plugin process started from `program` (the `tributary` binary).
    Process {
        /// The binary that has the `plugin-host` subcommand.
        program: PathBuf,
        /// Its limits.
        limits: ProcessLimits,
    },
}

impl Isolation {
    /// A plugin process started from the running binary.
    pub fn process(limits: ProcessLimits) -> Result<Isolation, String> {
        let program = std::env::current_exe().map_err(|e| {
            format!("cannot find the tributary binary to start a plugin process: {e}")
        })?;
        Ok(Isolation::Process { program, limits })
    }
}

/// A source's plugin with its isolation: the entry points of [`Plugin`], run where the
/// manifest says.
#[derive(Debug, Clone)]
pub struct SourcePlugin {
    library: Library,
    isolation: Isolation,
}

/// The conformance kit calls a source's plugin as a run would: in its child process when
/// the source is isolated.
impl tributary_sdk::testkit::Subject for SourcePlugin {
    fn name(&self) -> String {
        self.info().name.clone()
    }
    fn spec(&self) -> Result<serde_json::Value, ConnectorError> {
        SourcePlugin::spec(self)
    }
    fn check(
        &self,
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        SourcePlugin::check(self, config, handler)
    }
    fn discover(
        &self,
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError> {
        SourcePlugin::discover(self, config, handler)
    }
    fn read(
        &self,
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        SourcePlugin::read(self, request, handler)
    }
}

impl SourcePlugin {
    /// `library` run as `isolation` says. An in-process source needs a library loaded
    /// in the host ([`Library::Loaded`]); its calls fail otherwise.
    pub fn new(library: Library, isolation: Isolation) -> Self {
        SourcePlugin { library, isolation }
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        self.library.path()
    }

    /// What the plugin says about itself (read when the library was loaded or
    /// described).
    pub fn info(&self) -> &ConnectorInfo {
        self.library.info()
    }

    /// The library, loaded or described.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Where the plugin runs.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The JSON Schema of the connector's config. An isolated plugin answered it when its
    /// plugin process described the library; it is not asked again.
    pub fn spec(&self) -> Result<serde_json::Value, ConnectorError> {
        match (&self.isolation, &self.library) {
            (Isolation::InProcess, _) => self.in_host()?.spec(),
            (Isolation::Process { .. }, Library::Loaded(_)) => {
                // `spec` sends nothing to a handler; its logs are dropped as in process.
                let text = self.in_child(Method::Spec, String::new(), CollectingHandler::new())?;
                parse(&text, "spec")
            }
            (Isolation::Process { .. }, library) => library.spec(),
        }
    }

    /// Checks that the connector can connect and authenticate with `config`.
    pub fn check(
        &self,
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        match &self.isolation {
            Isolation::InProcess => self.in_host()?.check(config, handler),
            Isolation::Process { .. } => self
                .in_child(Method::Check, to_json(config)?, handler)
                .map(drop),
        }
    }

    /// The connector's catalog for `config`.
    pub fn discover(
        &self,
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError> {
        match &self.isolation {
            Isolation::InProcess => self.in_host()?.discover(config, handler),
            Isolation::Process { .. } => {
                let text = self.in_child(Method::Discover, to_json(config)?, handler)?;
                parse(&text, "catalog")
            }
        }
    }

    /// Reads, sending everything to `handler`; returns when the plugin is done.
    pub fn read(
        &self,
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        match &self.isolation {
            Isolation::InProcess => self.in_host()?.read(request, handler),
            Isolation::Process { .. } => self
                .in_child(Method::Read, to_json(request)?, handler)
                .map(drop),
        }
    }

    fn in_host(&self) -> Result<&Plugin, ConnectorError> {
        match &self.library {
            Library::Loaded(plugin) => Ok(plugin),
            Library::Unavailable(u) => Err(ConnectorError::system(u.cause.clone())),
            Library::Described(d) => Err(ConnectorError::system(format!(
                "internal error: plugin {} runs in process but was not loaded into the host",
                d.info.name
            ))),
        }
    }

    fn in_child(
        &self,
        method: Method,
        argument: String,
        handler: Arc<dyn HostHandler>,
    ) -> Result<String, ConnectorError> {
        if let Library::Unavailable(u) = &self.library {
            return Err(ConnectorError::system(u.cause.clone()));
        }
        match &self.isolation {
            Isolation::Process { program, limits } => parent::call(
                program,
                self.library.path(),
                limits,
                method,
                argument,
                handler,
            ),
            Isolation::InProcess => Err(ConnectorError::system(
                "internal error: a plugin process was asked for an in-process source",
            )),
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ConnectorError> {
    serde_json::to_string(value)
        .map_err(|e| ConnectorError::system(format!("cannot serialize: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ConnectorError> {
    serde_json::from_str(text)
        .map_err(|e| ConnectorError::system(format!("{what} is not valid JSON: {e}")))
}

/// The isolation a source's manifest keys ask for. An error names the key at fault and
/// why.
pub fn from_manifest(
    mode: IsolationMode,
    call_timeout_secs: Option<u64>,
    memory_limit_mb: Option<u64>,
) -> Result<Isolation, (&'static str, String)> {
    if mode == IsolationMode::InProcess {
        let stray = [
            ("call_timeout_secs", call_timeout_secs.is_some()),
            ("memory_limit_mb", memory_limit_mb.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err((
                key,
                "applies only with isolation = \"process\" (an in-process plugin shares the host's time and memory)".to_string(),
            ));
        }
        return Ok(Isolation::InProcess);
    }
    if call_timeout_secs == Some(0) {
        return Err(("call_timeout_secs", "must be at least 1".to_string()));
    }
    if let Some(mb) = memory_limit_mb.filter(|mb| *mb < MIN_MEMORY_LIMIT_MB) {
        return Err((
            "memory_limit_mb",
            format!("{mb} MiB is too little for the plugin process to start; use at least {MIN_MEMORY_LIMIT_MB}"),
        ));
    }
    let limits = ProcessLimits {
        call_timeout: call_timeout_secs.map_or(DEFAULT_CALL_TIMEOUT, Duration::from_secs),
        memory_limit_mb,
    };
    Isolation::process(limits).map_err(|e| ("isolation", e))
}

/// Below this the plugin process cannot map the host binary, the library and a runtime.
pub const MIN_MEMORY_LIMIT_MB: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_belong_to_process_isolation_only() {
        assert_eq!(
            from_manifest(IsolationMode::InProcess, None, None),
            Ok(Isolation::InProcess)
        );
        let stray = from_manifest(IsolationMode::InProcess, Some(5), None).expect_err("stray");
        assert_eq!(stray.0, "call_timeout_secs");
        let stray = from_manifest(IsolationMode::InProcess, None, Some(512)).expect_err("stray");
        assert_eq!(stray.0, "memory_limit_mb");
        assert_eq!(
            from_manifest(IsolationMode::Process, Some(0), None)
                .expect_err("zero")
                .0,
            "call_timeout_secs"
        );
        assert_eq!(
            from_manifest(IsolationMode::Process, None, Some(1))
                .expect_err("tiny")
                .0,
            "memory_limit_mb"
        );
        match from_manifest(IsolationMode::Process, Some(9), Some(512)) {
            Ok(Isolation::Process { limits, .. }) => {
                assert_eq!(limits.call_timeout, Duration::from_secs(9));
                assert_eq!(limits.memory_limit_mb, Some(512));
            }
            other => panic!("{other:?}"),
        }
    }
}
