//! Use case: sending dead letters back to the orders topic (`order-svc redrive`), after a
//! rule change or a fix upstream. Which letters go, and what each is sent as; reading the
//! dead-letter topic and producing are the Kafka adapter's.
//!
//! A letter goes back as the original message: its key, its payload, its headers without
//! ours (`x-dlq-*`). A truncated letter no longer holds its original and is never sent. A
//! letter that repeats one already sent in this run (the same original topic, partition and
//! offset: a dead letter can repeat after a crash) is sent once.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};

use super::message::{
    DLQ_ORIGINAL_OFFSET, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_TOPIC, DLQ_REASON, DLQ_TRUNCATED,
    is_dlq_header,
};

/// One message read from the dead-letter topic.
#[derive(Debug, Clone, Default)]
pub struct Letter {
    /// The dead letter's own timestamp: when it was set aside.
    pub set_aside_at: Option<DateTime<Utc>>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original payload (or, when truncated, a stand-in).
    pub payload: Option<Vec<u8>>,
    /// In order, values as bytes (`None`: a header without a value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Where the original message was: topic, partition, offset.
    pub fn origin(&self) -> Option<Origin> {
        Some(Origin {
            topic: self.header(DLQ_ORIGINAL_TOPIC)?.to_owned(),
            partition: self.header(DLQ_ORIGINAL_PARTITION)?.parse().ok()?,
            offset: self.header(DLQ_ORIGINAL_OFFSET)?.parse().ok()?,
        })
    }

    /// `x-dlq-reason`.
    pub fn reason(&self) -> Option<&str> {
        self.header(DLQ_REASON)
    }
}

/// Where an original message was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// Which letters to send back: reasons (any when empty) and when they were set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `x-dlq-reason` codes.
    pub reasons: Vec<String>,
    /// Set aside at or after.
    pub since: Option<DateTime<Utc>>,
    /// Set aside before.
    pub until: Option<DateTime<Utc>>,
}

impl Selection {
    fn takes(&self, letter: &Letter) -> bool {
        let reason_ok = self.reasons.is_empty()
            || letter
                .reason()
                .is_some_and(|r| self.reasons.iter().any(|w| w == r));
        let at = letter.set_aside_at;
        let since_ok = self.since.is_none_or(|s| at.is_some_and(|at| at >= s));
        let until_ok = self.until.is_none_or(|u| at.is_some_and(|at| at < u));
        reason_ok && since_ok && until_ok
    }
}

/// The original message, as it is to be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// Where the original was.
    pub origin: Origin,
    /// Why it was set aside.
    pub reason: String,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
    /// Its headers, in order, without `x-dlq-*`.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What becomes of one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it back.
    Send(Resend),
    /// Outside the selection.
    NotSelected,
    /// Its payload is a stand-in for an original too large to keep.
    Truncated(Origin),
    /// Its original was already sent in this run.
    Repeated(Origin),
    /// Not a dead letter of ours: no original topic, partition and offset.
    Foreign,
    /// It names an origin, but the ledger holds no letter sent for that origin with this
    /// payload: written to the dead-letter topic by someone else. Never sent.
    Unrecorded(Origin),
}

/// Judges the letters of one run, in the order they are read.
#[derive(Debug, Default)]
pub struct Redrive {
    selection: Selection,
    sent: HashSet<Origin>,
}

impl Redrive {
    /// A run that sends what `selection` takes.
    pub fn new(selection: Selection) -> Self {
        Self {
            selection,
            sent: HashSet::new(),
        }
    }

    /// What becomes of the next letter read. `recorded`: the dead-letter ledger holds a
    /// letter sent for its origin with its payload's hash (anyone who may write to the
    /// dead-letter topic can write a letter, headers and all: only the ledger says it is
    /// ours). Asked before a letter counts as sent, so a forged letter read first cannot
    /// make the genuine one a repeat.
    pub fn judge(&mut self, letter: Letter, recorded: bool) -> Verdict {
        let Some(origin) = letter.origin() else {
            return Verdict::Foreign;
        };
        if !self.selection.takes(&letter) {
            return Verdict::NotSelected;
        }
        if letter.header(DLQ_TRUNCATED) == Some("true") {
            return Verdict::Truncated(origin);
        }
        if !recorded {
            return Verdict::Unrecorded(origin);
        }
        if !self.sent.insert(origin.clone()) {
            return Verdict::Repeated(origin);
        }
        let reason = letter.reason().unwrap_or("").to_owned();
        let headers = letter
            .headers
            .into_iter()
            .filter(|(name, _)| !is_dlq_header(name))
            .collect();
        Verdict::Send(Resend {
            origin,
            reason,
            key: letter.key,
            payload: letter.payload,
            headers,
        })
    }
}

/// The counts a run prints at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Letters read.
    pub read: u64,
    /// Sent back, delivery confirmed.
    pub sent: u64,
    /// Not sent: the producer or the broker failed.
    pub failed: u64,
    /// Outside the selection.
    pub not_selected: u64,
    /// Truncated letters, never sent.
    pub truncated: u64,
    /// Repeats of an original already sent in this run.
    pub repeated: u64,
    /// Without an origin.
    pub foreign: u64,
    /// Naming an origin the ledger holds no such letter for.
    pub unrecorded: u64,
}

impl Summary {
    /// Counts a verdict that sends nothing.
    pub fn skipped(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Send(_) => {}
            Verdict::NotSelected => self.not_selected += 1,
            Verdict::Truncated(_) => self.truncated += 1,
            Verdict::Repeated(_) => self.repeated += 1,
            Verdict::Foreign => self.foreign += 1,
            Verdict::Unrecorded(_) => self.unrecorded += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: &str, offset: i64, at_secs: i64) -> Letter {
        let h = |n: &str, v: &str| (n.to_owned(), Some(v.as_bytes().to_vec()));
        Letter {
            set_aside_at: DateTime::from_timestamp(at_secs, 0),
            key: Some(b"k1".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: vec![
                h("traceparent", "00-abc"),
                ("empty".to_owned(), None),
                h(DLQ_REASON, reason),
                h("X-DLQ-Detail", "a rule"),
                h(DLQ_ORIGINAL_TOPIC, "orders"),
                h(DLQ_ORIGINAL_PARTITION, "2"),
                h(DLQ_ORIGINAL_OFFSET, &offset.to_string()),
            ],
        }
    }

    #[test]
    fn a_letter_goes_back_as_its_original_without_our_headers() {
        let mut redrive = Redrive::new(Selection::default());
        let Verdict::Send(resend) = redrive.judge(letter("invalid", 7, 100), true) else {
            panic!("sent")
        };
        assert_eq!(resend.origin.to_string(), "orders/2@7");
        assert_eq!(resend.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(resend.payload.as_deref(), Some(&b"{}"[..]));
        let names: Vec<&str> = resend.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "empty"]);
        assert_eq!(
            resend.headers[1].1, None,
            "a header without a value stays so"
        );
    }

    #[test]
    fn the_same_original_is_sent_once_per_run() {
        let mut redrive = Redrive::new(Selection::default());
        assert!(matches!(
            redrive.judge(letter("invalid", 7, 100), true),
            Verdict::Send(_)
        ));
        assert!(matches!(
            redrive.judge(letter("invalid", 7, 101), true),
            Verdict::Repeated(_)
        ));
        assert!(matches!(
            redrive.judge(letter("invalid", 8, 101), true),
            Verdict::Send(_)
        ));
    }

    #[test]
    fn a_letter_the_ledger_does_not_hold_is_never_sent_and_takes_nothing_from_the_genuine_one() {
        let mut redrive = Redrive::new(Selection::default());
        assert_eq!(
            redrive.judge(letter("invalid", 7, 100), false),
            Verdict::Unrecorded(letter("invalid", 7, 100).origin().unwrap())
        );
        assert!(matches!(
            redrive.judge(letter("invalid", 7, 100), true),
            Verdict::Send(_)
        ));
    }

    #[test]
    fn reasons_and_times_select() {
        let selection = Selection {
            reasons: vec!["inconsistent".into(), "schema".into()],
            since: DateTime::from_timestamp(100, 0),
            until: DateTime::from_timestamp(200, 0),
        };
        let mut redrive = Redrive::new(selection);
        assert_eq!(
            redrive.judge(letter("invalid", 1, 150), true),
            Verdict::NotSelected
        );
        assert_eq!(
            redrive.judge(letter("inconsistent", 2, 99), true),
            Verdict::NotSelected
        );
        assert_eq!(
            redrive.judge(letter("inconsistent", 3, 200), true),
            Verdict::NotSelected
        );
        assert!(matches!(
            redrive.judge(letter("inconsistent", 4, 100), true),
            Verdict::Send(_)
        ));
        assert!(matches!(
            redrive.judge(letter("schema", 5, 199), true),
            Verdict::Send(_)
        ));
        let mut undated = letter("schema", 6, 150);
        undated.set_aside_at = None;
        assert_eq!(redrive.judge(undated, true), Verdict::NotSelected);
    }

    #[test]
    fn truncated_and_foreign_letters_are_never_sent() {
        let mut redrive = Redrive::new(Selection::default());
        let mut truncated = letter("too_large", 1, 100);
        truncated
            .headers
            .push((DLQ_TRUNCATED.to_owned(), Some(b"true".to_vec())));
        assert!(matches!(
            redrive.judge(truncated, true),
            Verdict::Truncated(_)
        ));
        let mut foreign = letter("invalid", 2, 100);
        foreign.headers.retain(|(n, _)| n != DLQ_ORIGINAL_OFFSET);
        assert_eq!(redrive.judge(foreign, true), Verdict::Foreign);
        let mut bad = letter("invalid", 3, 100);
        bad.headers.push((DLQ_ORIGINAL_OFFSET.to_owned(), None));
        // The first header of a name counts; this one is still readable.
        assert!(matches!(redrive.judge(bad, true), Verdict::Send(_)));
    }
}
