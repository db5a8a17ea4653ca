//! Any text as a dead-letter detail: bounded, and nothing a header or a terminal would
//! choke on (no control character survives).
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_svc::domain::message::{MAX_DETAIL_BYTES, printable_detail};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shown = printable_detail(&text);
    assert!(shown.len() <= MAX_DETAIL_BYTES, "{} bytes", shown.len());
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    if text.len() <= MAX_DETAIL_BYTES / 8 {
        assert!(
            !shown.ends_with(" [cut]") || text.ends_with(" [cut]"),
            "a short detail is not cut"
        );
    }
});
