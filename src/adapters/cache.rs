//! The lookup cache: moka, bounded by bytes (an entry weighs its JSON), least recently used
//! out first, so that after a preload the newest orders are the last to go.

use moka::future::Cache;
use moka::policy::EvictionPolicy;

use metrics::Unit;

use std::sync::Arc;

use crate::domain::browse::{IndexError, OrderIndex, OrderSummary, RejectionRecord, Search};
use crate::domain::lookup::{LookupError, OrderView};
use crate::domain::metrics::{Kind, Labels, Metric};
use crate::domain::order::OrderUid;
use crate::domain::ports::{NewOrderListener, OrderCache, Position, StoreError};
use crate::domain::validate::CheckedOrder;

pub const CACHE_ENTRIES: &str = "order_svc_cache_entries";
pub const CACHE_BYTES: &str = "order_svc_cache_bytes";

pub const METRICS: &[Metric] = &[
    Metric {
        name: CACHE_ENTRIES,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Orders in the cache.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: CACHE_BYTES,
        kind: Kind::Gauge,
        unit: Some(Unit::Bytes),
        help: "Weight of the cache: the bytes its entries hold (JSON, key, tag and bookkeeping).",
        labels: Labels::Bounded(&[]),
    },
];

/// What an entry costs beyond the bytes of its JSON, key and entity tag: the structs that
/// hold them and moka's bookkeeping (its entry, the access and write orders, the hash
/// tables), as measured by `just bench-memory`: with this counted, the resident memory of a
/// full cache is its bound.
pub const ENTRY_OVERHEAD: usize = 700;

/// The bytes an entry really holds.
fn weight(uid: &OrderUid, view: &OrderView) -> usize {
    uid.as_str().len() + view.json.len() + view.etag.len() + ENTRY_OVERHEAD
}

#[derive(Clone)]
pub struct MokaCache {
    inner: Cache<OrderUid, OrderView>,
    /// Uids looked up and not found, for [`MISSING_FOR`]: bounded in count and time.
    missing: Cache<OrderUid, ()>,
}

/// How long an unknown uid is answered 404 without asking the database. An order stored by
/// another process becomes visible here after at most this long; one stored by this
/// process's ingest at once.
pub const MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Most unknown uids remembered at once.
const MISSING_MAX: u64 = 100_000;

impl MokaCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|uid: &OrderUid, view: &OrderView| {
                u32::try_from(weight(uid, view)).unwrap_or(u32::MAX)
            })
            // TinyLFU (moka's default) may refuse a new entry in favour of old ones; for
            // orders, recency is what predicts the next lookup.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        let missing = Cache::builder()
            .max_capacity(MISSING_MAX)
            .time_to_live(MISSING_FOR)
            .build();
        Self { inner, missing }
    }

    pub fn entries(&self) -> u64 {
        self.inner.entry_count()
    }

    pub fn bytes(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Drops `uid` from the negative cache. The read first keeps the hot path (every
    /// stored order) to one lookup in a map that is almost always empty.
    async fn forget_missing(&self, uid: &OrderUid) {
        if self.missing.contains_key(uid) {
            self.missing.invalidate(uid).await;
        }
    }

    /// Applies pending evictions and counts, so that [`entries`](Self::entries) and
    /// [`bytes`](Self::bytes) are exact.
    pub async fn settle(&self) {
        self.inner.run_pending_tasks().await;
    }
}

impl OrderCache for MokaCache {
    async fn get(&self, uid: &OrderUid) -> Option<OrderView> {
        self.inner.get(uid).await
    }

    async fn get_or_load<F>(&self, uid: &OrderUid, load: F) -> Result<OrderView, LookupError>
    where
        F: Future<Output = Result<OrderView, LookupError>> + Send,
    {
        self.inner
            .try_get_with_by_ref(uid, load)
            .await
            .map_err(|e| (*e).clone())
    }

    async fn put(&self, uid: OrderUid, view: OrderView) {
        self.forget_missing(&uid).await;
        self.inner.insert(uid, view).await;
    }

    async fn known_missing(&self, uid: &OrderUid) -> bool {
        self.missing.contains_key(uid)
    }

    async fn remember_missing(&self, uid: OrderUid) {
        self.missing.insert(uid, ()).await;
    }
}

/// Write-through: ingest announces every order it stored.
impl NewOrderListener for MokaCache {
    async fn stored(&self, order: &CheckedOrder) {
        let view = OrderView::new(order.json().clone(), order.content_hash());
        self.forget_missing(order.uid()).await;
        self.inner.insert(order.uid().clone(), view).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::domain::lookup::{Lookup, Source};
    use crate::domain::order::ContentHash;
    use std::ops::Bound;

    use crate::domain::ports::{OrderReader, Position, StoreError, StoredOrder};

    /// A reader of `n` orders named o0..o{n-1}, oldest first, 100 bytes of JSON each, slow.
    struct SlowReader {
        n: usize,
        finds: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    fn reader(n: usize) -> Arc<SlowReader> {
        Arc::new(SlowReader {
            n,
            finds: AtomicUsize::new(0),
            down: Default::default(),
        })
    }

    fn stored(i: usize) -> StoredOrder {
        let mut json = format!("{{\"order_uid\":\"o{i}\"}}").into_bytes();
        json.resize(100, b' ');
        StoredOrder {
            uid: OrderUid::parse(format!("o{i}")).unwrap(),
            hash: ContentHash::of_json(&json),
            json,
        }
    }

    impl OrderReader for Arc<SlowReader> {
        async fn find(&self, uid: &OrderUid) -> Result<Option<StoredOrder>, StoreError> {
            self.finds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable(anyhow::anyhow!("down")));
            }
            let i: usize = uid.as_str()[1..].parse().unwrap();
            Ok((i < self.n).then(|| stored(i)))
        }

        async fn newest_start(&self, n: usize) -> Result<Option<Position>, StoreError> {
            Ok((self.n > 0).then(|| position(self.n.saturating_sub(n))))
        }

        async fn page(
            &self,
            from: Bound<&Position>,
            limit: usize,
        ) -> Result<Vec<(Position, StoredOrder)>, StoreError> {
            Ok((0..self.n)
                .filter(|&i| match from {
                    Bound::Included(p) => position(i) >= *p,
                    Bound::Excluded(p) => position(i) > *p,
                    Bound::Unbounded => true,
                })
                .take(limit)
                .map(|i| (position(i), stored(i)))
                .collect())
        }
    }

    /// Order `i` was stored `i` seconds after the epoch.
    fn position(i: usize) -> Position {
        Position {
            stored_at: chrono::DateTime::from_timestamp(i as i64, 0).unwrap(),
            uid: OrderUid::parse(format!("o{i}")).unwrap(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_uid_cost_one_query() {
        let reader = reader(10);
        let lookup = Arc::new(Lookup::new(reader.clone(), MokaCache::new(1 << 20)));
        let uid = OrderUid::parse("o3").unwrap();
        let answers = futures::future::join_all((0..50).map(|_| lookup.get(&uid))).await;
        assert!(answers.iter().all(|a| {
            a.as_ref()
                .is_ok_and(|(v, _)| v.json.starts_with(b"{\"order_uid\":\"o3\""))
        }));
        assert_eq!(reader.finds.load(Ordering::SeqCst), 1);
        assert_eq!(lookup.get(&uid).await.unwrap().1, Source::Cache);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached() {
        let reader = reader(1);
        reader.down.store(true, Ordering::SeqCst);
        let lookup = Lookup::new(reader.clone(), MokaCache::new(1 << 20));
        let uid = OrderUid::parse("o0").unwrap();
        for _ in 0..2 {
            assert!(matches!(
                lookup.get(&uid).await,
                Err(LookupError::Unavailable(_))
            ));
        }
        assert_eq!(reader.finds.load(Ordering::SeqCst), 2);
        reader.down.store(false, Ordering::SeqCst);
        assert_eq!(lookup.get(&uid).await.unwrap().1, Source::Store);
    }

    #[tokio::test]
    async fn an_unknown_uid_is_remembered_until_the_order_is_stored() {
        let reader = reader(1);
        let cache = MokaCache::new(1 << 20);
        let lookup = Lookup::new(reader.clone(), cache.clone());
        let uid = OrderUid::parse("o7").unwrap();
        for _ in 0..3 {
            assert!(matches!(lookup.get(&uid).await, Err(LookupError::NotFound)));
        }
        assert_eq!(
            reader.finds.load(Ordering::SeqCst),
            1,
            "one query, then memory"
        );
        let s = stored(7);
        cache
            .put(uid.clone(), OrderView::new(s.json.into(), &s.hash))
            .await;
        assert_eq!(lookup.get(&uid).await.unwrap().1, Source::Cache);
    }

    #[tokio::test]
    async fn an_unknown_uid_is_asked_again_once_its_period_is_over_and_few_are_held() {
        let reader = reader(1);
        let cache = MokaCache::new(1 << 20);
        let lookup = Lookup::new(reader.clone(), cache.clone());
        let uid = OrderUid::parse("o7").unwrap();
        assert!(matches!(lookup.get(&uid).await, Err(LookupError::NotFound)));
        assert!(cache.known_missing(&uid).await);
        tokio::time::sleep(MISSING_FOR + std::time::Duration::from_millis(300)).await;
        assert!(
            !cache.known_missing(&uid).await,
            "remembered past MISSING_FOR"
        );
        assert!(matches!(lookup.get(&uid).await, Err(LookupError::NotFound)));
        assert_eq!(reader.finds.load(Ordering::SeqCst), 2, "asked again");

        // A flood of unknown uids holds at most MISSING_MAX of them.
        for i in 0..MISSING_MAX + 1_000 {
            cache
                .remember_missing(OrderUid::parse(format!("m{i}")).unwrap())
                .await;
        }
        cache.missing.run_pending_tasks().await;
        let held = cache.missing.entry_count();
        assert!(
            (MISSING_MAX / 2..=MISSING_MAX).contains(&held),
            "{held} held"
        );
    }

    #[test]
    fn an_entry_weighs_its_json_key_tag_and_bookkeeping() {
        let s = stored(7);
        let view = OrderView::new(s.json.clone().into(), &s.hash);
        assert_eq!(
            weight(&s.uid, &view),
            s.json.len() + "o7".len() + 64 + ENTRY_OVERHEAD
        );
    }

    #[tokio::test]
    async fn after_a_preload_over_capacity_the_newest_orders_stay() {
        // Room for about 50 orders of ~102 bytes of JSON and their bookkeeping; preload 200.
        let room = 50 * (102 + 64 + ENTRY_OVERHEAD as u64);
        let cache = MokaCache::new(room);
        let reader = reader(200);
        // Pages of 7: the walk from one page to the next is part of what is tested.
        let lookup = Lookup::new(reader, cache.clone()).with_preload_page(7);
        assert_eq!(lookup.preload(200).await.unwrap(), 200);
        cache.settle().await;
        assert!(cache.bytes() <= room, "bounded by bytes: {}", cache.bytes());
        for newest in 190..200 {
            assert!(
                cache
                    .get(&OrderUid::parse(format!("o{newest}")).unwrap())
                    .await
                    .is_some(),
                "o{newest} was evicted"
            );
        }
        for oldest in 0..10 {
            assert!(
                cache
                    .get(&OrderUid::parse(format!("o{oldest}")).unwrap())
                    .await
                    .is_none(),
                "o{oldest} stayed"
            );
        }
    }
}

/// The order index with each uid's dead-letter records remembered for [`MISSING_FOR`], as
/// its absence is: a uid asked again and again (a flood of 404s, a page refreshed) reads
/// them once per period. Paging and the unrestricted list go to the index every time.
#[derive(Clone)]
pub struct RememberedRejections<I> {
    index: I,
    /// (uid, limit) → its newest records; weighed in records, at most [`MISSING_MAX`].
    by_uid: Cache<(OrderUid, usize), Arc<Vec<RejectionRecord>>>,
}

impl<I: OrderIndex> RememberedRejections<I> {
    pub fn new(index: I) -> Self {
        Self {
            index,
            by_uid: Cache::builder()
                .max_capacity(MISSING_MAX)
                .weigher(|_, records: &Arc<Vec<RejectionRecord>>| {
                    u32::try_from(records.len() + 1).unwrap_or(u32::MAX)
                })
                .time_to_live(MISSING_FOR)
                .build(),
        }
    }
}

impl<I: OrderIndex> OrderIndex for RememberedRejections<I> {
    fn summaries(
        &self,
        search: &Search,
        before: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Position, OrderSummary)>, IndexError>> + Send {
        self.index.summaries(search, before, limit)
    }

    async fn rejections(
        &self,
        uid: Option<&OrderUid>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RejectionRecord>, StoreError> {
        let (Some(uid), None) = (uid, before) else {
            return self.index.rejections(uid, before, limit).await;
        };
        let index = self.index.clone();
        let owned = uid.clone();
        self.by_uid
            .try_get_with((uid.clone(), limit), async move {
                index
                    .rejections(Some(&owned), None, limit)
                    .await
                    .map(Arc::new)
            })
            .await
            .map(|records| records.as_ref().clone())
            // Shared by every waiter: the error's text, kept as the same kind.
            .map_err(|e| match e.as_ref() {
                StoreError::Unavailable(why) => StoreError::Unavailable(anyhow::anyhow!("{why:#}")),
                other => StoreError::Unknown(anyhow::anyhow!("{other}")),
            })
    }
}
