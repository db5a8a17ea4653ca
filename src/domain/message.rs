//! A message as ingest sees it: owned bytes and where it came from, free of any Kafka
//! client type, and what is sent to the dead-letter topic about it.

use sha2::{Digest, Sha256};

use super::validate::RejectReason;

/// One consumed message, copied out of the client before it crosses tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundMessage {
    /// Topic the message was read from.
    pub topic: String,
    /// Partition the message was read from.
    pub partition: i32,
    /// Offset of the message in its partition.
    pub offset: i64,
    /// The broker's or producer's timestamp, unix milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The message key, any bytes (our producer uses the order uid).
    pub key: Option<Vec<u8>>,
    /// The message value; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers in order; a name that was not UTF-8 arrives as U+FFFD without a value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Header a producer sets to the unix milliseconds it sent the message at.
pub const PRODUCED_AT_HEADER: &str = "x-produced-at";

impl InboundMessage {
    /// The payload, empty for a tombstone.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// `x-produced-at`, when present and a number.
    pub fn produced_at_ms(&self) -> Option<i64> {
        std::str::from_utf8(self.header(PRODUCED_AT_HEADER)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Where the message is, plus a hash of its payload: a topic deleted and created again
    /// reuses offsets, and its new messages must not pass for the old ones.
    pub fn id(&self) -> MessageId {
        MessageId {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            payload_hash: Sha256::digest(self.payload()).into(),
        }
    }
}

/// Identity of a consumed message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId {
    /// Topic the message was read from.
    pub topic: String,
    /// Partition the message was read from.
    pub partition: i32,
    /// Offset of the message in its partition.
    pub offset: i64,
    /// SHA-256 of the payload: a re-created topic whose offsets restart does not pass for the old one.
    pub payload_hash: [u8; 32],
}

/// Why a message goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not an acceptable order (or one the database refused, as `invalid`).
    Rejected(RejectReason),
    /// Its uid is stored with other content.
    Conflict,
}

impl DeadLetterReason {
    /// Every reason, in a fixed order: the values of the `reason` label.
    pub fn all() -> impl Iterator<Item = Self> {
        RejectReason::ALL
            .into_iter()
            .map(Self::Rejected)
            .chain([Self::Conflict])
    }

    /// The stable code: the `x-dlq-reason` header and the metric label.
    pub fn code(self) -> &'static str {
        match self {
            Self::Rejected(reason) => reason.code(),
            Self::Conflict => "conflict",
        }
    }
}

/// A message bound for the dead-letter topic, with its reason code and a readable detail.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The message sent on, unchanged.
    pub message: &'a InboundMessage,
    /// Where it came from, for the ledger that keeps a replay from sending it twice.
    pub id: MessageId,
    /// Why it was set aside.
    pub reason: DeadLetterReason,
    /// At most [`MAX_DETAIL_BYTES`], control characters escaped: it travels in a header.
    pub detail: String,
    /// The order uid the payload holds, when it is readable enough to find one.
    pub order_uid: Option<String>,
}

/// Headers the dead-letter topic adds to each message. Incoming headers with the prefix are
/// dropped, so that no client can forge them.
pub const DLQ_HEADER_PREFIX: &str = "x-dlq-";

/// Whether a header is one of the dead-letter headers' names, in any case: the one rule by
/// which ingest drops a producer's copies of ours and redrive drops ours before resending
/// (Kafka header names are bytes; `X-DLQ-Reason` must not pass for a header of the
/// producer's).
pub fn is_dlq_header(name: &str) -> bool {
    name.len() >= DLQ_HEADER_PREFIX.len()
        && name.as_bytes()[..DLQ_HEADER_PREFIX.len()]
            .eq_ignore_ascii_case(DLQ_HEADER_PREFIX.as_bytes())
}
/// Header: the reason code.
pub const DLQ_REASON: &str = "x-dlq-reason";
/// Header: every broken rule, readable, bounded in size.
pub const DLQ_DETAIL: &str = "x-dlq-detail";
/// Header: the topic the message was read from.
pub const DLQ_ORIGINAL_TOPIC: &str = "x-dlq-original-topic";
/// Header: its partition.
pub const DLQ_ORIGINAL_PARTITION: &str = "x-dlq-original-partition";
/// Header: its offset.
pub const DLQ_ORIGINAL_OFFSET: &str = "x-dlq-original-offset";
/// Header: its timestamp (unix ms), when it had one.
pub const DLQ_ORIGINAL_TIMESTAMP: &str = "x-dlq-original-timestamp";
/// Set on a letter whose original was too large to publish (see [`DeadLetter::headers`]).
pub const DLQ_TRUNCATED: &str = "x-dlq-truncated";

/// Longest `x-dlq-detail`: a message breaking every rule of a thousand items would
/// otherwise make a header larger than some brokers accept.
pub const MAX_DETAIL_BYTES: usize = 4096;

impl<'a> DeadLetter<'a> {
    /// A letter for `message`, its detail made safe for a header (bounded, escaped).
    pub fn new(message: &'a InboundMessage, reason: DeadLetterReason, detail: &str) -> Self {
        Self {
            message,
            id: message.id(),
            reason,
            detail: printable_detail(detail),
            order_uid: uid_in(message.payload()),
        }
    }
}

/// Payloads larger than this are not searched for a uid (a dead letter's record only).
const MAX_PEEK_BYTES: usize = 4 << 20;

/// The `order_uid` of a payload that is JSON enough to hold a valid one at its top level,
/// whatever else is wrong with it.
pub fn uid_in(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        order_uid: Option<serde_json::Value>,
    }
    if payload.len() > MAX_PEEK_BYTES {
        return None;
    }
    let peek: Peek = serde_json::from_slice(payload).ok()?;
    let uid = peek.order_uid?.as_str()?.to_owned();
    super::order::OrderUid::parse(uid)
        .ok()
        .map(|u| u.as_str().to_owned())
}

impl DeadLetter<'_> {
    /// The headers to publish: the original's in order (without any named `x-dlq-*`, and
    /// none at all when `truncated`), then ours, each once.
    pub fn headers(&self, truncated: bool) -> Vec<(&str, Option<Vec<u8>>)> {
        let m = self.message;
        let mut out: Vec<(&str, Option<Vec<u8>>)> = Vec::with_capacity(m.headers.len() + 7);
        if !truncated {
            out.extend(
                m.headers
                    .iter()
                    .filter(|(k, _)| !is_dlq_header(k))
                    .map(|(k, v)| (k.as_str(), v.clone())),
            );
        }
        let timestamp = m.timestamp_ms.map(|t| t.to_string()).unwrap_or_default();
        for (key, value) in [
            (DLQ_REASON, self.reason.code().to_owned()),
            (DLQ_DETAIL, self.detail.clone()),
            (DLQ_ORIGINAL_TOPIC, m.topic.clone()),
            (DLQ_ORIGINAL_PARTITION, m.partition.to_string()),
            (DLQ_ORIGINAL_OFFSET, m.offset.to_string()),
            (DLQ_ORIGINAL_TIMESTAMP, timestamp),
        ] {
            out.push((key, Some(value.into_bytes())));
        }
        if truncated {
            out.push((DLQ_TRUNCATED, Some(b"true".to_vec())));
        }
        out
    }
}

/// The detail with control characters (NUL, newlines, escape sequences) written as `\u{..}`
/// escapes, cut at a character boundary to [`MAX_DETAIL_BYTES`] with a note of the cut.
pub fn printable_detail(detail: &str) -> String {
    const CUT: &str = " [cut]";
    let mut out = String::with_capacity(detail.len().min(MAX_DETAIL_BYTES));
    for c in detail.chars() {
        let piece = if c.is_control() {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > MAX_DETAIL_BYTES - CUT.len() {
            out.push_str(CUT);
            return out;
        }
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn a_producers_copies_of_our_headers_are_dropped_in_any_case() {
        let message = InboundMessage {
            topic: "orders".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: None,
            key: None,
            payload: Some(b"{}".to_vec()),
            headers: vec![
                ("traceparent".into(), Some(b"00-aa-bb-01".to_vec())),
                ("X-DLQ-Reason".into(), Some(b"forged".to_vec())),
                ("x-Dlq-Original-Offset".into(), Some(b"1".to_vec())),
                ("x-dlq-detail".into(), None),
                ("x-dlq".into(), Some(b"not ours: no dash".to_vec())),
            ],
        };
        let letter = DeadLetter::new(&message, DeadLetterReason::Conflict, "bad");
        let names: Vec<&str> = letter.headers(false).iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "traceparent",
                "x-dlq",
                DLQ_REASON,
                DLQ_DETAIL,
                DLQ_ORIGINAL_TOPIC,
                DLQ_ORIGINAL_PARTITION,
                DLQ_ORIGINAL_OFFSET,
                DLQ_ORIGINAL_TIMESTAMP
            ]
        );
        assert!(is_dlq_header("X-DLQ-anything") && !is_dlq_header("x-dl") && !is_dlq_header(""));
    }
}
