//! The plugin boundary under abuse: a panicking connector, an incompatible SDK version,
//! and libraries that are not plugins at all.

use crate::common::{lib_path, Scratch};

fn internal_source(s: &Scratch, name: &str) -> String {
    format!(
        "[sources.{name}]\nplugin = \"internal-db\"\nstreams = [\"contracts\"]\n[sources.{name}.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 5, seed = 1 }}\n",
        s.path("internal.db").display()
    )
}

#[test]
fn panicking_plugin_fails_its_source_only() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.boom]\nplugin = \"panicking\"\n\n{}",
        s.header(),
        internal_source(&s, "internal")
    ));
    let (run, report) = s.sync(&[]);
    assert_ne!(run.code, 0, "a failed source makes the exit code non-zero");
    assert_eq!(report.status("boom.boom"), "incomplete");
    assert_eq!(report.status("internal.contracts"), "complete");
    assert!(report.records("internal.contracts") > 0);
    assert!(run.stdout.contains("panic"), "{}", run.all());
    assert!(
        run.all().contains("fixture panics in read"),
        "{}",
        run.all()
    );
    // The host lived to print the summary and committed the healthy source.
    assert!(run.stdout.contains("INCOMPLETE"));
    let n: i64 = s
        .warehouse()
        .query_row("SELECT count(*) FROM internal__contracts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as u64, report.records("internal.contracts"));
}

#[test]
fn incompatible_and_foreign_libraries_are_refused_one_line_each() {
    let s = Scratch::new();
    let plugins = s.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        lib_path("internal_db"),
        plugins.join("libtributary_internal_db.so"),
    )
    .unwrap();
    std::fs::copy(
        lib_path("test_incompatible_plugin"),
        plugins.join("libfuture.so"),
    )
    .unwrap();
    // Random bytes, and a real shared library that is not a plugin.
    std::fs::write(
        plugins.join("libgarbage.so"),
        b"\x7fELF this is not really a library",
    )
    .unwrap();
    let foreign = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("a system shared library to copy");
    std::fs::copy(foreign, plugins.join("libforeign.so")).unwrap();

    s.manifest(&format!(
        "[host]\nplugin_dir = \"{}\"\n[destination]\npath = \"{}\"\n{}",
        plugins.display(),
        s.path("warehouse.db").display(),
        internal_source(&s, "internal")
    ));
    let listed = s.run(&["plugins"]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    assert!(listed.stdout.contains("internal-db"));

    let (run, report) = s.sync(&[]);
    assert_eq!(
        run.code,
        0,
        "the compatible plugin still runs: {}",
        run.all()
    );
    assert_eq!(report.status("internal.contracts"), "complete");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings.len(),
        3,
        "one line per refused library: {warnings:#?}"
    );
    let future = warnings
        .iter()
        .find(|l| l.contains("libfuture.so"))
        .expect("incompatible plugin reported");
    assert!(
        future.contains("future-connector"),
        "names the plugin: {future}"
    );
    assert!(
        future.contains("1.0.0"),
        "names the plugin's SDK version: {future}"
    );
    assert!(
        future.contains(tributary_sdk::SDK_VERSION),
        "names the host's SDK version: {future}"
    );
    assert!(warnings.iter().any(|l| l.contains("libgarbage.so")));
    assert!(warnings
        .iter()
        .any(|l| l.contains("libforeign.so") && l.contains("not a Tributary plugin")));
}

#[test]
fn pinned_plugin_with_wrong_hash_is_refused() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nplugin_path = \"{}\"\nsha256 = \"{}\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\n",
        s.header(),
        lib_path("internal_db").display(),
        "0".repeat(64),
        s.path("internal.db").display()
    ));
    let run = s.run(&["run"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("sha256"), "{}", run.stderr);
    assert!(!s.path("warehouse.db").exists(), "nothing written");
}
