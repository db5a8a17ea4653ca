//! The lookup cache: moka, bounded by bytes (an entry weighs its JSON), least recently used
//! out first, so that after a preload the newest orders are the last to go.

use bytes::Bytes;
use moka::future::Cache;
use moka::policy::EvictionPolicy;

use crate::domain::lookup::{LookupError, OrderView};
use crate::domain::order::OrderUid;
use crate::domain::ports::{OrderCache, StoredOrders};
use crate::domain::validate::CheckedOrder;

#[derive(Clone)]
pub struct MokaCache {
    inner: Cache<OrderUid, OrderView>,
}

impl MokaCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|uid: &OrderUid, view: &OrderView| {
                u32::try_from(uid.as_str().len() + view.json.len()).unwrap_or(u32::MAX)
            })
            // TinyLFU (moka's default) may refuse a new entry in favour of old ones; for
            // orders, recency is what predicts the next lookup.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { inner }
    }

    pub fn entries(&self) -> u64 {
        self.inner.entry_count()
    }

    pub fn bytes(&self) -> u64 {
        self.inner.weighted_size()
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
        self.inner.insert(uid, view).await;
    }
}

/// Write-through: ingest announces every order it stored.
impl StoredOrders for MokaCache {
    async fn stored(&self, order: &CheckedOrder) {
        let view = OrderView::new(Bytes::copy_from_slice(order.json()), order.content_hash());
        self.inner.insert(order.uid().clone(), view).await;
    }
}
