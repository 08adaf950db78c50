//! A user's first hour (issue 8): every bad input gets a clear error naming where it
//! comes from, nothing is written, signals stop a run cleanly, and nothing depends on
//! the directory `tributary` is started from.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{count, target_dir, Scratch};

fn internal(s: &Scratch, extra_config: &str) -> String {
    format!(
        "[sources.internal]\nplugin = \"internal-db\"\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 3 }}\n{extra_config}",
        s.path("internal.db").display()
    )
}

fn assert_nothing_written(s: &Scratch) {
    assert!(!s.path("warehouse.db").exists(), "no warehouse written");
    assert!(!s.path("internal.db").exists(), "no source touched");
}

#[test]
fn a_config_typo_is_an_error_with_its_position_and_nothing_is_written() {
    let s = Scratch::new();
    s.manifest(&format!("{}{}", s.header(), internal(&s, "poolsize = 3\n")));
    for cmd in ["validate", "run"] {
        let run = s.run(&[cmd]);
        assert_eq!(run.code, 2, "{cmd}: {}", run.all());
        assert!(
            run.stderr.contains("connectors.toml: line 14, column 1: key `sources.internal.config.poolsize`: unknown key; did you mean `pool_size`?"),
            "{cmd} names file, line, column, key and the fix: {}",
            run.stderr
        );
        assert_nothing_written(&s);
    }
}

#[test]
fn every_manifest_problem_is_reported_at_once_with_its_origin() {
    let s = Scratch::new();
    let body = format!("{}{}", s.header(), internal(&s, "page_size = \"big\"\n"))
        .replace("[destination]\n", "[destination]\ncolour = \"blue\"\n")
        .replace(
            "plugin = \"internal-db\"\n",
            "plugin = \"internal-db\"\nstreems = [\"x\"]\n",
        );
    s.manifest(&body);
    let run = s.run(&["validate"]);
    assert_eq!(run.code, 2, "{}", run.all());
    for expected in [
        "2 problem(s)",
        "line 6, column 1: key `destination.colour`: unknown key",
        "line 12, column 1: key `sources.internal.streems`: unknown key; did you mean `streams`?",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    // Past the structure: dates, the plugin's config and the command line, together.
    s.manifest(
        &format!("{}{}", s.header(), internal(&s, "page_size = \"big\"\n")).replace(
            "plugin = \"internal-db\"\n",
            "plugin = \"internal-db\"\nstart_date = \"2025-13-01\"\n",
        ),
    );
    let run = s.run(&[
        "run",
        "--limit",
        "0",
        "--since",
        "2025-02-01",
        "--until",
        "2025-01-01",
    ]);
    assert_eq!(run.code, 2, "{}", run.all());
    for expected in [
        "4 problem(s)",
        "  - --limit: must be at least 1",
        "  - --since/--until: --until 2025-01-01 00:00:00 is not after --since 2025-02-01 00:00:00",
        "line 11, column 1: key `sources.internal.start_date`: `2025-13-01` is not a date",
        "key `sources.internal.config.page_size`: must be an integer",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    assert!(
        !run.stderr.contains("big"),
        "values are not repeated: {}",
        run.stderr
    );
    assert_nothing_written(&s);
}

#[test]
fn a_missing_plugin_dir_is_an_error() {
    let s = Scratch::new();
    let missing = s.path("no-such-dir");
    s.manifest(&format!("{}{}", s.header(), internal(&s, "")).replace(
        &target_dir().display().to_string(),
        &missing.display().to_string(),
    ));
    let run = s.run(&["validate"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("plugin_dir {} does not exist", missing.display())),
        "{}",
        run.stderr
    );
}

#[test]
fn sigterm_stops_a_run_like_ctrl_c_with_summary_report_and_exact_data() {
    let s = Scratch::new();
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\npage_size = 1000\nsample_data = {{ clients = 400, seed = 9, service_history_per_client = 500 }}\n",
        s.header(),
        s.path("internal.db").display()
    ));
    let check = s.run(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    let report = s.path("report.json");
    let child = s
        .command(&["run", "--report", report.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    // Observe the first commit, then SIGTERM (what systemd, Docker and Kubernetes send).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = rusqlite::Connection::open_with_flags(
            s.path("warehouse.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM _tributary_state", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
        })
        .unwrap_or(0);
        if committed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no commit observed");
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let out = child.wait_with_output().expect("run ends");
    let stopped_in = sent.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stopped_in < Duration::from_secs(5),
        "prompt stop: {stopped_in:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an incomplete run, not a kill: {stderr}"
    );
    assert!(
        stdout.contains("INCOMPLETE") && stdout.contains("service_history"),
        "summary printed: {stdout}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).expect("json");
    assert_eq!(written["streams"][0]["status"], "incomplete", "{written}");
    // What was committed is exact, and the rerun completes the rest.
    let (run, rerun) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let src = rusqlite::Connection::open(s.path("internal.db")).expect("source");
    let total = count(&src, "service_history");
    assert!(
        (rerun.records("internal.service_history") as i64) < total,
        "resumed, not restarted"
    );
    assert_eq!(count(&s.warehouse(), "internal__service_history"), total);
}

#[test]
fn relative_paths_mean_the_same_files_from_any_working_directory() {
    let s = Scratch::new();
    let project = s.path("project");
    std::fs::create_dir_all(project.join("elsewhere")).expect("dirs");
    std::fs::write(
        project.join("connectors.toml"),
        format!(
            "[host]\nplugin_dir = \"{}\"\ncredentials = \"data/credentials.json\"\n[destination]\npath = \"data/warehouse.db\"\n[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"client_profiles\"]\n[sources.internal.config]\nurl = \"sqlite:data/internal.db\"\nsample_data = {{ clients = 4 }}\n",
            target_dir().display()
        ),
    )
    .expect("manifest");
    for cwd in [project.join("elsewhere"), s.path("")] {
        let run = std::process::Command::new(target_dir().join("tributary"))
            .current_dir(&cwd)
            .args(["--manifest"])
            .arg(project.join("connectors.toml"))
            .arg("run")
            .env_remove("TRIBUTARY_MANIFEST")
            .output()
            .expect("runs");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let data: Vec<String> = std::fs::read_dir(project.join("data"))
        .expect("one data directory beside the manifest")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        data.contains(&"internal.db".to_string()) && data.contains(&"warehouse.db".to_string()),
        "{data:?}"
    );
    for stray in [project.join("elsewhere/data"), s.path("data")] {
        assert!(
            !stray.exists(),
            "nothing under the working directory: {}",
            stray.display()
        );
    }
    let wh = rusqlite::Connection::open(project.join("data/warehouse.db")).expect("warehouse");
    assert_eq!(count(&wh, "internal__client_profiles"), 4);
}

#[test]
fn unknown_state_targets_and_streams_are_errors_listing_what_exists() {
    let s = Scratch::new();
    s.manifest(&format!("{}{}", s.header(), internal(&s, "")));
    let (run, _) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    for cmd in ["reset", "show"] {
        let out = s.run(&["state", cmd, "nosuch"]);
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.stderr.contains("no source `nosuch`") && out.stderr.contains("internal"),
            "{}",
            out.stderr
        );
        let out = s.run(&["state", cmd, "internal.nosuch"]);
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.stderr.contains("no saved state for stream `nosuch`")
                && out.stderr.contains("client_profiles"),
            "{}",
            out.stderr
        );
    }
    let out = s.run(&["state", "reset", "internal.contracts"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("reset 1"), "{}", out.stdout);

    let out = s.run(&["run", "--stream", "nosuch"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("`nosuch`") && out.stderr.contains("offers: client_profiles"),
        "names the streams that exist: {}",
        out.stderr
    );
    // A --stream that filters the manifest's own list down to nothing says so.
    s.manifest(&format!("{}{}", s.header(), internal(&s, "")).replace(
        "plugin = \"internal-db\"\n",
        "plugin = \"internal-db\"\nstreams = [\"contracts\"]\n",
    ));
    let out = s.run(&["run", "--stream", "client_profiles"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(
            "no stream selected by --stream client_profiles among the manifest's streams"
        ) && out.stderr.contains("offers: client_profiles"),
        "{}",
        out.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_credentials_file_readable_by_others_is_tightened_when_opened() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.manifest(&format!("{}{}", s.header(), internal(&s, "")));
    let store = s.path("credentials.json");
    std::fs::write(&store, "{\"internal\": {}}").expect("store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = s.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mode = std::fs::metadata(&store)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "tightened");
    assert!(
        out.stderr.contains("tightened it to 0600"),
        "and said so: {}",
        out.stderr
    );
}

/// Files beside `db` whose names start with `<db name>.tmp-`.
fn sample_temporaries(db: &std::path::Path) -> Vec<std::path::PathBuf> {
    let prefix = format!(
        "{}.tmp-",
        db.file_name().expect("file name").to_string_lossy()
    );
    std::fs::read_dir(db.parent().expect("dir"))
        .expect("read dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_sample_database_killed_half_made_is_cleaned_up_by_the_next_run() {
    let s = Scratch::new();
    let db = s.path("internal.db");
    s.manifest(&format!(
        "{}[sources.internal]\nplugin = \"internal-db\"\nstreams = [\"service_history\"]\n[sources.internal.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 400, seed = 5, service_history_per_client = 500 }}\n",
        s.header(),
        db.display()
    ));
    // Kill -9 while the sample is being generated into its temporary file.
    let mut child = s
        .command(&["check"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("host starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sample_temporaries(&db).is_empty() {
        if let Some(status) = child.try_wait().expect("status") {
            panic!("check finished ({status}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "no temporary appeared in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("host ends");
    assert!(!db.exists(), "no half-made database in place");
    let left = sample_temporaries(&db);
    assert_eq!(left.len(), 1, "the killed run left its temporary: {left:?}");

    let run = s.run(&["check"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        sample_temporaries(&db).is_empty(),
        "the stale temporary was removed"
    );
    let src = rusqlite::Connection::open(&db).expect("sample database");
    assert_eq!(count(&src, "service_history"), 400 * 500);
}

#[test]
fn two_sources_on_one_sample_file_create_it_once() {
    let s = Scratch::new();
    let db = s.path("internal.db");
    let source = |name: &str| {
        format!(
            "[sources.{name}]\nplugin = \"internal-db\"\n[sources.{name}.config]\nurl = \"sqlite:{}\"\nsample_data = {{ clients = 40, seed = 9 }}\n\n",
            db.display()
        )
    };
    s.manifest(&format!("{}{}{}", s.header(), source("a"), source("b")));
    let (run, report) = s.sync(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let src = rusqlite::Connection::open(&db).expect("sample database");
    let wh = s.warehouse();
    for table in ["client_profiles", "service_history", "contracts"] {
        let n = count(&src, table);
        assert!(n > 0, "{table}");
        for name in ["a", "b"] {
            assert_eq!(report.records(&format!("{name}.{table}")), n as u64);
            assert_eq!(count(&wh, &format!("{name}__{table}")), n, "{name} {table}");
        }
    }
}
