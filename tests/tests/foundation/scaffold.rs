//! `tributary new-connector`: the generated crate builds out of tree against the SDK,
//! loads into the unchanged host, and syncs its example stream from the example API.

use std::process::Command;

use tributary_sandbox::items::ItemsApi;

use crate::common::{target_dir, workspace, Scratch};

const TOKEN: &str = "scaffold-test-token";

#[test]
fn a_generated_connector_builds_out_of_tree_and_syncs_through_the_host() {
    let s = Scratch::new();
    let dir = s.path("acme-widgets");
    let made = s.run(&[
        "new-connector",
        "acme-widgets",
        "--path",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(made.code, 0, "{}", made.all());
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("src/lib.rs");
    assert!(lib.contains("struct AcmeWidgets"), "{lib}");
    // Refused: the directory is not empty now, and a bad name.
    let again = s.run(&[
        "new-connector",
        "acme-widgets",
        "--path",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(again.code, 2, "{}", again.all());
    let bad = s.run(&["new-connector", "Acme_Widgets"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("lowercase"), "{}", bad.all());

    // Built as an author would, with this workspace's lock file and dependency profile so
    // the compiled dependencies in the target directory are reused.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target = target_dir();
    let status = Command::new(&cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--config",
            "profile.dev.package.\"*\".opt-level=2",
            "--target-dir",
        ])
        .arg(target.parent().expect("target root"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the generated crate builds");
    assert!(target.join("libtributary_acme_widgets.so").is_file());

    // Pointed at by a manifest, it is one more plugin: nothing in the host changes.
    let api = ItemsApi::start(
        TOKEN,
        (1..=7)
            .map(|i| (i, format!("2026-03-0{i}T00:00:00Z")))
            .collect(),
    )
    .expect("items api");
    let snippet = std::fs::read_to_string(dir.join("connectors.snippet.toml")).expect("snippet");
    let source = snippet
        .replace("https://api.example.com", &api.url())
        .replace("${ACME_WIDGETS_TOKEN}", TOKEN);
    s.manifest(&format!("{}{source}", s.header()));
    let plugins = s.run(&["plugins"]);
    assert!(plugins.stdout.contains("acme-widgets"), "{}", plugins.all());
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("acme-widgets.items"), 7, "{report:?}");
    let wh = s.warehouse();
    let keys: Vec<String> = wh
        .prepare("SELECT _pk FROM \"acme_widgets__items\" ORDER BY _cursor")
        .expect("the stream's table")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(keys, ["1", "2", "3", "4", "5", "6", "7"]);

    // Incremental: only the changed item comes again (the boundary one was sent).
    api.set(
        (1..=7)
            .map(|i| {
                (
                    i,
                    format!("2026-03-0{}T00:00:00Z", if i == 2 { 8 } else { i }),
                )
            })
            .collect(),
    );
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report.records("acme-widgets.items"), 1, "{report:?}");
    let cursor: String = wh
        .query_row(
            "SELECT _cursor FROM \"acme_widgets__items\" WHERE _pk = '2'",
            [],
            |r| r.get(0),
        )
        .expect("item 2");
    assert_eq!(cursor, "2026-03-08T00:00:00Z");
    assert!(!run.all().contains(TOKEN), "the token never shows");

    // An item updated between two pages of one read (item 2, after page 1) moves to the
    // end; paging by offset would then skip item 4 for good. Every item arrives, at its
    // latest version.
    api.set(
        (1..=10)
            .map(|i| (i, format!("2026-04-{i:02}T00:00:00Z")))
            .collect(),
    );
    api.update_after_next_page((2, "2026-04-20T00:00:00Z".into()));
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let rows: Vec<(String, String)> = wh
        .prepare("SELECT _pk, _cursor FROM \"acme_widgets__items\" ORDER BY _cursor, _pk")
        .expect("the stream's table")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let latest: Vec<(String, String)> = api
        .items()
        .into_iter()
        .map(|(id, at)| (id.to_string(), at))
        .collect();
    assert_eq!(rows, latest);

    // And it keeps every invariant the host relies on.
    let kit = s.run(&["conformance", "acme-widgets"]);
    assert_eq!(kit.code, 0, "{}", kit.all());
    assert!(kit.stdout.contains("CONFORMS"), "{}", kit.all());
    assert!(
        lib.lines().count() <= 80,
        "the connector fits on one screen: {} lines",
        lib.lines().count()
    );
}
