//! The traits adapters implement. Each error says what the caller may do about it.
//!
//! The service types are generic over these traits (no `dyn`), so a test can drive the use
//! cases with small hand-written fakes. Every port is `Clone` and cheap to clone (a pool, a
//! producer, a cache handle): a port shared by two services is simply cloned.

use std::future::Future;
use std::ops::Bound;

use chrono::{DateTime, Utc};

use bytes::Bytes;

use super::message::{DeadLetter, MessageId};
use super::order::{ContentHash, OrderUid};
use super::validate::CheckedOrder;

/// An order ready to serve: its canonical JSON (written as is, never re-encoded) and its
/// entity tag (the content hash; orders never change, so neither does the tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The canonical JSON, served as is.
    pub json: Bytes,
    /// The content hash in hex.
    pub etag: String,
}

impl OrderView {
    /// A view of `json`, tagged by its hash.
    pub fn new(json: Bytes, hash: &ContentHash) -> Self {
        Self {
            json,
            etag: hash.to_hex(),
        }
    }
}

impl From<StoredOrder> for OrderView {
    fn from(s: StoredOrder) -> Self {
        Self::new(Bytes::from(s.json), &s.hash)
    }
}

/// Why a lookup has no order to show.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// No order with this uid is stored.
    #[error("no order with this uid")]
    NotFound,
    /// The store cannot be reached and the cache does not hold the order.
    #[error("the order store is unavailable: {0}")]
    Unavailable(String),
    /// Stored, but the row does not read back as an order.
    #[error("{0}")]
    Unreadable(String),
    /// Anything else; details are logged, not shown.
    #[error("lookup failed: {0}")]
    Internal(String),
}

impl From<StoreError> for LookupError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(format!("{e:#}")),
            e @ StoreError::Unreadable { .. } => Self::Unreadable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// What the store did with one order of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// New: written now.
    Inserted,
    /// Already stored with the same content: a redelivery.
    SameContent,
    /// Already stored with other content under the same uid.
    OtherContent,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable or failing: nothing of the call was written. Retry later.
    #[error("the database is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The database refused the data itself (a constraint the domain did not foresee).
    /// Retrying the same data fails the same way.
    #[error("the database refused the data: {0}")]
    Refused(String),
    /// A stored row that does not read back as an order (written by something else, or
    /// before a rule existed). Reading it again fails the same way.
    #[error("order {uid} is stored but cannot be read: {why}")]
    Unreadable {
        /// The row's uid.
        uid: String,
        /// What does not read back.
        why: String,
    },
    /// A failure of no known kind: treated as the server's, retried.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// An order as read back from the store: its canonical JSON and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// Its uid.
    pub uid: OrderUid,
    /// Its canonical JSON, rebuilt from the rows.
    pub json: Vec<u8>,
    /// The hash stored with it.
    pub hash: ContentHash,
}

/// Durable storage of orders.
pub trait OrderStore: Clone + Send + Sync + 'static {
    /// Writes the orders not stored yet, all or nothing, and says per order (same index) what
    /// happened. The uids of `orders` are distinct. Calling it again with the same orders
    /// writes nothing twice.
    fn store_batch(
        &self,
        orders: &[CheckedOrder],
    ) -> impl Future<Output = Result<Vec<StoreOutcome>, StoreError>> + Send;
}

/// The ledger of messages already sent to the dead-letter topic, so that a replay sends
/// none twice.
pub trait DeadLetterLedger: Clone + Send + Sync + 'static {
    /// Which of these messages were already sent to the dead-letter topic (same index).
    fn dead_lettered(
        &self,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Remembers that these messages were sent to the dead-letter topic.
    fn record_dead_letters(
        &self,
        letters: &[DeadLetter<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why dead letters could not be delivered. The caller keeps the messages and retries.
#[derive(Debug, thiserror::Error)]
#[error("cannot deliver dead letters: {0:#}")]
pub struct DeadLetterError(pub anyhow::Error);

/// The dead-letter topic.
pub trait DeadLetterSink: Clone + Send + Sync + 'static {
    /// Publishes every letter and returns once each is acknowledged by the broker.
    fn send(
        &self,
        letters: &[DeadLetter<'_>],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// Told of every order ingest has just stored (the lookup cache, written through).
/// Infallible: a cache that misses an order only costs a database read later.
pub trait NewOrderListener: Clone + Send + Sync + 'static {
    /// Told of every order just stored.
    fn stored(&self, order: &CheckedOrder) -> impl Future<Output = ()> + Send;
}

/// For services without a cache (tests).
impl NewOrderListener for () {
    async fn stored(&self, _: &CheckedOrder) {}
}

/// Reading orders back.
pub trait OrderReader: Clone + Send + Sync + 'static {
    /// The order with this uid, if stored.
    fn find(
        &self,
        uid: &OrderUid,
    ) -> impl Future<Output = Result<Option<StoredOrder>, StoreError>> + Send;

    /// Where the newest `n` stored orders begin: the position of the oldest of them (of the
    /// oldest order of all when fewer are stored), or `None` when none is.
    fn newest_start(
        &self,
        n: usize,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// Up to `limit` orders from `from` on in the order they were stored, oldest first, each
    /// with its position: a preload reads page by page, never all at once.
    fn page(
        &self,
        from: Bound<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Position, StoredOrder)>, StoreError>> + Send;
}

/// Where a stored order stands in the order orders were stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
    /// Its uid, which orders orders stored at the same instant.
    pub uid: OrderUid,
}

/// The lookup cache. Infallible for reads and writes; only a load can fail.
pub trait OrderCache: Clone + Send + Sync + 'static {
    /// The cached view, if any.
    fn get(&self, uid: &OrderUid) -> impl Future<Output = Option<OrderView>> + Send;

    /// The cached order, or the result of `load`, which runs once however many callers ask
    /// for the same uid at the same time; a successful load is cached, a failure is not.
    fn get_or_load<F>(
        &self,
        uid: &OrderUid,
        load: F,
    ) -> impl Future<Output = Result<OrderView, LookupError>> + Send
    where
        F: Future<Output = Result<OrderView, LookupError>> + Send;

    /// Caches a view.
    fn put(&self, uid: OrderUid, view: OrderView) -> impl Future<Output = ()> + Send;

    /// Whether `uid` was looked up a moment ago and not found (a negative cache, so that a
    /// flood of unknown uids costs the database little).
    fn known_missing(&self, uid: &OrderUid) -> impl Future<Output = bool> + Send;

    /// Remembers for a few seconds that `uid` is not stored. Storing or putting the order
    /// forgets it at once.
    fn remember_missing(&self, uid: OrderUid) -> impl Future<Output = ()> + Send;
}
