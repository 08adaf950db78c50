//! Bad manifests: each is a clear error naming where the problem is, exit code 2, and
//! nothing written.

use crate::common::Scratch;

fn refused(s: &Scratch, expect: &[&str]) {
    let run = s.run(&["run"]);
    assert_eq!(run.code, 2, "exit code 2 for a bad manifest: {}", run.all());
    for e in expect {
        assert!(
            run.stderr.contains(e),
            "error mentions {e:?}: {}",
            run.stderr
        );
    }
    assert!(!s.path("warehouse.db").exists(), "nothing written");
    assert!(!s.path("internal.db").exists(), "no source touched");
}

fn good_source(s: &Scratch) -> String {
    format!(
        "[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 3 }}\n",
        s.path("internal.db").display()
    )
}

#[test]
fn syntax_error() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.internal\nplugin = \"internal-db\"\n",
        s.header()
    ));
    refused(&s, &["connectors.toml", "line 9"]);
}

#[test]
fn unknown_key() {
    let s = Scratch::new();
    s.manifest(
        &format!(
            "{}{}stream = [\"contracts\"]\n",
            s.header(),
            good_source(&s)
        )
        .replace(
            "plugin = \"internal-db\"\n",
            "plugin = \"internal-db\"\nstreems = [\"contracts\"]\n",
        ),
    );
    refused(&s, &["connectors.toml", "line", "column", "streems"]);
}

#[test]
fn unknown_plugin() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}{}",
        s.header(),
        good_source(&s).replace("internal-db", "no-such-plugin")
    ));
    refused(&s, &["no-such-plugin", "internal", "internal-db"]);
}

#[test]
fn missing_env_var() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}{}",
        s.header(),
        good_source(&s).replace(
            "url = \"sqlite:",
            "url = \"sqlite:${TRIBUTARY_E2E_UNSET_VARIABLE}"
        )
    ));
    refused(&s, &["TRIBUTARY_E2E_UNSET_VARIABLE", "line", "`url`"]);
}

#[test]
fn end_before_start() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[defaults]\nstart_date = \"2026-01-01\"\nend_date = \"2025-01-01\"\n\n{}",
        s.header(),
        good_source(&s)
    ));
    refused(
        &s,
        &[
            "is not after start",
            "[defaults] end_date",
            "[defaults] start_date",
            "internal",
        ],
    );
}

#[test]
fn unknown_stream() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}{}",
        s.header(),
        good_source(&s).replace(
            "plugin = \"internal-db\"\n",
            "plugin = \"internal-db\"\nstreams = [\"tickets\"]\n"
        )
    ));
    let run = s.run(&["run"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("unknown stream") && run.stderr.contains("tickets"),
        "{}",
        run.stderr
    );
    assert!(!s.path("warehouse.db").exists(), "nothing written");
}

#[test]
fn disabled_source_may_reference_unset_variables() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}{}\n[sources.later]\nplugin = \"quickbooks\"\nenabled = false\n[sources.later.config]\nrefresh_token = \"${{TRIBUTARY_E2E_UNSET_VARIABLE}}\"\n",
        s.header(),
        good_source(&s)
    ));
    let run = s.run(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
}
