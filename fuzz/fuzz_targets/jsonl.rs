//! The JSONL destination's readers on arbitrary bytes: the `_state.json` file and the
//! data-file scan a snapshot uses. Invariant: each either succeeds or returns an error
//! naming the file; a successful scan covers exactly the input's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::destination::{read_state_file, scan_last_lines};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = read_state_file(data) {
        assert!(e.to_string().contains("_state.json"), "{e}");
    }
    match scan_last_lines(data, "data.jsonl") {
        Ok(keys) => {
            for (offset, len, _) in keys.values() {
                let end = *offset as usize + len;
                assert!(end <= data.len(), "a line past the end");
                assert!(end == data.len() || data[end - 1] == b'\n', "lines end at a newline");
            }
        }
        Err(e) => assert!(e.to_string().contains("data.jsonl"), "{e}"),
    }
});
