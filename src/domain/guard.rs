//! Use case: every read of orders and dead letters on behalf of a caller. It decides what
//! the caller may do (scopes), what it sees (personal data masked without `pii:read`), and
//! records in the audit trail every read of unmasked personal data and every search before
//! the data leaves: no record, no data.
//!
//! The inbound adapters (the JSON API and the pages alike) call only this, so no route can
//! show more than another.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use metrics::counter;
use serde::Serialize;
use sha2::Sha256;

use super::access::{Caller, Forbidden, Scope};
use super::browse::{
    Browse, BrowseError, OrderSummary, Page, PageRequest, RejectionRecord, Search,
};
use super::lookup::{FindOrder, LookupError, OrderView, Source};
use super::metrics as m;
use super::order::{Order, OrderUid};
use super::ports::StoreError;

/// What a read was, in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// One order shown unmasked.
    Order,
    /// The newest orders listed unmasked (no search).
    List,
    /// A search (masked or not).
    Search,
    /// A customer link to one order made.
    Link,
}

impl Action {
    /// Its name in the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::List => "list",
            Self::Search => "search",
            Self::Link => "link",
        }
    }

    /// The action a stored name means.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Order, Self::List, Self::Search, Self::Link]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// One line of the audit trail. Never holds a searched value: only which fields were
/// searched and a keyed hash of each value (the same value hashes the same, so an auditor
/// holding the key can tell whether someone searched for a given phone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When (set by the store when written).
    pub at: Option<DateTime<Utc>>,
    /// Who: a token's subject, a key's name, or `anonymous`.
    pub subject: String,
    /// The client program of a token, when it said.
    pub client: Option<String>,
    /// How the caller proved who it is.
    pub via: &'static str,
    /// What was read.
    pub action: Action,
    /// Which route served it (a template, such as `/order/{order_uid}`).
    pub route: String,
    /// The order shown, for [`Action::Order`].
    pub order_uid: Option<String>,
    /// The fields searched, for [`Action::Search`].
    pub fields: Vec<String>,
    /// A keyed hash (HMAC-SHA-256, hex) of each searched value, in the order of `fields`.
    pub value_hashes: Vec<String>,
    /// How many orders were shown.
    pub results: i64,
    /// The request's id (its `X-Request-Id`).
    pub request_id: String,
}

/// A boxed answer of the audit port, so that it can be held as `dyn`.
pub type Recorded<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The audit trail (the driven port; PostgreSQL implements it).
pub trait AuditTrail: Send + Sync + 'static {
    /// Writes `record` durably; an error means it was not written.
    fn record(&self, record: AuditRecord) -> Recorded<'_, ()>;

    /// Up to `limit` records of `subject` (everyone's when `None`) since `since`, with an
    /// id below `before`, newest first, each with its id.
    fn read(&self, query: AuditQuery) -> Recorded<'_, Vec<(i64, AuditRecord)>>;
}

/// Which records to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// One subject's, or everyone's.
    pub subject: Option<String>,
    /// Written at or after.
    pub since: Option<DateTime<Utc>>,
    /// With an id below (the cursor of the page before).
    pub before: Option<i64>,
    /// How many at most.
    pub limit: usize,
}

/// The key of the searched values' hashes.
#[derive(Clone)]
pub struct ValueHasher(Arc<[u8]>);

impl ValueHasher {
    /// Hashes under `key`.
    pub fn new(key: &[u8]) -> Self {
        Self(key.into())
    }

    /// The keyed hash of `value` searched as `field`, in hex.
    pub fn hash(&self, field: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Where a read comes from: the caller, the route and the request id.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// Who asks.
    pub caller: &'a Caller,
    /// The route template.
    pub route: &'a str,
    /// The request id.
    pub request_id: &'a str,
}

/// Why a guarded read has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The caller lacks a scope.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// The audit record could not be written, so the data was not shown.
    #[error("the audit trail cannot be written: {0}")]
    AuditUnavailable(String),
    /// The lookup failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The browse failed.
    #[error(transparent)]
    Browse(#[from] BrowseError),
}

/// The guarded reads over the lookup, browse and audit ports.
#[derive(Clone)]
pub struct Guard {
    lookup: Arc<dyn FindOrder>,
    browse: Arc<dyn Browse>,
    audit: Arc<dyn AuditTrail>,
    hasher: ValueHasher,
}

/// An order as one caller may see it.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Its JSON (masked or not).
    pub json: Bytes,
    /// Its entity tag: the content hash, marked `m-` when masked.
    pub etag: String,
    /// Whether personal data was masked.
    pub masked: bool,
    /// Where the lookup found it.
    pub source: Source,
}

impl Shown {
    /// The order itself.
    pub fn order(&self) -> Result<Order, LookupError> {
        serde_json::from_slice(&self.json)
            .map_err(|e| LookupError::Unreadable(format!("a served order does not decode: {e}")))
    }
}

impl Guard {
    /// The use case over its ports.
    pub fn new(
        lookup: Arc<dyn FindOrder>,
        browse: Arc<dyn Browse>,
        audit: Arc<dyn AuditTrail>,
        hasher: ValueHasher,
    ) -> Self {
        Self {
            lookup,
            browse,
            audit,
            hasher,
        }
    }

    async fn write(&self, record: AuditRecord) -> Result<(), Refusal> {
        match self.audit.record(record).await {
            Ok(()) => Ok(()),
            Err(e) => {
                counter!(m::AUDIT_FAILURES).increment(1);
                tracing::error!(error = %e, "audit record not written; the read is refused");
                Err(Refusal::AuditUnavailable(e.to_string()))
            }
        }
    }

    fn record(&self, asked: Asked<'_>, action: Action) -> AuditRecord {
        AuditRecord {
            at: None,
            subject: asked.caller.subject.to_string(),
            client: asked.caller.client.as_deref().map(str::to_owned),
            via: asked.caller.via.as_str(),
            action,
            route: asked.route.to_owned(),
            order_uid: None,
            fields: Vec::new(),
            value_hashes: Vec::new(),
            results: 0,
            request_id: asked.request_id.to_owned(),
        }
    }

    /// One order: `orders:read`; unmasked (and audited) with `pii:read`.
    pub async fn order(&self, asked: Asked<'_>, uid: &OrderUid) -> Result<Shown, Refusal> {
        asked.caller.require(&[Scope::OrdersRead])?;
        let (view, source) = self.lookup.find(uid).await?;
        if asked.caller.sees_pii() {
            let mut record = self.record(asked, Action::Order);
            record.order_uid = Some(uid.to_string());
            record.results = 1;
            self.write(record).await?;
            return Ok(Shown {
                json: view.json,
                etag: view.etag,
                masked: false,
                source,
            });
        }
        Ok(masked(view, source)?)
    }

    /// Whether the caller may make a customer link to `uid` (`links:create` and
    /// `orders:read`, and the order stored); recorded in the trail before the link is given.
    pub async fn link(&self, asked: Asked<'_>, uid: &OrderUid) -> Result<(), Refusal> {
        asked
            .caller
            .require(&[Scope::OrdersRead, Scope::LinksCreate])?;
        self.lookup.find(uid).await?;
        let mut record = self.record(asked, Action::Link);
        record.order_uid = Some(uid.to_string());
        record.results = 1;
        self.write(record).await
    }

    /// The order a customer link opens, as its customer sees it: no personal data, no
    /// caller (the link's signature was the check), nothing recorded.
    pub async fn for_customer(&self, uid: &OrderUid) -> Result<Order, Refusal> {
        let (view, _) = self.lookup.find(uid).await?;
        let order: Order = serde_json::from_slice(&view.json)
            .map_err(|e| LookupError::Unreadable(format!("a stored order does not decode: {e}")))?;
        Ok(order.for_customer())
    }

    /// A page of summaries: `orders:search` (and `pii:read` for phones and e-mails).
    /// Searches are always audited; the newest list when shown unmasked.
    pub async fn orders(
        &self,
        asked: Asked<'_>,
        mut search: Search,
        page: PageRequest,
    ) -> Result<Page<OrderSummary>, Refusal> {
        asked.caller.may_search(&mut search)?;
        let action = if search.is_everything() {
            Action::List
        } else {
            Action::Search
        };
        let mut record = self.record(asked, action);
        for c in search.all.iter().chain(&search.any) {
            record.fields.push(c.field.param().to_owned());
            record
                .value_hashes
                .push(self.hasher.hash(c.field.param(), &c.value));
        }
        let mut found = self.browse.orders(search, page).await?;
        let sees_pii = asked.caller.sees_pii();
        if action == Action::Search || sees_pii {
            record.results = found.items.len() as i64;
            self.write(record).await?;
        }
        if !sees_pii {
            found.items = found.items.into_iter().map(OrderSummary::masked).collect();
        }
        Ok(found)
    }

    /// Dead-letter records: `rejections:read`. Details are redacted for everyone.
    pub async fn rejections(
        &self,
        asked: Asked<'_>,
        uid: Option<OrderUid>,
        page: PageRequest,
    ) -> Result<Page<RejectionRecord>, Refusal> {
        asked.caller.require(&[Scope::RejectionsRead])?;
        let mut found = self.browse.rejections(uid, page).await?;
        found.items = found
            .items
            .into_iter()
            .map(RejectionRecord::shown)
            .collect();
        Ok(found)
    }

    /// What the dead-letter records say of a uid never stored, for a caller who may read
    /// them (none otherwise, and none when they cannot be read right now).
    pub async fn rejections_of(
        &self,
        asked: Asked<'_>,
        uid: OrderUid,
        limit: usize,
    ) -> Vec<RejectionRecord> {
        if !asked.caller.may(Scope::RejectionsRead) {
            return Vec::new();
        }
        let page = PageRequest {
            limit: Some(limit.to_string()),
            before: None,
        };
        match self.rejections(asked, Some(uid), page).await {
            Ok(page) => page.items,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rejections of a uid not found");
                Vec::new()
            }
        }
    }

    /// The audit trail: `audit:read`.
    pub async fn audit(
        &self,
        asked: Asked<'_>,
        query: AuditQuery,
    ) -> Result<Vec<(i64, AuditRecord)>, Refusal> {
        asked.caller.require(&[Scope::AuditRead])?;
        self.audit
            .read(query)
            .await
            .map_err(|e| Refusal::Browse(e.into()))
    }
}

/// The order with its personal data masked, tagged apart from the unmasked one.
fn masked(view: OrderView, source: Source) -> Result<Shown, LookupError> {
    let order: Order = serde_json::from_slice(&view.json)
        .map_err(|e| LookupError::Unreadable(format!("a stored order does not decode: {e}")))?;
    Ok(Shown {
        json: Bytes::from(order.masked().to_json()),
        etag: format!("m-{}", view.etag),
        masked: true,
        source,
    })
}
