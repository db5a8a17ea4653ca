//! Use case: finding orders without their uid (newest first, or by what people arrive
//! with), and telling why an order never arrived (its dead-letter records).
//!
//! Pages are keyset pages: a cursor is the position of the last row shown, never an offset,
//! so a page costs the same however deep it is and rows arriving meanwhile shift nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::order::OrderUid;
use super::ports::{Position, StoreError};
use super::rules;

/// Rows per page unless the request says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// The most rows one page may ask for.
pub const MAX_LIMIT: usize = 200;
/// The longest search value taken (customer ids are free text; the rest are shorter).
pub const MAX_VALUE_LEN: usize = 256;
/// The most orders a search may match (older than its cursor) and still be answered. Its
/// fields' indexes are hash indexes, in no time order, so the newest matches are found by
/// sorting every match: a value that thousands of orders share (a test customer, a
/// marketplace's shared phone) would cost a sort of all of them per page. Past this bound
/// the search is refused as too broad, naming the bound, and costs at most this many rows.
pub const MAX_MATCHES: usize = 10_000;

/// A stored order in one line: what a list of orders shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    /// Its uid.
    pub order_uid: String,
    /// `date_created` of the order.
    pub date_created: DateTime<Utc>,
    /// When the service stored it.
    pub stored_at: DateTime<Utc>,
    /// `customer_id`.
    pub customer_id: String,
    /// `delivery.name`.
    pub name: String,
    /// `delivery.city`.
    pub city: String,
    /// `payment.amount`, in the currency's minor units as in the order.
    pub amount: i64,
    /// `payment.currency`.
    pub currency: String,
    /// How many items it holds.
    pub items: i64,
}

/// A field people search by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `order_uid`.
    Uid,
    /// `track_number`.
    TrackNumber,
    /// `payment.transaction`.
    Transaction,
    /// `customer_id`.
    CustomerId,
    /// `delivery.phone`, E.164.
    Phone,
    /// `delivery.email`, ASCII letters lower-cased.
    Email,
}

impl Field {
    /// The query parameter that names it.
    pub fn param(self) -> &'static str {
        match self {
            Self::Uid => "uid",
            Self::TrackNumber => "track_number",
            Self::Transaction => "transaction",
            Self::CustomerId => "customer_id",
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }

    /// Every field but the uid, in the order of the API's parameters.
    pub const SEARCHABLE: [Field; 5] = [
        Self::TrackNumber,
        Self::Transaction,
        Self::CustomerId,
        Self::Phone,
        Self::Email,
    ];

    /// `value` in the form it is stored and indexed in, or what is wrong with it.
    /// Identifiers and customer ids are matched exactly as given (no trimming: what the API
    /// document's patterns describe); phones and e-mails are read as people write them.
    pub fn normalise(self, value: &str) -> Result<String, String> {
        if value.is_empty() {
            return Err(format!("{} must not be empty", self.param()));
        }
        if too_long(value) {
            return Err(format!(
                "{} must be at most {MAX_VALUE_LEN} characters, without NUL",
                self.param()
            ));
        }
        match self {
            Self::Uid | Self::TrackNumber | Self::Transaction => rules::check_identifier(value)
                .map(|()| value.to_owned())
                .map_err(|_| {
                    format!(
                        "{} must be 1 to {} ASCII letters and digits",
                        self.param(),
                        rules::MAX_ID_LEN
                    )
                }),
            Self::CustomerId => Ok(value.to_owned()),
            Self::Phone => normalise_phone(value).ok_or_else(|| {
                "phone must be a phone number in international form, such as +972 000 0000".into()
            }),
            Self::Email => normalise_email(value)
                .ok_or_else(|| "email must be an e-mail address, such as a@example.com".into()),
        }
    }
}

/// More than [`MAX_VALUE_LEN`] characters, or holding NUL (which no stored text holds).
fn too_long(value: &str) -> bool {
    value.chars().count() > MAX_VALUE_LEN || value.contains('\0')
}

/// A phone number as the gate stores it (E.164: `+`, then 2 to 15 digits, the first not 0),
/// from how people write one: spaces, dashes, dots and brackets dropped, `00` read as `+`.
pub fn normalise_phone(input: &str) -> Option<String> {
    let kept: String = input
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    let digits = kept.strip_prefix('+').or_else(|| kept.strip_prefix("00"))?;
    let phone = format!("+{digits}");
    rules::phone(&phone).ok().map(|()| phone)
}

/// An e-mail address as it is indexed: ASCII letters in lower case, nothing else changed
/// (PostgreSQL's `lower(email COLLATE "C")`, which the index is built on, does the same).
pub fn normalise_email(input: &str) -> Option<String> {
    let input = input.trim();
    rules::email(input).ok()?;
    Some(input.to_ascii_lowercase())
}

/// One `field = value` condition, its value already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    /// Which field.
    pub field: Field,
    /// The normalised value.
    pub value: String,
}

/// What a list of orders is restricted to: every criterion of `all` holds, and when `any` is
/// not empty, at least one of its criteria does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// Each must match (the API's named parameters).
    pub all: Vec<Criterion>,
    /// One must match (what a free-text `q` could mean).
    pub any: Vec<Criterion>,
}

impl Search {
    /// What a free-text search box value may be, each meaning tried: an e-mail address when
    /// it holds `@`; a phone number when it reads as one; a uid, track number or transaction
    /// when it is letters and digits; a customer id always. A blank box restricts nothing.
    pub fn guess(q: &str) -> Result<Self, String> {
        if too_long(q) {
            return Err(format!(
                "q must be at most {MAX_VALUE_LEN} characters, without NUL"
            ));
        }
        let q = q.trim();
        if q.is_empty() {
            return Ok(Self::default());
        }
        let mut any = Vec::new();
        let mut meaning = |field: Field, value: Option<String>| {
            if let Some(value) = value {
                any.push(Criterion { field, value });
            }
        };
        if q.contains('@') {
            meaning(Field::Email, normalise_email(q));
        }
        // A phone written without its `+`, as people often do, is tried with one.
        let phone = normalise_phone(q).or_else(|| {
            let bare = q.trim_start_matches('+');
            (bare.starts_with(|c: char| c.is_ascii_digit()) && !bare.starts_with('0'))
                .then(|| normalise_phone(&format!("+{bare}")))
                .flatten()
        });
        meaning(Field::Phone, phone);
        if rules::check_identifier(q).is_ok() {
            for field in [Field::Uid, Field::TrackNumber, Field::Transaction] {
                meaning(field, Some(q.to_owned()));
            }
        }
        meaning(Field::CustomerId, Some(q.to_owned()));
        Ok(Self {
            all: Vec::new(),
            any,
        })
    }

    /// No restriction: every order.
    pub fn is_everything(&self) -> bool {
        self.all.is_empty() && self.any.is_empty()
    }
}

/// An opaque cursor: the position of the last row of a page, as text safe in a URL.
pub fn encode_cursor(p: &Position) -> String {
    hex::encode(format!("{}.{}", p.stored_at.timestamp_micros(), p.uid))
}

/// The position a cursor holds, or `None` when it is not one of ours.
pub fn decode_cursor(s: &str) -> Option<Position> {
    let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
    let (micros, uid) = text.split_once('.')?;
    Some(Position {
        stored_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        uid: OrderUid::parse(uid).ok()?,
    })
}

/// A dead-letter cursor: the record id, as opaque text.
pub fn encode_rejection_cursor(id: i64) -> String {
    hex::encode(format!("r{id}"))
}

/// The record id a dead-letter cursor holds.
pub fn decode_rejection_cursor(s: &str) -> Option<i64> {
    let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
    text.strip_prefix('r')?.parse().ok().filter(|&id| id > 0)
}

/// One message set aside to the dead-letter topic, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionRecord {
    /// The record's id (newer records have larger ids).
    #[serde(skip)]
    pub id: i64,
    /// When it was sent to the dead-letter topic.
    pub at: DateTime<Utc>,
    /// The reason code (`x-dlq-reason`).
    pub reason: String,
    /// Every broken rule, readable (`x-dlq-detail`).
    pub detail: String,
    /// The order uid, when the payload was readable enough to hold one.
    pub order_uid: Option<String>,
    /// The message key as text (bytes that are not UTF-8 shown as U+FFFD).
    pub key: Option<String>,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The message's own timestamp.
    pub message_time: Option<DateTime<Utc>>,
}

/// A page of rows and the cursor of the next (older) page, if there may be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Why an [`OrderIndex`] gives no summaries.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// More than [`MAX_MATCHES`] orders match a search that restricts: none are sorted.
    #[error("more than {MAX_MATCHES} orders match")]
    TooMany,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading summaries and dead-letter records (the driven port; PostgreSQL implements it).
pub trait OrderIndex: Clone + Send + Sync + 'static {
    /// Up to `limit` orders matching `search` stored before `before` (everything when
    /// `None`), newest first. A search that restricts and matches more than
    /// [`MAX_MATCHES`] orders before `before` is [`IndexError::TooMany`], found without
    /// reading more than `MAX_MATCHES` + 1 of them.
    fn summaries(
        &self,
        search: &Search,
        before: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Position, OrderSummary)>, IndexError>> + Send;

    /// Up to `limit` dead-letter records of `uid` (all when `None`) with an id below
    /// `before`, newest first.
    fn rejections(
        &self,
        uid: Option<&OrderUid>,
        before: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RejectionRecord>, StoreError>> + Send;
}

/// Why a browse request has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrowseError {
    /// The request itself is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The search matches too many orders to sort; another criterion narrows it.
    #[error("more than {MAX_MATCHES} orders match this search; add a criterion that narrows it")]
    TooBroad,
    /// The store cannot be reached.
    #[error("the order store is unavailable: {0}")]
    Unavailable(String),
    /// Anything else; details are logged, not shown.
    #[error("browse failed: {0}")]
    Internal(String),
}

impl From<StoreError> for BrowseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(format!("{e:#}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<IndexError> for BrowseError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::TooMany => Self::TooBroad,
            IndexError::Store(e) => e.into(),
        }
    }
}

/// A request for a page, as it arrives (strings not yet checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows wanted; [`DEFAULT_LIMIT`] when absent.
    pub limit: Option<String>,
    /// The cursor of the page before (empty: none).
    pub before: Option<String>,
}

impl PageRequest {
    /// The cursor given, if any: an empty one (a form's blank field) is the first page.
    fn cursor(&self) -> Option<&str> {
        self.before.as_deref().filter(|c| !c.is_empty())
    }

    fn limit(&self) -> Result<usize, BrowseError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => Some(raw)
                .filter(|r| r.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|r| r.parse::<usize>().ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    BrowseError::Invalid(format!("limit must be a number from 1 to {MAX_LIMIT}"))
                }),
        }
    }
}

/// A boxed answer, so that [`Browse`] can be held as `dyn`.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<Page<T>, BrowseError>> + Send + 'a>>;

/// The driving port of browsing: what the HTTP adapter calls.
pub trait Browse: Send + Sync + 'static {
    /// Orders matching `search`, a page at a time.
    fn orders<'a>(&'a self, search: Search, page: PageRequest) -> Answer<'a, OrderSummary>;
    /// Dead-letter records, of one uid or all, a page at a time.
    fn rejections<'a>(
        &'a self,
        uid: Option<OrderUid>,
        page: PageRequest,
    ) -> Answer<'a, RejectionRecord>;
}

/// How long the newest page is answered from memory: every open home page asks for it
/// every few seconds, and each asking costs ~0.5 ms of PostgreSQL's time (`just
/// bench-browse`); an order stored meanwhile shows up at most this late.
pub const NEWEST_PAGE_TTL: Duration = Duration::from_secs(1);

/// The newest [`MAX_LIMIT`] + 1 rows and when they were read.
type Newest = (Instant, Arc<Vec<(Position, OrderSummary)>>);

/// The browse use case over an [`OrderIndex`].
pub struct Browser<I> {
    index: I,
    /// The unrestricted first page, shared by every request within [`NEWEST_PAGE_TTL`]; the
    /// lock also makes concurrent askers wait for one read instead of each reading.
    newest: tokio::sync::Mutex<Option<Newest>>,
    ttl: Duration,
}

impl<I: OrderIndex> Browser<I> {
    /// The use case over its port.
    pub fn new(index: I) -> Self {
        Self::with_newest_ttl(index, NEWEST_PAGE_TTL)
    }

    /// The use case with another lifetime of the newest page (zero: always read).
    pub fn with_newest_ttl(index: I, ttl: Duration) -> Self {
        Self {
            index,
            newest: tokio::sync::Mutex::new(None),
            ttl,
        }
    }

    /// Up to `limit` + 1 rows: from the newest page's memory when nothing restricts them.
    async fn rows(
        &self,
        search: &Search,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<(Position, OrderSummary)>, IndexError> {
        if !search.is_everything() || before.is_some() || self.ttl.is_zero() {
            return self.index.summaries(search, before, limit + 1).await;
        }
        let mut newest = self.newest.lock().await;
        let rows = match newest.as_ref() {
            Some((read, rows)) if read.elapsed() < self.ttl => rows.clone(),
            _ => {
                let read = Instant::now();
                let rows = Arc::new(self.index.summaries(search, None, MAX_LIMIT + 1).await?);
                *newest = Some((read, rows.clone()));
                rows
            }
        };
        drop(newest);
        Ok(rows.iter().take(limit + 1).cloned().collect())
    }

    async fn order_page(
        &self,
        search: Search,
        page: PageRequest,
    ) -> Result<Page<OrderSummary>, BrowseError> {
        let limit = page.limit()?;
        let before = match page.cursor() {
            None => None,
            Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
                BrowseError::Invalid("before is not a cursor this service gave".into())
            })?),
        };
        // One more than asked: whether it comes tells if there is a next page.
        let mut rows = self.rows(&search, before.as_ref(), limit).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more
            .then(|| rows.last().map(|(p, _)| encode_cursor(p)))
            .flatten();
        Ok(Page {
            items: rows.into_iter().map(|(_, s)| s).collect(),
            next,
        })
    }

    async fn rejection_page(
        &self,
        uid: Option<OrderUid>,
        page: PageRequest,
    ) -> Result<Page<RejectionRecord>, BrowseError> {
        let limit = page.limit()?;
        let before = match page.cursor() {
            None => None,
            Some(raw) => Some(decode_rejection_cursor(raw).ok_or_else(|| {
                BrowseError::Invalid("before is not a cursor this service gave".into())
            })?),
        };
        let mut rows = self
            .index
            .rejections(uid.as_ref(), before, limit + 1)
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more
            .then(|| rows.last().map(|r| encode_rejection_cursor(r.id)))
            .flatten();
        Ok(Page { items: rows, next })
    }
}

impl<I: OrderIndex> Browse for Browser<I> {
    fn orders<'a>(&'a self, search: Search, page: PageRequest) -> Answer<'a, OrderSummary> {
        Box::pin(self.order_page(search, page))
    }

    fn rejections<'a>(
        &'a self,
        uid: Option<OrderUid>,
        page: PageRequest,
    ) -> Answer<'a, RejectionRecord> {
        Box::pin(self.rejection_page(uid, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` orders, newest first, counting the reads.
    #[derive(Clone)]
    struct Counted {
        n: usize,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl OrderIndex for Counted {
        async fn summaries(
            &self,
            search: &Search,
            before: Option<&Position>,
            limit: usize,
        ) -> Result<Vec<(Position, OrderSummary)>, IndexError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let at = |i: usize| DateTime::from_timestamp(1_000_000 - i as i64, 0).unwrap();
            Ok((0..self.n)
                .map(|i| {
                    let uid = OrderUid::parse(format!("o{i}")).unwrap();
                    let summary = OrderSummary {
                        order_uid: uid.to_string(),
                        date_created: at(i),
                        stored_at: at(i),
                        customer_id: format!("c{}", search.any.len()),
                        name: String::new(),
                        city: String::new(),
                        amount: 1,
                        currency: "USD".into(),
                        items: 1,
                    };
                    (
                        Position {
                            stored_at: at(i),
                            uid,
                        },
                        summary,
                    )
                })
                .filter(|(p, _)| before.is_none_or(|b| p.stored_at < b.stored_at))
                .take(limit)
                .collect())
        }

        async fn rejections(
            &self,
            _: Option<&OrderUid>,
            _: Option<i64>,
            _: usize,
        ) -> Result<Vec<RejectionRecord>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn the_newest_page_is_read_once_per_lifetime_and_cut_to_each_limit() {
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let index = Counted {
            n: 300,
            reads: reads.clone(),
        };
        let browser = Browser::with_newest_ttl(index, Duration::from_millis(200));
        let page = |limit: &str| PageRequest {
            limit: Some(limit.into()),
            before: None,
        };
        let first = browser.orders(Search::default(), page("50")).await.unwrap();
        let small = browser.orders(Search::default(), page("2")).await.unwrap();
        let all = browser
            .orders(Search::default(), page("200"))
            .await
            .unwrap();
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one read"
        );
        assert_eq!(first.items.len(), 50);
        assert_eq!(small.items.len(), 2);
        assert_eq!(all.items.len(), 200);
        assert_eq!(small.items[..], first.items[..2]);
        // The cursor of a cut page leads on from its own last row.
        let next = browser
            .orders(
                Search::default(),
                PageRequest {
                    limit: Some("2".into()),
                    before: small.next,
                },
            )
            .await
            .unwrap();
        assert_eq!(next.items[0].order_uid, "o2");
        // A search, and an older page, are never from memory.
        let searched = Search::guess("abc").unwrap();
        browser.orders(searched, page("5")).await.unwrap();
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(250)).await;
        browser.orders(Search::default(), page("5")).await.unwrap();
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "read again once old"
        );
        // Fewer orders than a page: no next page.
        let few = Browser::with_newest_ttl(Counted { n: 3, reads }, Duration::from_secs(1));
        let page = few.orders(Search::default(), page("50")).await.unwrap();
        assert_eq!((page.items.len(), page.next), (3, None));
    }

    #[test]
    fn phones_are_read_as_people_write_them() {
        for (input, want) in [
            ("+9720000000", Some("+9720000000")),
            ("+972 000-0000", Some("+9720000000")),
            ("00972 (0) 000 0000", Some("+97200000000")),
            ("+1 (555) 010.9999", Some("+15550109999")),
            ("9720000000", None),
            ("+0123", None),
            ("+1", None),
            ("+1234567890123456", None),
            ("+12a4", None),
            ("", None),
        ] {
            assert_eq!(normalise_phone(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn e_mail_is_lowered_in_ascii_only() {
        assert_eq!(
            normalise_email(" Test@GMAIL.com ").as_deref(),
            Some("test@gmail.com")
        );
        // Only ASCII letters are lowered, as lower(... COLLATE "C") does in the index.
        assert_eq!(
            normalise_email("Jo.Smith+Tag@Example.ORG").as_deref(),
            Some("jo.smith+tag@example.org")
        );
        assert_eq!(normalise_email("not an address"), None);
    }

    #[test]
    fn a_search_box_value_is_tried_as_everything_it_may_be() {
        let fields = |q: &str| -> Vec<(Field, String)> {
            Search::guess(q)
                .unwrap()
                .any
                .into_iter()
                .map(|c| (c.field, c.value))
                .collect()
        };
        assert_eq!(
            fields("WBILMTESTTRACK"),
            vec![
                (Field::Uid, "WBILMTESTTRACK".into()),
                (Field::TrackNumber, "WBILMTESTTRACK".into()),
                (Field::Transaction, "WBILMTESTTRACK".into()),
                (Field::CustomerId, "WBILMTESTTRACK".into()),
            ]
        );
        assert_eq!(
            fields("Test@Gmail.com"),
            vec![
                (Field::Email, "test@gmail.com".into()),
                (Field::CustomerId, "Test@Gmail.com".into())
            ]
        );
        let phone = fields("+972 000 0000");
        assert_eq!(phone[0], (Field::Phone, "+9720000000".into()));
        // Digits alone may be a phone without its `+`, or an id.
        let digits = fields("9720000000");
        assert!(digits.contains(&(Field::Phone, "+9720000000".into())));
        assert!(digits.contains(&(Field::TrackNumber, "9720000000".into())));
        assert!(Search::guess("  ").unwrap().is_everything(), "a blank box");
        assert!(
            Search::guess(&"é".repeat(MAX_VALUE_LEN)).is_ok(),
            "characters, not bytes"
        );
        assert!(Search::guess(&"x".repeat(MAX_VALUE_LEN + 1)).is_err());
        assert!(Search::guess("a\0b").is_err());
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let p = Position {
            stored_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            uid: OrderUid::parse("abc123").unwrap(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&p)), Some(p));
        for bad in ["", "zz", "00", &hex::encode("1.a-b"), &hex::encode("x.abc")] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
        assert_eq!(
            decode_rejection_cursor(&encode_rejection_cursor(42)),
            Some(42)
        );
        assert_eq!(decode_rejection_cursor(&hex::encode("r0")), None);
        assert_eq!(decode_rejection_cursor(&hex::encode("r-1")), None);
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        let req = |l: &str| PageRequest {
            limit: Some(l.into()),
            before: None,
        };
        assert_eq!(req("1").limit().unwrap(), 1);
        assert_eq!(req("200").limit().unwrap(), MAX_LIMIT);
        for bad in [
            "0",
            "201",
            "-1",
            "+5",
            " 5",
            "ten",
            "",
            "18446744073709551616",
        ] {
            assert!(req(bad).limit().is_err(), "{bad:?}");
        }
        assert_eq!(PageRequest::default().limit().unwrap(), DEFAULT_LIMIT);
    }
}
