//! The field rules that validator's built-in checks do not cover. Each returns a
//! `ValidationError` whose code is stable and whose message says what is expected; the
//! CHECK constraints of `migrations/V1__orders.sql` mirror them.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};
use validator::ValidationError;

/// The longest `order_uid` (and other identifiers) we accept. The existing service had no
/// bound; 64 keeps keys, cache entries and log lines small.
pub const MAX_ID_LEN: usize = 64;

/// Most characters of a free-text field (names, addresses, cities, brands, ...): enough for
/// any real one, and a page of 200 orders stays small whatever producers send.
pub const MAX_TEXT_CHARS: usize = 256;
/// Most digits of a numeric string (zip, shardkey, oof_shard).
pub const MAX_DIGITS: usize = 32;
/// Most characters of an e-mail address (RFC 5321's path limit, less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Why a string is not an [`OrderUid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUid {
    /// No characters.
    #[error("order uid is empty")]
    Empty,
    /// More than [`MAX_ID_LEN`] characters.
    #[error("order uid is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// A character other than an ASCII letter or digit.
    #[error("order uid may hold only ASCII letters and digits")]
    NotAlphanumeric,
}

fn error(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Borrowed(message))
}

/// The uid rule, shared by [`crate::domain::order::OrderUid::parse`].
pub fn check_identifier(s: &str) -> Result<(), InvalidUid> {
    if s.is_empty() {
        Err(InvalidUid::Empty)
    } else if s.len() > MAX_ID_LEN {
        Err(InvalidUid::TooLong)
    } else if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Err(InvalidUid::NotAlphanumeric)
    } else {
        Ok(())
    }
}

/// ASCII letters and digits, 1 to [`MAX_ID_LEN`].
pub fn identifier(s: &str) -> Result<(), ValidationError> {
    check_identifier(s).map_err(|e| match e {
        InvalidUid::Empty => error("empty", "must not be empty"),
        InvalidUid::TooLong => ValidationError::new("too_long").with_message(Cow::Owned(format!(
            "must be at most {MAX_ID_LEN} characters"
        ))),
        InvalidUid::NotAlphanumeric => error(
            "not_alphanumeric",
            "must hold only ASCII letters and digits",
        ),
    })
}

/// Free text that may be empty. PostgreSQL's `text` cannot hold NUL, so no string may.
pub fn text(s: &str) -> Result<(), ValidationError> {
    if s.contains('\0') {
        Err(error("nul", "must not contain the NUL character (\\u0000)"))
    } else if s.chars().count() > MAX_TEXT_CHARS {
        Err(
            ValidationError::new("too_long").with_message(Cow::Owned(format!(
                "must be at most {MAX_TEXT_CHARS} characters"
            ))),
        )
    } else {
        Ok(())
    }
}

/// Free text with something besides white space in it.
pub fn non_empty(s: &str) -> Result<(), ValidationError> {
    text(s)?;
    if s.trim().is_empty() {
        Err(error("empty", "must not be empty"))
    } else {
        Ok(())
    }
}

/// An address validator's e-mail rule accepts, written plainly: one `@`, no white space or
/// control characters anywhere (validator alone lets `a@b c[127.0.0.1]` through).
pub fn email(s: &str) -> Result<(), ValidationError> {
    use validator::ValidateEmail;
    if s.chars().count() > MAX_EMAIL_CHARS {
        return Err(
            ValidationError::new("too_long").with_message(Cow::Owned(format!(
                "must be at most {MAX_EMAIL_CHARS} characters"
            ))),
        );
    }
    let plain = s.bytes().filter(|&b| b == b'@').count() == 1
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if plain && s.validate_email() {
        Ok(())
    } else {
        Err(error("email", "must be an e-mail address"))
    }
}

/// Decimal digits only, at least one.
pub fn numeric(s: &str) -> Result<(), ValidationError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        Err(error("not_numeric", "must be a non-empty string of digits"))
    } else if s.len() > MAX_DIGITS {
        Err(ValidationError::new("too_long")
            .with_message(Cow::Owned(format!("must be at most {MAX_DIGITS} digits"))))
    } else {
        Ok(())
    }
}

/// E.164: a `+`, a non-zero country digit, at most 15 digits in all.
pub fn phone(s: &str) -> Result<(), ValidationError> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(error(
            "phone",
            "must be an E.164 phone number such as +9720000000",
        ))
    }
}

/// A BCP 47 tag, and of the plain shape `letters(-letters or digits)*` (the parser alone
/// accepts `x--`).
pub fn locale(s: &str) -> Result<(), ValidationError> {
    let mut parts = s.split('-');
    let plain = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphabetic()))
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    match language_tags::LanguageTag::parse(s) {
        Ok(tag) if plain && tag.is_valid() => Ok(()),
        _ => Err(error(
            "locale",
            "must be a BCP 47 language tag such as en or pt-BR",
        )),
    }
}

/// The first and last instants `date_created` may hold: years 1 to 9999 in UTC, which
/// PostgreSQL, chrono and RFC 3339 (four-digit years) all represent.
pub const DATE_MIN: &str = "0001-01-01T00:00:00Z";
/// The latest `date_created` the gate and storage both hold.
pub const DATE_MAX: &str = "9999-12-31T23:59:59.999999Z";

/// Within [`DATE_MIN`]..=[`DATE_MAX`], and not a leap second (`:60`), which PostgreSQL
/// would store as the next second. Finer than microseconds never reaches here: decoding
/// truncates to what PostgreSQL keeps.
pub fn date_created(dt: &DateTime<Utc>) -> Result<(), ValidationError> {
    if !(1..=9999).contains(&dt.year()) {
        Err(error(
            "date_range",
            "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z once in UTC",
        ))
    } else if dt.nanosecond() >= 1_000_000_000 {
        Err(error(
            "leap_second",
            "must not be a leap second (:60), which cannot be stored",
        ))
    } else {
        Ok(())
    }
}

/// An active ISO 4217 code, upper case as the standard writes it.
pub fn currency(s: &str) -> Result<(), ValidationError> {
    if s.len() == 3 && iso_currency::Currency::from_code(s).is_some() {
        Ok(())
    } else {
        Err(error(
            "currency",
            "must be an ISO 4217 currency code such as USD",
        ))
    }
}

/// Anything but 0.
pub fn non_zero(n: i64) -> Result<(), ValidationError> {
    if n == 0 {
        Err(error("zero", "must not be 0"))
    } else {
        Ok(())
    }
}
