//! The manifest parser and planner on arbitrary text. Invariant: parsing either succeeds
//! (and planning then returns a plan or a list of problems) or fails with a message that
//! names the file; nothing panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tributary::loader::Registry;
use tributary::manifest;
use tributary::plan::{self, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    match manifest::parse(text, file) {
        Ok(m) => {
            // No plugins: every selected source fails to resolve, which must be a
            // problem in the list, never a panic.
            if let Err(problems) = plan::build(&m, Path::new("/nonexistent"), &Registry::default(), &Overrides::default()) {
                assert!(!problems.is_empty(), "an error with no problem");
                for p in problems {
                    assert!(!p.trim().is_empty(), "an empty problem");
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.toml"), "the message names the file: {msg}");
        }
    }
});
