//! Reproducible order generator: valid orders that satisfy every rule (consistency included)
//! and invalid ones, each carrying exactly one known [`Corruption`].
//!
//! The random source is ChaCha8 seeded from `--seed`, whose stream is fixed by its
//! specification, so a seed gives the same bytes on every machine and every release.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::domain::order::{Delivery, Item, Order, Payment};
use crate::domain::validate::RejectReason;

/// The ways an invalid order is broken. Each generated invalid order has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    BadPhone,
    BadEmail,
    NegativeAmount,
    BadLocale,
    NoItems,
    NonNumericShardkey,
    ZeroSmId,
    ZeroGoodsTotal,
    BadCurrency,
    UnknownField,
    WrongType,
    MissingField,
    InconsistentTotals,
    MalformedJson,
    NotJson,
    Oversized,
}

impl Corruption {
    pub const ALL: [Corruption; 16] = [
        Self::BadPhone,
        Self::BadEmail,
        Self::NegativeAmount,
        Self::BadLocale,
        Self::NoItems,
        Self::NonNumericShardkey,
        Self::ZeroSmId,
        Self::ZeroGoodsTotal,
        Self::BadCurrency,
        Self::UnknownField,
        Self::WrongType,
        Self::MissingField,
        Self::InconsistentTotals,
        Self::MalformedJson,
        Self::NotJson,
        Self::Oversized,
    ];

    /// How ingest must classify this corruption, and the field path the rejection names
    /// (empty for a problem with the whole message). `InconsistentTotals` is `Inconsistent`
    /// only under `VALIDATION_CONSISTENCY=reject`; under `warn` it is accepted.
    pub fn expected(self) -> (RejectReason, &'static str) {
        use RejectReason::*;
        match self {
            Self::BadPhone => (Invalid, "delivery.phone"),
            Self::BadEmail => (Invalid, "delivery.email"),
            Self::NegativeAmount => (Invalid, "payment.amount"),
            Self::BadLocale => (Invalid, "locale"),
            Self::NoItems => (Invalid, "items"),
            Self::NonNumericShardkey => (Invalid, "shardkey"),
            Self::ZeroSmId => (Invalid, "sm_id"),
            Self::ZeroGoodsTotal => (Invalid, "payment.goods_total"),
            Self::BadCurrency => (Invalid, "payment.currency"),
            Self::UnknownField => (Schema, "delivery"),
            Self::WrongType => (Schema, "sm_id"),
            Self::MissingField => (Schema, "payment"),
            Self::InconsistentTotals => (Inconsistent, "payment.amount"),
            Self::MalformedJson | Self::NotJson => (Malformed, ""),
            Self::Oversized => (TooLarge, ""),
        }
    }

    /// True when the result is not a JSON value at all, so it cannot be an element of a
    /// JSON array.
    pub fn is_raw(self) -> bool {
        matches!(self, Self::MalformedJson | Self::NotJson)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BadPhone => "bad_phone",
            Self::BadEmail => "bad_email",
            Self::NegativeAmount => "negative_amount",
            Self::BadLocale => "bad_locale",
            Self::NoItems => "no_items",
            Self::NonNumericShardkey => "non_numeric_shardkey",
            Self::ZeroSmId => "zero_sm_id",
            Self::ZeroGoodsTotal => "zero_goods_total",
            Self::BadCurrency => "bad_currency",
            Self::UnknownField => "unknown_field",
            Self::WrongType => "wrong_type",
            Self::MissingField => "missing_field",
            Self::InconsistentTotals => "inconsistent_totals",
            Self::MalformedJson => "malformed_json",
            Self::NotJson => "not_json",
            Self::Oversized => "oversized",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub seed: u64,
    /// Share of invalid orders, 0.0 to 1.0.
    pub invalid_rate: f64,
    pub min_items: usize,
    pub max_items: usize,
    /// The ingest size limit; an `Oversized` order is just over it.
    pub max_message_bytes: usize,
    /// Whether corruptions that are not JSON values may be drawn (false for array output).
    pub allow_raw: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            invalid_rate: 0.0,
            min_items: 1,
            max_items: 5,
            max_message_bytes: 1024 * 1024,
            allow_raw: true,
        }
    }
}

/// One generated message.
#[derive(Debug, Clone)]
pub struct Generated {
    pub bytes: Vec<u8>,
    /// The order's uid, when the message carries a readable one (the Kafka key).
    pub uid: Option<String>,
    pub corruption: Option<Corruption>,
}

pub struct Generator {
    rng: ChaCha8Rng,
    opts: GenerateOptions,
    kinds: Vec<Corruption>,
    index: u64,
}

const FIRST: &[&str] = &[
    "Anna", "Boris", "Chen", "Daria", "Elif", "Farid", "Greta", "Hiro", "Irina", "Jonas", "Kemal",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Rustam", "Sofia", "Tomas", "Yulia",
];
const LAST: &[&str] = &[
    "Ivanova", "Smirnov", "Kowalski", "Nakamura", "Garcia", "Schmidt", "Haddad", "Novak", "Petrov",
    "Rossi", "Yilmaz", "Kim", "Dubois", "Silva", "Larsen", "Sokolova",
];
/// city, region, zip digits, phone country code, locale, currency
const PLACES: &[(&str, &str, usize, &str, &str, &str)] = &[
    ("Kiryat Motzkin", "Haifa", 7, "972", "he", "ILS"),
    ("Moscow", "Moscow", 6, "7", "ru", "RUB"),
    ("Kazan", "Tatarstan", 6, "7", "ru", "RUB"),
    ("Almaty", "Almaty Region", 6, "7", "kk", "KZT"),
    ("Berlin", "Berlin", 5, "49", "de", "EUR"),
    ("Lyon", "Auvergne-Rhone-Alpes", 5, "33", "fr", "EUR"),
    ("Austin", "Texas", 5, "1", "en-US", "USD"),
    ("Leeds", "West Yorkshire", 5, "44", "en-GB", "GBP"),
    ("Sao Paulo", "Sao Paulo", 8, "55", "pt-BR", "BRL"),
    ("Osaka", "Osaka", 7, "81", "ja", "JPY"),
    ("Warsaw", "Masovia", 5, "48", "pl", "PLN"),
    ("Istanbul", "Marmara", 5, "90", "tr", "TRY"),
];
const STREETS: &[&str] = &[
    "Ploshad Mira",
    "Lenina",
    "Hauptstrasse",
    "Rue de la Paix",
    "Main Street",
    "Baker Street",
    "Avenida Paulista",
    "Nevsky Prospekt",
    "Marszalkowska",
    "Istiklal Caddesi",
];
const GOODS: &[(&str, &str)] = &[
    ("Mascaras", "Vivienne Sabo"),
    ("Lipstick", "Maybelline"),
    ("Running shoes", "Asics"),
    ("T-shirt", "Uniqlo"),
    ("Backpack", "Fjallraven"),
    ("Headphones", "Sony"),
    ("Coffee beans", "Lavazza"),
    ("Notebook", "Moleskine"),
    ("Phone case", "Spigen"),
    ("Water bottle", "Nalgene"),
    ("Face cream", "Nivea"),
    ("Board game", "Hasbro"),
];
const SIZES: &[&str] = &["0", "XS", "S", "M", "L", "XL", "42", "one size"];
const PROVIDERS: &[&str] = &["wbpay", "cardpay", "sbp", "applepay"];
const BANKS: &[&str] = &["alpha", "sber", "tinkoff", "vtb", "raiffeisen"];
const SERVICES: &[&str] = &["meest", "cdek", "dhl", "boxberry", "pochta"];
const SALES: &[i64] = &[0, 0, 0, 5, 10, 15, 20, 25, 30, 50];
const STATUSES: &[i64] = &[200, 201, 202, 203];
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Generator {
    pub fn new(opts: GenerateOptions) -> Self {
        let kinds = Corruption::ALL
            .into_iter()
            .filter(|k| opts.allow_raw || !k.is_raw())
            .collect();
        Self {
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            opts,
            kinds,
            index: 0,
        }
    }

    /// The next message: valid, or invalid with the configured probability.
    pub fn next_message(&mut self) -> Generated {
        let invalid =
            self.opts.invalid_rate > 0.0 && self.rng.random_bool(self.opts.invalid_rate.min(1.0));
        let order = self.valid_order();
        if !invalid {
            return Generated {
                bytes: order.to_json(),
                uid: Some(order.order_uid),
                corruption: None,
            };
        }
        let kind = *self
            .kinds
            .choose(&mut self.rng)
            .expect("at least one corruption kind");
        self.corrupt(order, kind)
    }

    /// A valid order with varied, realistic values.
    pub fn valid_order(&mut self) -> Order {
        let rng = &mut self.rng;
        let uid = format!("{}{:x}", random_string(rng, ALNUM, 12), self.index);
        self.index += 1;
        let &(city, region, zip_len, cc, locale, currency) = PLACES.choose(rng).expect("places");
        let first = *FIRST.choose(rng).expect("names");
        let last = *LAST.choose(rng).expect("names");
        let track = format!("WBIL{}", random_string(rng, UPPER, 10));
        let items_n = rng.random_range(self.opts.min_items..=self.opts.max_items);
        let items: Vec<Item> = (0..items_n)
            .map(|_| {
                let &(name, brand) = GOODS.choose(rng).expect("goods");
                let price = rng.random_range(10..=50_000);
                let sale = *SALES.choose(rng).expect("sales");
                Item {
                    chrt_id: rng.random_range(1..=99_999_999),
                    track_number: track.clone(),
                    price,
                    rid: random_string(rng, ALNUM, 21),
                    name: name.to_owned(),
                    sale,
                    size: (*SIZES.choose(rng).expect("sizes")).to_owned(),
                    total_price: price * (100 - sale) / 100,
                    nm_id: rng.random_range(1..=9_999_999),
                    brand: brand.to_owned(),
                    status: *STATUSES.choose(rng).expect("statuses"),
                }
            })
            .collect();
        let goods_total: i64 = items.iter().map(|i| i.total_price).sum();
        let delivery_cost = rng.random_range(0..=3_000);
        let custom_fee = if rng.random_bool(0.2) {
            rng.random_range(1..=500)
        } else {
            0
        };
        let epoch = DateTime::<Utc>::from_timestamp(1_609_459_200, 0).expect("2021-01-01");
        let created = epoch + Duration::seconds(rng.random_range(0..5 * 365 * 86_400));
        let phone_len = 10 - cc.len().min(3);
        Order {
            order_uid: uid.clone(),
            track_number: track,
            entry: "WBIL".to_owned(),
            delivery: Delivery {
                name: format!("{first} {last}"),
                phone: format!("+{cc}{}", random_string(rng, b"0123456789", phone_len)),
                zip: format!(
                    "{}{}",
                    rng.random_range(1..=9),
                    random_string(rng, b"0123456789", zip_len - 1)
                ),
                city: city.to_owned(),
                address: format!(
                    "{} {}",
                    STREETS.choose(rng).expect("streets"),
                    rng.random_range(1..=200)
                ),
                region: region.to_owned(),
                email: format!(
                    "{}.{}{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    rng.random_range(1..=999)
                ),
            },
            payment: Payment {
                transaction: uid,
                request_id: String::new(),
                currency: currency.to_owned(),
                provider: (*PROVIDERS.choose(rng).expect("providers")).to_owned(),
                amount: goods_total + delivery_cost + custom_fee,
                payment_dt: created.timestamp() + rng.random_range(0..600),
                bank: (*BANKS.choose(rng).expect("banks")).to_owned(),
                delivery_cost,
                goods_total,
                custom_fee,
            },
            items,
            locale: locale.to_owned(),
            internal_signature: String::new(),
            customer_id: random_string(rng, ALNUM, 8),
            delivery_service: (*SERVICES.choose(rng).expect("services")).to_owned(),
            shardkey: rng.random_range(0..10).to_string(),
            sm_id: rng.random_range(1..=999),
            date_created: created,
            oof_shard: rng.random_range(0..3).to_string(),
        }
    }

    fn corrupt(&mut self, mut order: Order, kind: Corruption) -> Generated {
        let uid = Some(order.order_uid.clone());
        let done = |bytes: Vec<u8>, uid: Option<String>| Generated {
            bytes,
            uid,
            corruption: Some(kind),
        };
        match kind {
            Corruption::BadPhone => order.delivery.phone = "8-800-555-35-35".to_owned(),
            Corruption::BadEmail => order.delivery.email = "not-an-email".to_owned(),
            Corruption::NegativeAmount => order.payment.amount = -order.payment.amount.max(1),
            Corruption::BadLocale => order.locale = "en_US!".to_owned(),
            Corruption::NoItems => order.items.clear(),
            Corruption::NonNumericShardkey => order.shardkey = "nine".to_owned(),
            Corruption::ZeroSmId => order.sm_id = 0,
            Corruption::ZeroGoodsTotal => order.payment.goods_total = 0,
            Corruption::BadCurrency => order.payment.currency = "XYZ".to_owned(),
            Corruption::InconsistentTotals => order.payment.amount += 1,
            Corruption::Oversized => {
                // One byte of signature per byte of limit guarantees the message is over it.
                order.internal_signature = "x".repeat(self.opts.max_message_bytes + 1);
            }
            Corruption::UnknownField | Corruption::WrongType | Corruption::MissingField => {
                let mut value = serde_json::to_value(&order).expect("orders serialize");
                match kind {
                    Corruption::UnknownField => {
                        value["delivery"]["gift_wrap"] = json!(true);
                    }
                    Corruption::WrongType => value["sm_id"] = json!(order.sm_id.to_string()),
                    _ => {
                        if let Value::Object(payment) = &mut value["payment"] {
                            payment.remove("bank");
                        }
                    }
                }
                return done(serde_json::to_vec(&value).expect("values serialize"), uid);
            }
            Corruption::MalformedJson => {
                let mut bytes = order.to_json();
                bytes.truncate(bytes.len() - 7);
                return done(bytes, uid);
            }
            Corruption::NotJson => {
                // 0xFF never occurs in UTF-8, and no byte here is a newline, so the message
                // stays one line of a JSON-lines file.
                let mut bytes = vec![0xFF];
                bytes.extend((0..31).map(|_| self.rng.random_range(0x80..=0xFE_u8)));
                return done(bytes, None);
            }
        }
        done(order.to_json(), uid)
    }
}

fn random_string(rng: &mut ChaCha8Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(*alphabet.choose(rng).expect("non-empty alphabet")))
        .collect()
}

#[cfg(test)]
mod tests;
