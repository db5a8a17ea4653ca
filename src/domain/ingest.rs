//! Use case: a batch of raw messages to decided outcomes.
//!
//! Every message ends in exactly one outcome: stored, duplicate (same uid, same content),
//! conflict (same uid, other content) or rejected. The work is split in three steps so that
//! a failure can be retried without redoing what already succeeded:
//! [`Ingest::plan`] decides what can be decided without I/O, [`Ingest::write`] stores the
//! orders and delivers the dead letters (retry it until it succeeds), and [`Ingest::finish`]
//! counts and announces. Only after `write` succeeded may the caller move its offsets.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, histogram};

use super::message::{DeadLetter, DeadLetterReason, InboundMessage};
use super::metrics::{self as m, Label, Outcome};
use super::order::OrderUid;
use super::ports::{
    DeadLetterError, DeadLetterLedger, DeadLetterSink, NewOrderListener, OrderStore, StoreError,
    StoreOutcome,
};
use super::validate::{CheckedOrder, Consistency, RejectReason, accept};

/// The rules ingest applies to each message.
#[derive(Debug, Clone, Copy)]
pub struct IngestPolicy {
    /// Larger payloads are rejected as `too_large` before decoding.
    pub max_message_bytes: usize,
    /// What to do with orders whose totals do not add up.
    pub consistency: Consistency,
}

/// Why a batch is not durable yet; worth retrying with the same plan.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed (orders or the dead-letter ledger).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dead-letter topic did not take every letter.
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
}

/// What the database said of one order: its outcome, or why it refused it.
type Stored = Result<StoreOutcome, Refusal>;

/// The database's reason for refusing one order (a constraint the rules did not foresee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Orders stored by this batch.
    pub stored: usize,
    /// Redeliveries of orders already stored with the same content.
    pub duplicates: usize,
    /// Other content under a uid already stored: dead-lettered as `conflict`.
    pub conflicts: usize,
    /// Messages the gate refused: dead-lettered with their reason.
    pub rejected: usize,
    /// Dead letters published now (a replay publishes none for messages already sent).
    pub dead_letters_sent: usize,
}

enum Fate {
    /// Index into the plan's orders to store.
    Store(usize),
    /// The same content as this earlier order of the batch: it shares that order's fate.
    Twin(usize),
    Dead {
        reason: DeadLetterReason,
        detail: String,
    },
}

/// A batch in flight, carrying what has already been done to it.
pub struct Plan<'a> {
    batch: &'a [InboundMessage],
    fates: Vec<Fate>,
    orders: Vec<CheckedOrder>,
    /// Per order: how many other versions of its uid come before it in the batch. Versions
    /// are stored one round after another, so the first one the database accepts wins and
    /// a refused one costs only itself.
    rounds: Vec<usize>,
    outcomes: Option<Vec<Stored>>,
    letters_done: bool,
    /// The dead letters went out but the ledger has not recorded them yet: a retry records
    /// them without publishing them again.
    letters_published: bool,
    dead_letters_sent: usize,
}

impl Plan<'_> {
    /// The uids this batch writes: a later batch that holds one of them must wait for this
    /// one, or a later version could be stored before an earlier one.
    pub fn uids(&self) -> impl Iterator<Item = &OrderUid> {
        self.orders.iter().map(CheckedOrder::uid)
    }
}

/// The driving port of ingest: what the inbound adapter (the Kafka consumer) calls for each
/// batch it polled. The consumer is generic over this one trait and knows nothing of the
/// store, the dead-letter sink or the cache behind it.
pub trait IngestBatches: Send + Sync + 'static {
    /// Decodes and validates each message; pure, no I/O.
    fn plan<'a>(&self, batch: &'a [InboundMessage]) -> Plan<'a>;
    /// Makes the batch durable: orders stored, dead letters sent and recorded. An error is
    /// worth retrying with the same plan; nothing is done twice.
    fn write(&self, plan: &mut Plan<'_>) -> impl Future<Output = Result<(), IngestError>> + Send;
    /// Announces what was stored and reports the batch's outcomes.
    fn finish(&self, plan: Plan<'_>) -> impl Future<Output = BatchReport> + Send;
}

impl<S, D, C> IngestBatches for Ingest<S, D, C>
where
    S: OrderStore + DeadLetterLedger,
    D: DeadLetterSink,
    C: NewOrderListener,
{
    fn plan<'a>(&self, batch: &'a [InboundMessage]) -> Plan<'a> {
        Ingest::plan(self, batch)
    }

    fn write(&self, plan: &mut Plan<'_>) -> impl Future<Output = Result<(), IngestError>> + Send {
        Ingest::write(self, plan)
    }

    fn finish(&self, plan: Plan<'_>) -> impl Future<Output = BatchReport> + Send {
        Ingest::finish(self, plan)
    }
}

/// The ingest use case: raw messages in, every one decided (stored, duplicate, conflict, rejected) and made durable.
pub struct Ingest<S, D, C> {
    store: S,
    dead_letters: D,
    announce: C,
    policy: IngestPolicy,
}

/// `S` stores the orders and keeps the dead-letter ledger (PostgreSQL does both in one
/// database); `D` publishes dead letters; `C` hears of every order stored.
impl<S, D, C> Ingest<S, D, C>
where
    S: OrderStore + DeadLetterLedger,
    D: DeadLetterSink,
    C: NewOrderListener,
{
    /// The use case over its ports.
    pub fn new(store: S, dead_letters: D, announce: C, policy: IngestPolicy) -> Self {
        Self {
            store,
            dead_letters,
            announce,
            policy,
        }
    }

    /// Decodes and validates each message, and sorts out uids repeated within the batch.
    pub fn plan<'a>(&self, batch: &'a [InboundMessage]) -> Plan<'a> {
        let mut orders: Vec<CheckedOrder> = Vec::with_capacity(batch.len());
        let mut rounds: Vec<usize> = Vec::with_capacity(batch.len());
        // Every version of a uid in this batch, in arrival order (almost always just one).
        let mut versions: HashMap<OrderUid, Vec<usize>> = HashMap::with_capacity(batch.len());
        let fates = batch
            .iter()
            .map(|message| {
                let order = match accept(message.payload(), self.policy.max_message_bytes, self.policy.consistency) {
                    Ok(order) => order,
                    Err(rejection) => {
                        return Fate::Dead { reason: DeadLetterReason::Rejected(rejection.reason), detail: rejection.detail() };
                    }
                };
                if !order.warnings().is_empty() {
                    counter!(m::CONSISTENCY_WARNINGS).increment(1);
                    tracing::debug!(uid = %order.uid(), warnings = ?order.warnings(), "accepted an order whose totals do not add up");
                }
                let earlier = versions.entry(order.uid().clone()).or_default();
                if let Some(&twin) = earlier.iter().find(|&&i| orders[i].content_hash() == order.content_hash()) {
                    return Fate::Twin(twin);
                }
                rounds.push(earlier.len());
                earlier.push(orders.len());
                orders.push(order);
                Fate::Store(orders.len() - 1)
            })
            .collect();
        Plan {
            batch,
            fates,
            orders,
            rounds,
            outcomes: None,
            letters_done: false,
            letters_published: false,
            dead_letters_sent: 0,
        }
    }

    /// Stores the plan's orders, then delivers its dead letters. Safe to call again after an
    /// error: finished steps are not repeated, and both steps are idempotent anyway.
    pub async fn write(&self, plan: &mut Plan<'_>) -> Result<(), IngestError> {
        if plan.outcomes.is_none() {
            let started = Instant::now();
            plan.outcomes = Some(self.store_rounds(&plan.orders, &plan.rounds).await?);
            histogram!(m::INGEST_BATCH_WRITE).record(started.elapsed().as_secs_f64());
        }
        if !plan.letters_done {
            let letters = dead_letters(plan);
            if !letters.is_empty() {
                let ids: Vec<_> = letters.iter().map(|l| l.id.clone()).collect();
                let already = self.store.dead_lettered(&ids).await?;
                let fresh: Vec<_> = letters
                    .into_iter()
                    .zip(already)
                    .filter(|(_, sent)| !sent)
                    .map(|(l, _)| l)
                    .collect();
                if !fresh.is_empty() {
                    if !plan.letters_published {
                        self.dead_letters.send(&fresh).await?;
                        plan.letters_published = true;
                    }
                    self.store.record_dead_letters(&fresh).await?;
                    for letter in &fresh {
                        counter!(m::DEAD_LETTERS, "reason" => letter.reason.as_str()).increment(1);
                    }
                }
                plan.dead_letters_sent = fresh.len();
            }
            plan.letters_done = true;
        }
        Ok(())
    }

    /// Counts the outcomes and announces the stored orders. Call after [`Ingest::write`].
    pub async fn finish(&self, plan: Plan<'_>) -> BatchReport {
        let mut report = BatchReport {
            dead_letters_sent: plan.dead_letters_sent,
            ..BatchReport::default()
        };
        let outcomes = plan.outcomes.as_deref().unwrap_or_default();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (message, fate) in plan.batch.iter().zip(&plan.fates) {
            match fate {
                Fate::Twin(i) => match outcomes.get(*i) {
                    Some(Ok(StoreOutcome::OtherContent)) => report.conflicts += 1,
                    Some(Err(_)) | None => report.rejected += 1,
                    Some(Ok(_)) => report.duplicates += 1,
                },
                Fate::Store(i) => match outcomes.get(*i) {
                    Some(Ok(StoreOutcome::Inserted)) => {
                        report.stored += 1;
                        self.announce.stored(&plan.orders[*i]).await;
                        if let Some(produced) = message.produced_at_ms() {
                            histogram!(m::INGEST_END_TO_END)
                                .record((now_ms - produced).max(0) as f64 / 1000.0);
                        }
                    }
                    Some(Ok(StoreOutcome::SameContent)) => report.duplicates += 1,
                    Some(Ok(StoreOutcome::OtherContent)) => report.conflicts += 1,
                    Some(Err(_)) | None => report.rejected += 1,
                },
                // Only the gate makes a message dead before storing: always a rejection.
                Fate::Dead { .. } => report.rejected += 1,
            }
        }
        for (outcome, n) in [
            (Outcome::Stored, report.stored),
            (Outcome::Duplicate, report.duplicates),
            (Outcome::Conflict, report.conflicts),
            (Outcome::Rejected, report.rejected),
        ] {
            if n > 0 {
                counter!(m::ORDERS_INGESTED, "outcome" => outcome.as_str()).increment(n as u64);
            }
        }
        histogram!(m::INGEST_BATCH_SIZE).record(plan.batch.len() as f64);
        report
    }

    /// Stores the orders round by round (the first version of each uid, then the second,
    /// ...), so that what the database holds decides whether a later version is a
    /// redelivery, a conflict, or the first that could be stored.
    async fn store_rounds(
        &self,
        orders: &[CheckedOrder],
        rounds: &[usize],
    ) -> Result<Vec<Stored>, StoreError> {
        let last = rounds.iter().copied().max().unwrap_or(0);
        if last == 0 {
            return self.store_all(orders).await;
        }
        let mut outcomes: Vec<Option<Stored>> = vec![None; orders.len()];
        for round in 0..=last {
            let members: Vec<usize> = (0..orders.len()).filter(|&i| rounds[i] == round).collect();
            let these: Vec<CheckedOrder> = members.iter().map(|&i| orders[i].clone()).collect();
            for (i, outcome) in members.into_iter().zip(self.store_all(&these).await?) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Refusal("not stored".to_owned()))))
            .collect())
    }

    /// Stores orders of distinct uids in one call; if the database refuses the data, stores
    /// them one by one so that only the refused ones are set aside.
    async fn store_all(&self, orders: &[CheckedOrder]) -> Result<Vec<Stored>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        match self.store.store_batch(orders).await {
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
            Err(StoreError::Refused(why)) if orders.len() == 1 => Ok(vec![Err(Refusal(why))]),
            Err(StoreError::Refused(_)) => {
                let mut out = Vec::with_capacity(orders.len());
                for order in orders {
                    out.push(
                        match self.store.store_batch(std::slice::from_ref(order)).await {
                            Ok(mut one) => Ok(one.remove(0)),
                            Err(StoreError::Refused(why)) => Err(Refusal(why)),
                            Err(e) => return Err(e),
                        },
                    );
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }
}

/// The messages of the plan that go to the dead-letter topic, with reason and detail.
fn dead_letters<'a>(plan: &Plan<'a>) -> Vec<DeadLetter<'a>> {
    let outcomes = plan.outcomes.as_deref().unwrap_or_default();
    let mut letters = Vec::new();
    for (message, fate) in plan.batch.iter().zip(&plan.fates) {
        let (reason, detail) = match fate {
            Fate::Dead { reason, detail } => (*reason, detail.clone()),
            Fate::Store(i) | Fate::Twin(i) => match outcomes.get(*i) {
                Some(Ok(StoreOutcome::OtherContent)) => (
                    DeadLetterReason::Conflict,
                    format!(
                        "order {} is already stored with other content",
                        plan.orders[*i].uid()
                    ),
                ),
                Some(Err(why)) => (
                    DeadLetterReason::Rejected(RejectReason::Invalid),
                    format!("the database refused the order: {why}"),
                ),
                _ => continue,
            },
        };
        letters.push(DeadLetter::new(message, reason, &detail));
    }
    letters
}
