//! Learning what a library is without loading it in the host: a plugin process loads it
//! and answers `info()` and `spec()` ([`Method::Describe`]). A library whose load-time
//! code crashes, aborts or hangs takes only that process down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tributary_sdk::host::{CollectingHandler, Plugin};
use tributary_sdk::{ConnectorError, ConnectorInfo};

use super::wire::Method;
use super::{parent, ProcessLimits};

/// The longest a library may take to load and describe itself in its plugin process.
/// Loading runs no connector code but `info` and `spec`; a library still silent after
/// this is hung in its load-time code.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a plugin process learned about a library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The library file.
    pub path: PathBuf,
    /// What the plugin says about itself.
    pub info: ConnectorInfo,
    /// Its config schema, or why it could not give one.
    pub spec: Result<serde_json::Value, ConnectorError>,
}

/// The answer of [`Method::Describe`] in the plugin process, as JSON.
pub(crate) fn answer(plugin: &Plugin) -> Result<String, ConnectorError> {
    let description = Description {
        path: plugin.path().to_owned(),
        info: plugin.info().clone(),
        spec: plugin.spec(),
    };
    serde_json::to_string(&description)
        .map_err(|e| ConnectorError::system(format!("cannot serialize the description: {e}")))
}

/// Describes the library at `library` in a plugin process started from `program`. The
/// error is one line naming the file and why: the loader's refusal, or how the process
/// died (`killed by SIGSEGV (segmentation fault)`, the timeout).
pub fn describe(program: &Path, library: &Path) -> Result<Description, String> {
    let limits = ProcessLimits {
        call_timeout: DESCRIBE_TIMEOUT,
        memory_limit_mb: None,
    };
    let named = |message: String| {
        // A loader refusal names the file already; a death does not.
        if message.starts_with(&library.display().to_string()) {
            message
        } else {
            format!("{}: {message}", library.display())
        }
    };
    let text = parent::call(
        program,
        library,
        &limits,
        Method::Describe,
        String::new(),
        CollectingHandler::new(),
    )
    .map_err(|e| named(e.message))?;
    let mut description: Description = serde_json::from_str(&text).map_err(|e| {
        named(format!(
            "the plugin process described it in invalid JSON: {e}"
        ))
    })?;
    // The file the host asked about, whatever the process calls it.
    description.path = library.to_owned();
    Ok(description)
}

/// [`describe`] for each library, each in its own plugin process, all at once (the
/// processes wait on their own loading, not on each other).
pub fn describe_all(program: &Path, libraries: &[PathBuf]) -> Vec<Result<Description, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = libraries
            .iter()
            .map(|lib| (lib, scope.spawn(move || describe(program, lib))))
            .collect();
        handles
            .into_iter()
            .map(|(lib, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(format!(
                        "{}: describing the library panicked in the host",
                        lib.display()
                    ))
                })
            })
            .collect()
    })
}
