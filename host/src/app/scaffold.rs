//! `new-connector`: writes an out-of-tree connector crate from the template in
//! `examples/connector-template` (a workspace member, so the template always compiles
//! and its test always runs with the suite).
//!
//! The template's names are replaced by the new connector's: `example-http` (plugin and
//! package), `example_http` (library), `EXAMPLE_HTTP` (environment variables),
//! `ExampleHttp` (type). The SDK is a path
//! dependency when this binary was built inside a checkout that still exists, the
//! published version otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::usage;

/// The template's files: (path in the new crate, contents).
const FILES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../examples/connector-template/src/lib.rs"),
    ),
    (
        "tests/connector.rs",
        include_str!("../../../examples/connector-template/tests/connector.rs"),
    ),
    (
        "connectors.snippet.toml",
        include_str!("../../../examples/connector-template/connectors.snippet.toml"),
    ),
    (
        "README.md",
        include_str!("../../../examples/connector-template/README.md"),
    ),
];

/// The template's own `Cargo.toml`, whose dependency lines the new crate reuses.
const TEMPLATE_MANIFEST: &str = include_str!("../../../examples/connector-template/Cargo.toml");

/// Why a connector name is refused, if it is.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Some("it must start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("use lowercase letters, digits and `-` only");
    }
    if name.ends_with('-') || name.contains("--") {
        return Some("`-` separates words: not at the end, not twice");
    }
    if name == "example-http" {
        return Some("that is the template's own name");
    }
    None
}

/// `acme-widgets` → `AcmeWidgets`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template text with the new connector's names.
fn rename(text: &str, name: &str) -> String {
    text.replace("example-http", name)
        .replace("example_http", &name.replace('-', "_"))
        .replace("EXAMPLE_HTTP", &name.replace('-', "_").to_ascii_uppercase())
        .replace("ExampleHttp", &camel(name))
}

/// Where the new crate finds the SDK: this checkout's `sdk/` when it still exists
/// (`path = "…"`), the published version otherwise.
fn sdk_source() -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    match checkout.canonicalize() {
        Ok(path) if path.join("Cargo.toml").is_file() => {
            format!("path = {:?}", path.display().to_string())
        }
        _ => format!("version = \"{}\"", tributary_sdk::SDK_VERSION),
    }
}

/// The new crate's `Cargo.toml`: the template's, renamed, standing alone (its own
/// workspace, no inherited settings) and with the SDK dependency resolved.
fn manifest(name: &str) -> String {
    let mut out = String::new();
    for line in TEMPLATE_MANIFEST.lines() {
        let line = match line.trim_start() {
            l if l.starts_with("tributary-sdk") => l.replace("path = \"../../sdk\"", &sdk_source()),
            l if l.starts_with("version.workspace") => "version = \"0.1.0\"".to_string(),
            l if l.starts_with("edition.workspace") => "edition = \"2021\"".to_string(),
            l if l.starts_with("publish.workspace") => "publish = false".to_string(),
            l if l.starts_with("license.workspace") => continue,
            _ => rename(line, name),
        };
        // Workspace-inherited dependencies become plain version requirements.
        let line = line
            .replace(
                "serde.workspace = true",
                "serde = { version = \"1\", features = [\"derive\"] }",
            )
            .replace("serde_json.workspace = true", "serde_json = \"1\"")
            .replace("schemars.workspace = true", "schemars = \"1\"")
            .replace("tracing.workspace = true", "tracing = \"0.1\"");
        if line.trim() == "[lints]" || line.trim() == "workspace = true" {
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    // Its own workspace, even when created inside another one's directory.
    out.push_str("\n[workspace]\n");
    out
}

/// Writes the crate for connector `name` into `dir` (default `./tributary-<name>`),
/// which must not exist or be empty.
pub fn new_connector(name: &str, dir: Option<&Path>) -> Result<ExitCode> {
    if let Some(problem) = name_problem(name) {
        return Err(usage(format!("connector name `{name}`: {problem}")));
    }
    let dir: PathBuf = dir.map_or_else(
        || PathBuf::from(format!("tributary-{name}")),
        Path::to_owned,
    );
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(usage(format!(
            "{} exists and is not empty; choose another --path",
            dir.display()
        )));
    }
    let mut files: Vec<(String, String)> = FILES
        .iter()
        .map(|(path, text)| (path.to_string(), rename(text, name)))
        .collect();
    files.push(("Cargo.toml".to_string(), manifest(name)));
    files.push((".gitignore".to_string(), "/target\n".to_string()));
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let lib = format!("libtributary_{}.so", name.replace('-', "_"));
    println!(
        "created connector `{name}` in {}\n\nnext:\n  cd {}\n  cargo test                # the example stream against a local test server\n  cargo build --release     # target/release/{lib}\n\nthen point a manifest's [host] plugin_dir at target/release and add the source in\nconnectors.snippet.toml; `tributary plugins` lists it, `tributary conformance <source>` checks it.",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_the_three_spellings_and_bad_names_are_refused() {
        assert_eq!(camel("acme-widgets-2"), "AcmeWidgets2");
        assert_eq!(
            rename(
                "example-http example_http EXAMPLE_HTTP ExampleHttp",
                "acme-x"
            ),
            "acme-x acme_x ACME_X AcmeX"
        );
        for bad in [
            "",
            "Acme",
            "1acme",
            "acme_x",
            "acme-",
            "a--b",
            "example-http",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(name_problem("acme2-widgets"), None);
    }

    #[test]
    fn the_generated_manifest_stands_alone() {
        let m = manifest("acme");
        assert!(m.contains("name = \"tributary-acme\""), "{m}");
        assert!(m.contains("[workspace]"), "{m}");
        assert!(!m.contains(".workspace = true"), "{m}");
        assert!(m.contains("tributary-sdk = { path = \"/"), "{m}");
        assert!(m.contains("crate-type = [\"cdylib\", \"rlib\"]"), "{m}");
    }
}
