//! The field rules that validator's built-in checks do not cover. Each returns a
//! `ValidationError` whose code is stable and whose message says what is expected; the
//! CHECK constraints of `migrations/V1__orders.sql` mirror them.

use std::borrow::Cow;

use validator::ValidationError;

use crate::domain::order::{InvalidUid, MAX_ID_LEN};

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

pub fn identifier(s: &str) -> Result<(), ValidationError> {
    check_identifier(s).map_err(|e| match e {
        InvalidUid::Empty => error("empty", "must not be empty"),
        InvalidUid::TooLong => error("too_long", "must be at most 64 characters"),
        InvalidUid::NotAlphanumeric => error(
            "not_alphanumeric",
            "must hold only ASCII letters and digits",
        ),
    })
}

pub fn non_empty(s: &str) -> Result<(), ValidationError> {
    if s.trim().is_empty() {
        Err(error("empty", "must not be empty"))
    } else {
        Ok(())
    }
}

pub fn numeric(s: &str) -> Result<(), ValidationError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(error("not_numeric", "must be a non-empty string of digits"))
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

pub fn locale(s: &str) -> Result<(), ValidationError> {
    match language_tags::LanguageTag::parse(s) {
        Ok(tag) if tag.is_valid() => Ok(()),
        _ => Err(error(
            "locale",
            "must be a BCP 47 language tag such as en or pt-BR",
        )),
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

pub fn non_zero(n: i64) -> Result<(), ValidationError> {
    if n == 0 {
        Err(error("zero", "must not be 0"))
    } else {
        Ok(())
    }
}
