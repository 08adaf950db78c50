//! The plugin boundary under abuse: a panicking connector, an incompatible SDK version,
//! and libraries that are not plugins at all.

use crate::common::{fixture_path, lib_path, Scratch};

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
        "{}[sources.boom]\nplugin = \"panicking\"\nplugin_path = \"{}\"\n\n[sources.early]\nplugin = \"panicking\"\nplugin_path = \"{}\"\nstreams = [\"boom\"]\n[sources.early.config]\npanic_in = \"discover\"\n\n{}",
        s.header(),
        fixture_path("panicking_plugin").display(),
        fixture_path("panicking_plugin").display(),
        internal_source(&s, "internal")
    ));
    let (run, report) = s.sync(&[]);
    assert_ne!(run.code, 0, "a failed source makes the exit code non-zero");
    assert_eq!(report.status("boom.boom"), "incomplete");
    // A source that fails before its catalog is known reports the streams it selected.
    assert_eq!(report.status("early.boom"), "incomplete");
    assert!(
        run.all().contains("fixture panics in discover"),
        "{}",
        run.all()
    );
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
        fixture_path("incompatible_plugin"),
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

/// Truncated, empty and random files beside the real plugins (issue 8): the host checks a
/// library's structure before the dynamic loader maps it, so none of them can crash it
/// (a truncated library used to die with SIGBUS); each is one line, the others load.
#[test]
fn truncated_empty_and_random_libraries_never_crash_the_host() {
    let s = Scratch::new();
    let plugins = s.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let real = std::fs::read(lib_path("internal_db")).unwrap();
    std::fs::write(plugins.join("libtributary_internal_db.so"), &real).unwrap();
    let superops = std::fs::read(lib_path("superops")).unwrap();
    for cut in [4 * 1024, 300_000, 4 * 1024 * 1024] {
        std::fs::write(plugins.join(format!("libtrunc{cut}.so")), &superops[..cut]).unwrap();
    }
    std::fs::write(plugins.join("libempty.so"), b"").unwrap();
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(plugins.join("librandom.so"), noise).unwrap();
    s.manifest(&format!(
        "[host]\nplugin_dir = \"{}\"\ncredentials = \"{}\"\n[destination]\npath = \"{}\"\n{}",
        plugins.display(),
        s.path("credentials.json").display(),
        s.path("warehouse.db").display(),
        internal_source(&s, "internal")
    ));
    let bad = [
        "libtrunc4096.so",
        "libtrunc300000.so",
        "libtrunc4194304.so",
        "libempty.so",
        "librandom.so",
    ];
    for cmd in ["plugins", "validate"] {
        let out = s.run(&[cmd]);
        assert_eq!(out.code, 0, "{cmd} survives: {}", out.all());
        for name in bad {
            assert!(
                out.all().contains(name),
                "{cmd} reports {name}: {}",
                out.all()
            );
        }
    }
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "the real plugin still runs: {}", run.all());
    assert_eq!(report.status("internal.contracts"), "complete");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings.len(),
        bad.len(),
        "one line per bad file: {warnings:#?}"
    );
    for name in &bad[..3] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(name) && w.contains("truncated or corrupt")),
            "{name}: {warnings:#?}"
        );
    }

    // Pinned by path and hash, a truncated library is refused the same way, not loaded.
    let pinned = plugins.join("libtrunc300000.so");
    let hash = sha256_hex(&std::fs::read(&pinned).unwrap());
    s.manifest(&format!(
        "{}[sources.so]\nplugin = \"superops\"\nplugin_path = \"{}\"\nsha256 = \"{hash}\"\n[sources.so.config]\nsubdomain = \"x\"\napi_token = \"t\"\n",
        s.header(),
        pinned.display()
    ));
    let run = s.run(&["validate"]);
    assert_eq!(run.code, 2, "a clear error, not a crash: {}", run.all());
    assert!(
        run.stderr.contains("truncated or corrupt"),
        "{}",
        run.stderr
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    // The manifest's pin format; computed with the system's sha256sum to stay independent
    // of the host's own implementation.
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}
