//! Any message (key, payload, headers of any names and values, as the consumer copies them)
//! turned into a dead letter: every header of ours exactly once and nothing forged, the
//! original headers kept in order, the detail bounded and printable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use order_svc::domain::message::{
    DLQ_HEADER_PREFIX, DLQ_TRUNCATED, DeadLetter, DeadLetterReason, InboundMessage,
    MAX_DETAIL_BYTES,
};
use order_svc::domain::validate::RejectReason;

const OURS: [&str; 6] = [
    "x-dlq-reason",
    "x-dlq-detail",
    "x-dlq-original-topic",
    "x-dlq-original-partition",
    "x-dlq-original-offset",
    "x-dlq-original-timestamp",
];

fuzz_target!(|data: &[u8]| {
    // 0xFF separates the parts: key, payload, then header name and value pairs.
    let mut parts = data.split(|&b| b == 0xFF);
    let key = parts.next().map(<[u8]>::to_vec);
    let payload = parts.next().map(<[u8]>::to_vec);
    let mut headers = Vec::new();
    while let Some(name) = parts.next() {
        let value = parts.next().map(<[u8]>::to_vec);
        headers.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    let message = InboundMessage {
        topic: "orders".into(),
        partition: data.len() as i32 % 3,
        offset: data.len() as i64,
        timestamp_ms: Some(1),
        key,
        payload,
        headers,
    };
    let detail = String::from_utf8_lossy(message.payload()).into_owned();
    let letter = DeadLetter::new(
        &message,
        DeadLetterReason::Rejected(RejectReason::Invalid),
        &detail,
    );
    assert!(letter.detail.len() <= MAX_DETAIL_BYTES);
    assert!(!letter.detail.chars().any(char::is_control));

    for truncated in [false, true] {
        let out = letter.headers(truncated);
        for ours in OURS {
            assert_eq!(out.iter().filter(|(k, _)| *k == ours).count(), 1, "{ours}");
        }
        let forged = out
            .iter()
            .filter(|(k, _)| k.starts_with(DLQ_HEADER_PREFIX))
            .count();
        assert_eq!(
            forged,
            OURS.len() + usize::from(truncated),
            "only ours carry the prefix"
        );
        assert_eq!(out.iter().any(|(k, _)| *k == DLQ_TRUNCATED), truncated);
        let kept: Vec<_> = out
            .iter()
            .filter(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX))
            .collect();
        if truncated {
            assert!(kept.is_empty());
        } else {
            let expected: Vec<_> = message
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX))
                .collect();
            assert_eq!(kept.len(), expected.len());
            for ((k, v), (ek, ev)) in kept.iter().zip(expected) {
                assert_eq!(k, ek);
                assert_eq!(v, ev);
            }
        }
    }
});
