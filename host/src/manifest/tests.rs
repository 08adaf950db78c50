use std::path::Path;

use super::*;

fn parse_str(s: &str) -> Result<Manifest, ManifestError> {
    parse(s, Path::new("connectors.toml"))
}

#[test]
fn unknown_key_names_line_column_and_key() {
    let err = parse_str("[host]\nplugin_dir = \"x\"\nplugins = 3\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("connectors.toml"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("column 1"), "{msg}");
    assert!(msg.contains("plugins"), "{msg}");
}

#[test]
fn missing_env_var_is_an_error_naming_it() {
    let m = parse_str(
        "[sources.a]\nplugin = \"x\"\n[sources.a.config]\ntoken = \"${TRIBUTARY_SURELY_UNSET_VAR}\"\n",
    )
    .unwrap();
    // Deferred to the source: reported only when source `a` is selected.
    let msg = m.env_errors["a"].join("\n");
    assert!(msg.contains("TRIBUTARY_SURELY_UNSET_VAR"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
    assert!(msg.contains("`token`"), "{msg}");
}

#[test]
fn env_vars_are_substituted_into_strings_only() {
    std::env::set_var("TRIBUTARY_TEST_QUOTE_VAR", "a\"b = 1");
    let m = parse_str(
        "[sources.a]\nplugin = \"x\"\n[sources.a.config]\ntoken = \"${TRIBUTARY_TEST_QUOTE_VAR}\"\nliteral = \"$${NOT_A_VAR}\"\n# ${IN_A_COMMENT}\n",
    )
    .unwrap();
    let config = &m.sources["a"].config;
    assert_eq!(config["token"].as_str(), Some("a\"b = 1"));
    assert_eq!(config["literal"].as_str(), Some("${NOT_A_VAR}"));
}

#[test]
fn syntax_error_is_reported_with_position() {
    let msg = parse_str("[host\n").unwrap_err().to_string();
    assert!(msg.contains("line 1"), "{msg}");
}

/// The built-in manifest must run on a fresh machine with no accounts: it syncs all three
/// sources, and every one it enables is either served by the sandbox or resolves without
/// any environment variable (the live `${VAR}`s are for going live).
#[test]
fn embedded_default_runs_without_credentials() {
    let m = parse_str(EMBEDDED_DEFAULT).unwrap();
    assert!(m.sandbox.is_some(), "the default starts the sandbox");
    let enabled: Vec<&String> = m
        .sources
        .iter()
        .filter(|(_, s)| s.enabled)
        .map(|(n, _)| n)
        .collect();
    let plugins: std::collections::BTreeSet<&str> = m
        .sources
        .values()
        .filter(|s| s.enabled)
        .map(|s| s.plugin.as_str())
        .collect();
    assert_eq!(
        plugins.into_iter().collect::<Vec<_>>(),
        ["internal-db", "quickbooks", "superops"],
        "the default shows the whole product"
    );
    for name in enabled {
        let sandboxed = m.sources[name].endpoint.as_deref() == Some("sandbox");
        assert!(
            sandboxed || !m.env_errors.contains_key(name),
            "enabled source {name} needs environment variables: {:?}",
            m.env_errors.get(name)
        );
    }
}

#[test]
fn missing_env_var_outside_sources_fails_at_once() {
    let msg = parse_str("[destination]\npath = \"${TRIBUTARY_SURELY_UNSET_VAR}/w.db\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("TRIBUTARY_SURELY_UNSET_VAR"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn destination_keys_fit_their_kind_and_the_url_is_never_repeated() {
    use crate::plan::{resolve_destination, DestinationPlan};
    let resolve = |text: &str| resolve_destination(&parse_str(text).unwrap(), Path::new("/m"));
    // `path` defaults for SQLite only.
    assert!(matches!(
        resolve("[destination]\n"),
        Ok(DestinationPlan::Sqlite { path }) if path == Path::new("/m/data/warehouse.db")
    ));
    let url = "postgres://u:hunter2@127.0.0.1:5432/w";
    match resolve(&format!(
        "[destination]\nkind = \"postgres\"\nurl = \"{url}\"\n"
    )) {
        Ok(plan @ DestinationPlan::Postgres { .. }) => {
            assert_eq!(plan.describe(), "postgres://127.0.0.1:5432/w schema public");
            assert!(!format!("{plan:?}").contains("hunter2"));
        }
        other => panic!("{other:?}"),
    }
    let problems = |text: &str| resolve(text).unwrap_err().join("\n");
    let msg = problems("[destination]\nkind = \"postgres\"\npath = \"x\"\n");
    assert!(msg.contains("needs `url`"), "{msg}");
    assert!(msg.contains("`path` is for"), "{msg}");
    let msg = problems(&format!(
        "[destination]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"Bad-Name\"\n"
    ));
    assert!(msg.contains("schema"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = problems("[destination]\nkind = \"postgres\"\nurl = \"mysql://u:hunter2@h/d\"\n");
    assert!(msg.contains("postgres://"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = problems(&format!(
        "[destination]\nkind = \"sqlite\"\nurl = \"{url}\"\n"
    ));
    assert!(msg.contains("`url` is for `postgres`"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(problems("[destination]\nkind = \"jsonl\"\n").contains("needs `path`"));
    assert!(problems("[destination]\nkind = \"mysql\"\n")
        .contains("expected `sqlite`, `jsonl` or `postgres`"));
}
