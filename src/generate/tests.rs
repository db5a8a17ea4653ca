//! Unit tests of the generator: every corruption is caught as intended, valid orders pass
//! every rule, seeds reproduce, rates and kinds are drawn as asked.

use std::collections::{HashMap, HashSet};

use super::{Corruption, GenerateOptions, Generator};
use crate::domain::validate::{Consistency, accept};

const LIMIT: usize = 1024 * 1024;

fn options(seed: u64, invalid_rate: f64) -> GenerateOptions {
    GenerateOptions {
        seed,
        invalid_rate,
        max_items: 6,
        ..GenerateOptions::default()
    }
}

#[test]
fn every_corruption_kind_is_rejected_with_the_path_it_breaks() {
    let mut generator = Generator::new(options(7, 1.0));
    let mut seen = HashSet::new();
    for _ in 0..2_000 {
        let message = generator.next_message();
        let kind = message
            .corruption
            .expect("invalid rate 1 makes every order invalid");
        seen.insert(kind);
        let (reason, path) = kind.expected();
        let rejection = accept(&message.bytes, LIMIT, Consistency::Reject)
            .expect_err(&format!("{kind:?} must be rejected"));
        assert_eq!(rejection.reason, reason, "{kind:?}: {rejection}");
        assert!(
            rejection.errors.iter().any(|e| e.path == path),
            "{kind:?} must name {path:?}: {rejection}"
        );
        if kind == Corruption::InconsistentTotals {
            assert!(accept(&message.bytes, LIMIT, Consistency::Warn).is_ok());
        }
    }
    assert_eq!(seen.len(), Corruption::ALL.len(), "every kind is drawn");
}

#[test]
fn thousands_of_generated_valid_orders_pass_every_rule() {
    for seed in 0..20 {
        let mut generator = Generator::new(options(seed, 0.0));
        for _ in 0..500 {
            let message = generator.next_message();
            assert!(message.corruption.is_none());
            if let Err(r) = accept(&message.bytes, LIMIT, Consistency::Reject) {
                panic!(
                    "seed {seed}: {r}\n{}",
                    String::from_utf8_lossy(&message.bytes)
                );
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let run = |seed| {
        let mut g = Generator::new(options(seed, 0.3));
        (0..200)
            .flat_map(|_| g.next_message().bytes)
            .collect::<Vec<u8>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn invalid_rate_and_kinds_are_drawn_as_asked() {
    let mut generator = Generator::new(options(11, 0.1));
    let mut uids = HashSet::new();
    let mut kinds: HashMap<Corruption, usize> = HashMap::new();
    for _ in 0..10_000 {
        let message = generator.next_message();
        if let Some(kind) = message.corruption {
            *kinds.entry(kind).or_default() += 1;
        } else {
            assert!(uids.insert(message.uid.unwrap()), "valid uids are unique");
        }
    }
    let invalid: usize = kinds.values().sum();
    assert!(
        (900..=1_100).contains(&invalid),
        "{invalid} invalid of 10000 at rate 0.1"
    );
    for kind in Corruption::ALL {
        let n = kinds.get(&kind).copied().unwrap_or(0);
        assert!(
            (25..=110).contains(&n),
            "{kind:?} drawn {n} times of ~{invalid}/16"
        );
    }
}

#[test]
fn array_output_never_draws_raw_corruptions() {
    let mut generator = Generator::new(GenerateOptions {
        allow_raw: false,
        ..options(5, 1.0)
    });
    for _ in 0..1_000 {
        let message = generator.next_message();
        assert!(!message.corruption.unwrap().is_raw());
    }
}
