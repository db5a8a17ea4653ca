//! Deciding whether bytes are an acceptable order.
//!
//! Two steps, each reporting *every* problem it finds with a field path
//! (`delivery.phone`, `items[2].sale`):
//! 1. [`decode`]: size limit, UTF-8, JSON syntax, then the exact shape (unknown, missing or
//!    mistyped fields are errors);
//! 2. [`check`]: the field rules (declared on the types in [`crate::domain::order`]) and the
//!    cross-field consistency of the money, which is enforced or only reported depending on
//!    [`Consistency`].

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::order::{ContentHash, Order, OrderUid};

/// Why a message cannot become an order. The codes are stable: they are the dead-letter
/// `x-dlq-reason` values and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Larger than the configured message limit.
    TooLarge,
    /// Empty, not UTF-8, or not JSON.
    Malformed,
    /// JSON, but not the order's shape: an unknown, missing or mistyped field.
    Schema,
    /// The shape is right but a field rule is broken.
    Invalid,
    /// Every field is fine but the totals do not add up (only with [`Consistency::Reject`]).
    Inconsistent,
}

impl RejectReason {
    /// Every reason, for descriptions and tests.
    pub const ALL: [RejectReason; 5] = [
        Self::TooLarge,
        Self::Malformed,
        Self::Schema,
        Self::Invalid,
        Self::Inconsistent,
    ];

    /// The stable code: the `x-dlq-reason` header and the metric label.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Schema => "schema",
            Self::Invalid => "invalid",
            Self::Inconsistent => "inconsistent",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One broken rule: where, which rule (a short code), and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with list indexes, e.g. `items[0].price`; empty for the whole message.
    pub path: String,
    /// The rule's stable code, such as `not_e164`.
    pub code: String,
    /// What the rule expects, for people.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A message that is not an acceptable order, with everything wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {}", join(.errors))]
pub struct Rejection {
    /// The kind of refusal.
    pub reason: RejectReason,
    /// Every broken rule, with its field path.
    pub errors: Vec<FieldError>,
}

impl Rejection {
    fn whole(reason: RejectReason, code: &str, message: String) -> Self {
        Self {
            reason,
            errors: vec![FieldError {
                path: String::new(),
                code: code.to_owned(),
                message,
            }],
        }
    }

    /// The field errors as one human-readable line (the dead-letter `x-dlq-detail`).
    pub fn detail(&self) -> String {
        join(&self.errors)
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to do with an order whose fields are valid but whose totals do not add up.
/// Data from the existing service's emulator breaks these rules, hence the `warn` default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reject it as `inconsistent`.
    Reject,
    /// Accept it; the problems travel with the order as warnings.
    #[default]
    Warn,
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Self::Reject),
            "warn" => Ok(Self::Warn),
            other => Err(format!("expected `reject` or `warn`, got `{other}`")),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reject => "reject",
            Self::Warn => "warn",
        })
    }
}

/// An order that passed [`check`]: its uid is proven valid and its canonical JSON and content
/// hash are computed once, here.
#[derive(Debug, Clone)]
pub struct CheckedOrder {
    uid: OrderUid,
    order: Order,
    json: Bytes,
    hash: ContentHash,
    warnings: Vec<FieldError>,
}

impl CheckedOrder {
    /// The order's uid, checked.
    pub fn uid(&self) -> &OrderUid {
        &self.uid
    }
    /// The order as decoded.
    pub fn order(&self) -> &Order {
        &self.order
    }
    /// Canonical compact JSON of the order, shared (cloning it copies nothing).
    pub fn json(&self) -> &Bytes {
        &self.json
    }
    /// SHA-256 of the canonical JSON.
    pub fn content_hash(&self) -> &ContentHash {
        &self.hash
    }
    /// Consistency problems tolerated under [`Consistency::Warn`].
    pub fn warnings(&self) -> &[FieldError] {
        &self.warnings
    }
}

/// Bytes to an [`Order`], refusing anything over `max_bytes`, anything that is not JSON, and
/// any JSON that is not exactly the order's shape.
pub fn decode(raw: &[u8], max_bytes: usize) -> Result<Order, Rejection> {
    if raw.len() > max_bytes {
        return Err(Rejection::whole(
            RejectReason::TooLarge,
            "too_large",
            format!("message is {} bytes, the limit is {max_bytes}", raw.len()),
        ));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::whole(
            RejectReason::Malformed,
            "empty",
            "message is empty".to_owned(),
        ));
    }
    if let Err(e) = std::str::from_utf8(raw) {
        return Err(Rejection::whole(
            RejectReason::Malformed,
            "not_utf8",
            format!("message is not UTF-8 (invalid byte at {})", e.valid_up_to()),
        ));
    }
    // The fast path decodes without tracking where it is; only a failure is decoded again
    // with paths, to say which field is wrong.
    if let Ok(order) = serde_json::from_slice::<Order>(raw) {
        return Ok(order);
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let order: Order =
        serde_path_to_error::deserialize(&mut de).map_err(|e| schema_or_syntax(raw, e))?;
    de.end().map_err(|e| {
        Rejection::whole(
            RejectReason::Malformed,
            "not_json",
            format!("trailing data after the order: {e}"),
        )
    })?;
    Ok(order)
}

/// A shape error only counts as `schema` when the bytes are JSON at all: `[1,2]x` fails on
/// its shape first, but it is malformed.
fn schema_or_syntax(raw: &[u8], e: serde_path_to_error::Error<serde_json::Error>) -> Rejection {
    use serde_json::error::Category;
    if e.inner().classify() == Category::Data
        && let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(raw)
    {
        return Rejection::whole(
            RejectReason::Malformed,
            "not_json",
            format!("message is not valid JSON: {syntax}"),
        );
    }
    let segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
    let inner = e.into_inner();
    match inner.classify() {
        Category::Data => {
            let (code, message) = schema_error(&inner.to_string());
            let path = field_path(&segments, code == "unknown_field");
            Rejection {
                reason: RejectReason::Schema,
                errors: vec![FieldError {
                    path,
                    code: code.to_owned(),
                    message: message.to_owned(),
                }],
            }
        }
        Category::Syntax | Category::Eof | Category::Io => Rejection::whole(
            RejectReason::Malformed,
            "not_json",
            format!("message is not valid JSON: {inner}"),
        ),
    }
}

/// Where a shape error is, as `items[0].price`. For an unknown field the last key is the
/// producer's own name for it, and is left out: the path names the object that holds it.
fn field_path(segments: &[serde_path_to_error::Segment], unknown_field: bool) -> String {
    use serde_path_to_error::Segment;
    let keep = match segments.last() {
        Some(Segment::Map { .. }) if unknown_field => segments.len() - 1,
        _ => segments.len(),
    };
    let mut path = String::new();
    for segment in &segments[..keep] {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            Segment::Unknown => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push('?');
            }
        }
    }
    path
}

/// A shape error as a code and words of ours. serde's own message quotes what the payload
/// holds (`invalid type: string "165"`, ``unknown field `Call +1 900 …` ``): a producer would
/// choose text that reaches the people who read rejections. Only the kind of error is kept,
/// with the path the caller adds; never a value, never an unknown key's name.
fn schema_error(serde_message: &str) -> (&'static str, &'static str) {
    const KINDS: &[(&str, &str, &str)] = &[
        (
            "unknown field",
            "unknown_field",
            "holds a field that is not part of an order",
        ),
        (
            "missing field",
            "missing_field",
            "lacks a field an order must have",
        ),
        ("duplicate field", "duplicate_field", "holds a field twice"),
        (
            "invalid type",
            "invalid_type",
            "has a value of the wrong type",
        ),
        (
            "invalid value",
            "invalid_value",
            "has a value out of its type's range or form",
        ),
        (
            "invalid length",
            "invalid_length",
            "has the wrong number of elements",
        ),
        (
            "unknown variant",
            "unknown_variant",
            "has a value that is not one of those allowed",
        ),
        (
            "input contains invalid characters",
            "invalid_value",
            "is not a time in RFC 3339",
        ),
        (
            "premature end of input",
            "invalid_value",
            "is not a time in RFC 3339",
        ),
        ("input is out of range", "invalid_value", "is out of range"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _, _)| serde_message.starts_with(prefix))
        .map_or(
            ("schema", "does not have the shape of an order"),
            |(_, code, words)| (*code, *words),
        )
}

/// Applies the field rules and the consistency rules.
pub fn check(order: Order, consistency: Consistency) -> Result<CheckedOrder, Rejection> {
    let mut field_errors = match order.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => flatten(&errors),
    };
    let mut inconsistencies = consistency_errors(&order);
    let reason = if !field_errors.is_empty() {
        RejectReason::Invalid
    } else if consistency == Consistency::Reject && !inconsistencies.is_empty() {
        RejectReason::Inconsistent
    } else {
        let uid = OrderUid::parse(order.order_uid.clone())
            .expect("the order_uid rule is the OrderUid rule, and it passed");
        let json = Bytes::from(order.to_json());
        let hash = ContentHash::of_json(&json);
        return Ok(CheckedOrder {
            uid,
            order,
            json,
            hash,
            warnings: inconsistencies,
        });
    };
    if consistency == Consistency::Reject {
        field_errors.append(&mut inconsistencies);
    }
    Err(Rejection {
        reason,
        errors: field_errors,
    })
}

/// [`decode`] then [`check`].
pub fn accept(
    raw: &[u8],
    max_bytes: usize,
    consistency: Consistency,
) -> Result<CheckedOrder, Rejection> {
    check(decode(raw, max_bytes)?, consistency)
}

/// validator's nested error tree to a flat list sorted by path.
fn flatten(errors: &ValidationErrors) -> Vec<FieldError> {
    fn walk(prefix: &str, errors: &ValidationErrors, out: &mut Vec<FieldError>) {
        for (field, kind) in errors.errors() {
            let path = if prefix.is_empty() {
                field.to_string()
            } else {
                format!("{prefix}.{field}")
            };
            match kind {
                ValidationErrorsKind::Field(list) => out.extend(list.iter().map(|e| {
                    FieldError {
                        path: path.clone(),
                        code: e.code.to_string(),
                        message: e
                            .message
                            .as_ref()
                            .map_or_else(|| e.code.to_string(), ToString::to_string),
                    }
                })),
                ValidationErrorsKind::Struct(inner) => walk(&path, inner, out),
                ValidationErrorsKind::List(items) => {
                    for (index, inner) in items {
                        walk(&format!("{path}[{index}]"), inner, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", errors, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.code.cmp(&b.code)));
    out
}

/// The money rules: each item's `total_price` is its price less the sale (rounded down),
/// `goods_total` is the sum of those, and `amount` adds delivery and customs to it.
/// Computed in i128 so that absurd values cannot overflow.
pub fn consistency_errors(order: &Order) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut inconsistent = |path: String, message: String| {
        out.push(FieldError {
            path,
            code: "inconsistent".to_owned(),
            message,
        })
    };
    let mut goods: i128 = 0;
    for (i, item) in order.items.iter().enumerate() {
        let expected = i128::from(item.price) * (100 - i128::from(item.sale)) / 100;
        if i128::from(item.total_price) != expected {
            inconsistent(
                format!("items[{i}].total_price"),
                format!(
                    "is {} but price {} less sale {}% is {expected}",
                    item.total_price, item.price, item.sale
                ),
            );
        }
        goods += i128::from(item.total_price);
    }
    let p = &order.payment;
    if !order.items.is_empty() && i128::from(p.goods_total) != goods {
        inconsistent(
            "payment.goods_total".to_owned(),
            format!(
                "is {} but the items' total_price sum to {goods}",
                p.goods_total
            ),
        );
    }
    let amount = i128::from(p.goods_total) + i128::from(p.delivery_cost) + i128::from(p.custom_fee);
    if i128::from(p.amount) != amount {
        inconsistent(
            "payment.amount".to_owned(),
            format!(
                "is {} but goods_total + delivery_cost + custom_fee is {amount}",
                p.amount
            ),
        );
    }
    out
}
