//! Use case: uid -> order, from the cache, else from the store (then cached).

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;

use metrics::counter;

use super::metrics::{self as m, CacheResult, Label};
use super::order::OrderUid;
use super::ports::{OrderCache, OrderReader, StoreError};
// The vocabulary of the lookup ports, named here too where the use case is read.
pub use super::ports::{LookupError, OrderView};

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache held the order.
    Cache,
    /// The store was asked (and the cache filled).
    Store,
}

/// A lookup's answer, boxed so that [`FindOrder`] can be used as `dyn`.
pub type Found<'a> =
    Pin<Box<dyn Future<Output = Result<(OrderView, Source), LookupError>> + Send + 'a>>;

/// The driving port of lookups: what an inbound adapter (HTTP) calls. It can be held as
/// `Arc<dyn FindOrder>`, so the adapter knows nothing of the store or the cache behind it,
/// and its handlers can be tested with a fake.
pub trait FindOrder: Send + Sync + 'static {
    /// The order with this uid, and where it was found.
    fn find<'a>(&'a self, uid: &'a OrderUid) -> Found<'a>;
}

impl<R: OrderReader, C: OrderCache> FindOrder for Lookup<R, C> {
    fn find<'a>(&'a self, uid: &'a OrderUid) -> Found<'a> {
        Box::pin(self.get(uid))
    }
}

/// Orders read per query by [`Lookup::preload`].
const PRELOAD_PAGE: usize = 2_000;

/// The lookup use case: the cache first, then the store (one query shared by concurrent
/// misses), then the cache filled.
pub struct Lookup<R, C> {
    reader: R,
    cache: C,
    preload_page: usize,
}

impl<R: OrderReader, C: OrderCache> Lookup<R, C> {
    /// The use case over its ports.
    pub fn new(reader: R, cache: C) -> Self {
        Self {
            reader,
            cache,
            preload_page: PRELOAD_PAGE,
        }
    }

    /// Smaller preload pages, so that a test walks several with a few orders.
    #[cfg(test)]
    pub(crate) fn with_preload_page(mut self, n: usize) -> Self {
        self.preload_page = n;
        self
    }

    /// The order, from the cache when it holds it; otherwise one store query, shared by every
    /// concurrent request for the same uid, whose answer is then cached.
    pub async fn get(&self, uid: &OrderUid) -> Result<(OrderView, Source), LookupError> {
        if let Some(view) = self.cache.get(uid).await {
            counter!(m::CACHE_REQUESTS, "result" => CacheResult::Hit.as_str()).increment(1);
            return Ok((view, Source::Cache));
        }
        if self.cache.known_missing(uid).await {
            counter!(m::CACHE_REQUESTS, "result" => CacheResult::NegativeHit.as_str()).increment(1);
            return Err(LookupError::NotFound);
        }
        counter!(m::CACHE_REQUESTS, "result" => CacheResult::Miss.as_str()).increment(1);
        let load = async {
            match self.reader.find(uid).await? {
                Some(stored) => Ok(OrderView::from(stored)),
                None => Err(LookupError::NotFound),
            }
        };
        match self.cache.get_or_load(uid, load).await {
            Ok(view) => Ok((view, Source::Store)),
            Err(LookupError::NotFound) => {
                self.cache.remember_missing(uid.clone()).await;
                Err(LookupError::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    /// Fills the cache with the newest `n` orders, inserting the oldest first so that the
    /// newest are the last to be evicted. Returns how many were loaded.
    ///
    /// Page by page, oldest first: memory holds one page beyond the cache, whatever `n`.
    pub async fn preload(&self, n: usize) -> Result<usize, StoreError> {
        let Some(start) = self.reader.newest_start(n).await? else {
            return Ok(0);
        };
        let mut from = Bound::Included(start);
        let mut count = 0;
        while count < n {
            let limit = self.preload_page.min(n - count);
            let page = self.reader.page(from.as_ref(), limit).await?;
            let full = page.len() == limit;
            if let Some((last, _)) = page.last() {
                from = Bound::Excluded(last.clone());
            }
            for (_, stored) in page {
                let uid = stored.uid.clone();
                self.cache.put(uid, OrderView::from(stored)).await;
                count += 1;
            }
            if !full {
                break;
            }
        }
        Ok(count)
    }
}
