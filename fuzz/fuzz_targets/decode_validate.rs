//! Any bytes through the gate: decode, validate, canonical JSON. Never a panic, and what is
//! accepted is a fixed point: its canonical JSON is accepted again, unchanged, with the same
//! content hash (so a redelivery of what we serve is a duplicate, never a conflict). No
//! accepted string is longer than the free-text bound, and a rejection never repeats a
//! key of the input that is not a field of ours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_svc::domain::validate::{Consistency, accept};

/// Every name of a field of an order (any level): what a rejection may name.
const FIELDS: &str = include_str!("../../tests/data/model.json");

fuzz_target!(|data: &[u8]| {
    for consistency in [Consistency::Warn, Consistency::Reject] {
        let checked = match accept(data, 1 << 20, consistency) {
            Ok(checked) => checked,
            Err(rejection) => {
                let detail = rejection.detail();
                if let Ok(input) = serde_json::from_slice::<serde_json::Value>(data) {
                    let ours: serde_json::Value =
                        serde_json::from_str(FIELDS).expect("the model is JSON");
                    let mut known = Vec::new();
                    keys(&ours, &mut known);
                    let mut theirs = Vec::new();
                    keys(&input, &mut theirs);
                    for key in theirs {
                        // Our words are ASCII: a long key with a letter beyond it cannot be
                        // in a detail by chance, only by being copied there.
                        let foreign = key.chars().any(|c| !c.is_ascii() && c.is_alphabetic());
                        if foreign && key.chars().count() >= 12 && !known.contains(&key) {
                            assert!(!detail.contains(&key), "{key:?} in {detail:?}");
                        }
                    }
                }
                continue;
            }
        };
        let json = checked.json();
        let again = accept(json, 1 << 20, consistency).expect("canonical JSON is accepted again");
        assert_eq!(again.json(), json, "canonical JSON is a fixed point");
        assert_eq!(again.content_hash(), checked.content_hash());
        let value: serde_json::Value =
            serde_json::from_slice(json).expect("canonical JSON is JSON");
        assert!(!has_nul(&value), "no NUL character reaches storage");
        assert!(longest(&value) <= 256, "no string past the free-text bound");
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

fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        serde_json::Value::Object(fields) => {
            for (k, v) in fields {
                out.push(k.clone());
                keys(v, out);
            }
        }
        _ => {}
    }
}

fn longest(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.chars().count(),
        serde_json::Value::Array(items) => items.iter().map(longest).max().unwrap_or(0),
        serde_json::Value::Object(fields) => fields.values().map(longest).max().unwrap_or(0),
        _ => 0,
    }
}
