//! Any bytes through the gate: decode, validate, canonical JSON. Never a panic, and what is
//! accepted is a fixed point: its canonical JSON is accepted again, unchanged, with the same
//! content hash (so a redelivery of what we serve is a duplicate, never a conflict).
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_svc::domain::validate::{Consistency, accept};

fuzz_target!(|data: &[u8]| {
    for consistency in [Consistency::Warn, Consistency::Reject] {
        let Ok(checked) = accept(data, 1 << 20, consistency) else {
            continue;
        };
        let json = checked.json();
        let again = accept(json, 1 << 20, consistency).expect("canonical JSON is accepted again");
        assert_eq!(again.json(), json, "canonical JSON is a fixed point");
        assert_eq!(again.content_hash(), checked.content_hash());
        let value: serde_json::Value =
            serde_json::from_slice(json).expect("canonical JSON is JSON");
        assert!(!has_nul(&value), "no NUL character reaches storage");
        assert_eq!(value["order_uid"].as_str(), Some(checked.uid().as_str()));
    }
});

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(fields) => fields.values().any(has_nul),
        _ => false,
    }
}
