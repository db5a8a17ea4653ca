//! The order as it travels on the wire: exactly the JSON shape of the original assignment's
//! `model.json`, with every field required, 64-bit integers and unknown fields refused.
//!
//! These types are deliberately plain data. Whether an order obeys the field and consistency
//! rules is decided in [`crate::domain::validate`], which turns an [`Order`] into a
//! [`crate::domain::validate::CheckedOrder`] carrying a proven [`OrderUid`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use validator::Validate;

use super::rules;
pub use super::rules::{InvalidUid, MAX_ID_LEN};

/// One order. Field order follows `model.json`, so serializing gives the same layout back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The order's key: ASCII letters and digits, 1 to 64.
    #[validate(custom(function = "rules::identifier"))]
    pub order_uid: String,
    /// The shipment's tracking number: ASCII letters and digits.
    #[validate(custom(function = "rules::identifier"))]
    pub track_number: String,
    /// Entry point code, such as `WBIL`.
    #[validate(custom(function = "rules::non_empty"))]
    pub entry: String,
    /// Who receives it, where.
    #[validate(nested)]
    pub delivery: Delivery,
    /// How it was paid.
    #[validate(nested)]
    pub payment: Payment,
    /// What was bought, at least one.
    #[validate(
        length(
            min = 1,
            code = "no_items",
            message = "an order needs at least one item"
        ),
        nested
    )]
    pub items: Vec<Item>,
    /// BCP 47 language tag, such as `en`.
    #[validate(custom(function = "rules::locale"))]
    pub locale: String,
    /// May be empty.
    #[validate(custom(function = "rules::text"))]
    pub internal_signature: String,
    /// The customer's id.
    #[validate(custom(function = "rules::non_empty"))]
    pub customer_id: String,
    /// Carrier, such as `meest`.
    #[validate(custom(function = "rules::non_empty"))]
    pub delivery_service: String,
    /// Decimal digits.
    #[validate(custom(function = "rules::numeric"))]
    pub shardkey: String,
    /// Positive.
    #[validate(range(
        exclusive_min = 0,
        code = "not_positive",
        message = "must be greater than 0"
    ))]
    pub sm_id: i64,
    /// RFC 3339, years 1 to 9999, kept to the microsecond, served in UTC.
    #[serde(with = "rfc3339_utc")]
    #[validate(custom(function = "rules::date_created"))]
    pub date_created: DateTime<Utc>,
    /// Decimal digits.
    #[validate(custom(function = "rules::numeric"))]
    pub oof_shard: String,
}

/// Who receives the order, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The recipient's name.
    #[validate(custom(function = "rules::non_empty"))]
    pub name: String,
    /// E.164: `+` and 8 to 15 digits.
    #[validate(custom(function = "rules::phone"))]
    pub phone: String,
    /// Decimal digits.
    #[validate(custom(function = "rules::numeric"))]
    pub zip: String,
    /// Not empty.
    #[validate(custom(function = "rules::non_empty"))]
    pub city: String,
    /// Not empty.
    #[validate(custom(function = "rules::non_empty"))]
    pub address: String,
    /// Not empty.
    #[validate(custom(function = "rules::non_empty"))]
    pub region: String,
    /// One `@`, ASCII domain, no white space.
    #[validate(custom(function = "rules::email"))]
    pub email: String,
}

/// How the order was paid; amounts in the currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// The payment transaction id.
    #[validate(custom(function = "rules::identifier"))]
    pub transaction: String,
    /// May be empty.
    #[validate(custom(function = "rules::text"))]
    pub request_id: String,
    /// ISO 4217 code, such as `USD`.
    #[validate(custom(function = "rules::currency"))]
    pub currency: String,
    /// Payment provider, such as `wbpay`.
    #[validate(custom(function = "rules::non_empty"))]
    pub provider: String,
    /// What was paid: goods, delivery and fees.
    #[validate(range(min = 0, code = "negative", message = "must not be negative"))]
    pub amount: i64,
    /// Payment time, unix seconds.
    #[validate(range(
        exclusive_min = 0,
        code = "not_positive",
        message = "must be greater than 0"
    ))]
    pub payment_dt: i64,
    /// Not empty.
    #[validate(custom(function = "rules::non_empty"))]
    pub bank: String,
    /// Not negative.
    #[validate(range(min = 0, code = "negative", message = "must not be negative"))]
    pub delivery_cost: i64,
    /// Positive: the items' total prices.
    #[validate(range(
        exclusive_min = 0,
        code = "not_positive",
        message = "must be greater than 0"
    ))]
    pub goods_total: i64,
    /// Not negative.
    #[validate(range(min = 0, code = "negative", message = "must not be negative"))]
    pub custom_fee: i64,
}

/// One line of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Positive.
    #[validate(range(
        exclusive_min = 0,
        code = "not_positive",
        message = "must be greater than 0"
    ))]
    pub chrt_id: i64,
    /// The tracking number of the shipment holding this item.
    #[validate(custom(function = "rules::identifier"))]
    pub track_number: String,
    /// Before the sale, minor units.
    #[validate(range(min = 0, code = "negative", message = "must not be negative"))]
    pub price: i64,
    /// The item's row id.
    #[validate(custom(function = "rules::identifier"))]
    pub rid: String,
    /// The product's name.
    #[validate(custom(function = "rules::non_empty"))]
    pub name: String,
    /// Percent off, 0 to 100.
    #[validate(range(
        min = 0,
        max = 100,
        code = "percent",
        message = "must be between 0 and 100"
    ))]
    pub sale: i64,
    /// Not empty (`0` when it has none).
    #[validate(custom(function = "rules::non_empty"))]
    pub size: String,
    /// After the sale, minor units.
    #[validate(range(min = 0, code = "negative", message = "must not be negative"))]
    pub total_price: i64,
    /// Positive.
    #[validate(range(
        exclusive_min = 0,
        code = "not_positive",
        message = "must be greater than 0"
    ))]
    pub nm_id: i64,
    /// Not empty.
    #[validate(custom(function = "rules::non_empty"))]
    pub brand: String,
    /// The item's status code.
    #[validate(custom(function = "rules::non_zero"))]
    pub status: i64,
}

impl Order {
    /// The order as compact JSON, in `model.json` field order: what the API returns and what
    /// the content hash is taken over.
    ///
    /// Written into a buffer kept by the thread and copied out once, at its exact size: a
    /// fresh buffer would grow by doubling (five reallocations for a typical order) and the
    /// cache would keep the spare capacity alive.
    pub fn to_json(&self) -> Vec<u8> {
        /// Larger buffers are not kept: one huge order must not pin its size per thread.
        const KEEP_AT_MOST: usize = 64 * 1024;
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            // Serializing plain structs of strings and integers into a Vec cannot fail.
            serde_json::to_writer(&mut *scratch, self).expect("an order always serializes");
            let json = scratch.to_vec();
            if scratch.capacity() > KEEP_AT_MOST {
                *scratch = Vec::new();
            }
            json
        })
    }

    /// SHA-256 of [`Order::to_json`]. Two messages with the same uid and the same hash are a
    /// redelivery; the same uid with another hash is a conflict.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of_json(&self.to_json())
    }
}

/// An `order_uid` known to be valid: ASCII letters and digits, 1 to [`MAX_ID_LEN`] long.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderUid(String);

impl OrderUid {
    /// A uid that follows the identifier rule.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidUid> {
        let s = s.into();
        rules::check_identifier(&s)?;
        Ok(Self(s))
    }

    /// The uid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrderUid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of an order's canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of an order's canonical JSON (as made by [`Order::to_json`]).
    pub fn of_json(json: &[u8]) -> Self {
        Self(Sha256::digest(json).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex, used as the entity tag.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// `date_created` is RFC 3339. Any offset is accepted on the way in and normalized to UTC,
/// and a fraction finer than PostgreSQL's microseconds (Go's RFC3339Nano, say) is truncated
/// to them, so that what is hashed and served first is what the database gives back. It is
/// always written back in UTC with a `Z`: seconds, or 3 or 6 fractional digits as needed.
mod rfc3339_utc {
    use chrono::{DateTime, SecondsFormat, Timelike, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(dt: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|dt| {
                let dt = dt.with_timezone(&Utc);
                // Keeps a leap second a leap second (nanos >= 1e9), for the rule to refuse.
                dt.with_nanosecond(dt.nanosecond() / 1_000 * 1_000)
                    .unwrap_or(dt)
            })
            .map_err(|e| {
                D::Error::custom(format!("date_created is not an RFC 3339 date-time: {e}"))
            })
    }
}
