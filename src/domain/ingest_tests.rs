//! The ingest use case driven with hand-written fakes of its ports.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::ingest::{BatchReport, Ingest, IngestPolicy};
use super::message::{DeadLetter, InboundMessage, MessageId};
use super::order::{ContentHash, OrderUid};
use super::ports::*;
use super::validate::{CheckedOrder, Consistency};
use crate::generate::{Corruption, GenerateOptions, Generator};

#[derive(Default)]
struct FakeStore {
    orders: Mutex<HashMap<OrderUid, ContentHash>>,
    letters: Mutex<HashSet<MessageId>>,
    /// Fail this many store calls with `Unavailable` before working.
    failures: AtomicUsize,
    /// Calls of `store_batch`.
    calls: AtomicUsize,
    /// Fail this many ledger records with `Unavailable` before working.
    record_failures: AtomicUsize,
}

impl OrderStore for Arc<FakeStore> {
    async fn store_batch(&self, orders: &[CheckedOrder]) -> Result<Vec<StoreOutcome>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable(anyhow::anyhow!("down")));
        }
        if orders.iter().any(|o| o.order().customer_id == "refuse") {
            return Err(StoreError::Refused("check violation".into()));
        }
        // As PostgreSQL does (one statement cannot insert a key twice): the use case must
        // never send two versions of a uid in one call.
        let mut uids = HashSet::new();
        if let Some(twice) = orders.iter().find(|o| !uids.insert(o.uid())) {
            return Err(StoreError::Refused(format!(
                "{} twice in one call",
                twice.uid()
            )));
        }
        let mut stored = self.orders.lock().unwrap();
        Ok(orders
            .iter()
            .map(|o| match stored.get(o.uid()) {
                None => {
                    stored.insert(o.uid().clone(), *o.content_hash());
                    StoreOutcome::Inserted
                }
                Some(h) if h == o.content_hash() => StoreOutcome::SameContent,
                Some(_) => StoreOutcome::OtherContent,
            })
            .collect())
    }
}

impl DeadLetterLedger for Arc<FakeStore> {
    async fn dead_lettered(&self, ids: &[MessageId]) -> Result<Vec<bool>, StoreError> {
        let letters = self.letters.lock().unwrap();
        Ok(ids.iter().map(|id| letters.contains(id)).collect())
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter<'_>]) -> Result<(), StoreError> {
        if self.record_failures.load(Ordering::SeqCst) > 0 {
            self.record_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable(anyhow::anyhow!("down")));
        }
        self.letters
            .lock()
            .unwrap()
            .extend(letters.iter().map(|l| l.id.clone()));
        Ok(())
    }
}

#[derive(Default)]
struct FakeSink {
    sent: Mutex<Vec<(i64, &'static str)>>,
    /// The detail of each letter sent, in order.
    details: Mutex<Vec<String>>,
    failures: AtomicUsize,
}

impl DeadLetterSink for Arc<FakeSink> {
    async fn send(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(DeadLetterError(anyhow::anyhow!("broker down")));
        }
        self.sent
            .lock()
            .unwrap()
            .extend(letters.iter().map(|l| (l.message.offset, l.reason.code())));
        self.details
            .lock()
            .unwrap()
            .extend(letters.iter().map(|l| l.detail.clone()));
        Ok(())
    }
}

type Service = Ingest<Arc<FakeStore>, Arc<FakeSink>, ()>;

fn service(store: &Arc<FakeStore>, sink: &Arc<FakeSink>) -> Service {
    let policy = IngestPolicy {
        max_message_bytes: 1 << 20,
        consistency: Consistency::Reject,
    };
    Ingest::new(store.clone(), sink.clone(), (), policy)
}

fn messages(payloads: Vec<Vec<u8>>) -> Vec<InboundMessage> {
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| InboundMessage {
            topic: "orders".into(),
            offset: i as i64,
            payload: Some(p),
            ..InboundMessage::default()
        })
        .collect()
}

async fn run(ingest: &Service, batch: &[InboundMessage]) -> BatchReport {
    let mut plan = ingest.plan(batch);
    while ingest.write(&mut plan).await.is_err() {}
    ingest.finish(plan).await
}

/// Runs `f` with a metrics recorder of its own (this thread only, so tests running beside it
/// cannot touch it), on a runtime of this thread; gives its result and the metrics rendered.
fn recorded<T>(f: impl FnOnce() -> T) -> (T, String) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let out = metrics::with_local_recorder(&recorder, f);
    (out, handle.render())
}

/// [`run`] on a runtime of this thread, so that [`recorded`] sees what it records.
fn run_here(ingest: &Service, batch: &[InboundMessage]) -> BatchReport {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(run(ingest, batch))
}

fn valid(generator: &mut Generator) -> Vec<u8> {
    generator.valid_order().to_json()
}

#[tokio::test]
async fn every_message_gets_exactly_one_outcome() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let a = valid(&mut g);
    let b = valid(&mut g);
    let mut b_changed: serde_json::Value = serde_json::from_slice(&b).unwrap();
    b_changed["entry"] = "OTHER".into();
    let b_changed = serde_json::to_vec(&b_changed).unwrap();
    // The last is an exact copy of the conflicting version: a conflict too, not a redelivery.
    let batch = messages(vec![
        a.clone(),
        b.clone(),
        a,
        b_changed.clone(),
        b"{".to_vec(),
        b_changed,
    ]);

    let report = run(&ingest, &batch).await;
    assert_eq!(
        report,
        BatchReport {
            stored: 2,
            duplicates: 1,
            conflicts: 2,
            rejected: 1,
            dead_letters_sent: 3
        }
    );
    assert_eq!(
        *sink.sent.lock().unwrap(),
        vec![(3, "conflict"), (4, "malformed"), (5, "conflict")]
    );
    // Two rounds: the first versions, then b's second; never the two in one call (refused,
    // then each again alone).
    assert_eq!(store.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_replayed_batch_stores_nothing_and_sends_no_dead_letter_twice() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions {
        invalid_rate: 0.3,
        seed: 3,
        ..GenerateOptions::default()
    });
    let batch = messages((0..200).map(|_| g.next_message().bytes).collect());
    let first = run(&ingest, &batch).await;
    let again = run(&ingest, &batch).await;
    assert!(first.stored > 100 && first.rejected > 30, "{first:?}");
    assert_eq!(again.stored, 0);
    assert_eq!(again.duplicates, first.stored);
    assert_eq!(again.dead_letters_sent, 0);
    assert_eq!(sink.sent.lock().unwrap().len(), first.dead_letters_sent);
}

#[tokio::test]
async fn failures_are_retried_without_redoing_finished_steps() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    store.failures.store(2, Ordering::SeqCst);
    sink.failures.store(2, Ordering::SeqCst);
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let batch = messages(vec![valid(&mut g), b"not json".to_vec()]);
    let report = run(&ingest, &batch).await;
    assert_eq!(
        (report.stored, report.duplicates, report.rejected),
        (1, 0, 1)
    );
    assert_eq!(sink.sent.lock().unwrap().len(), 1);
}

/// The database goes away after the dead letters were published and before the ledger
/// recorded them: the retry records them and does not publish them again.
#[tokio::test]
async fn letters_published_before_the_ledger_failed_are_not_published_again() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    store.record_failures.store(3, Ordering::SeqCst);
    let ingest = service(&store, &sink);
    let batch = messages(vec![b"not json".to_vec(), b"{}".to_vec()]);
    let report = run(&ingest, &batch).await;
    assert_eq!(report.rejected, 2);
    assert_eq!(
        sink.sent.lock().unwrap().len(),
        2,
        "each letter published once"
    );
    assert_eq!(store.letters.lock().unwrap().len(), 2, "and recorded");
}

#[tokio::test]
async fn an_order_the_database_refuses_is_set_aside_alone() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let mut refused = g.valid_order();
    refused.customer_id = "refuse".into();
    let batch = messages(vec![valid(&mut g), refused.to_json(), valid(&mut g)]);
    let report = run(&ingest, &batch).await;
    assert_eq!((report.stored, report.rejected), (2, 1));
    assert_eq!(*sink.sent.lock().unwrap(), vec![(1, "invalid")]);
    // The letter says what the database said.
    assert_eq!(
        *sink.details.lock().unwrap(),
        vec!["the database refused the order: check violation".to_owned()]
    );
}

#[test]
fn a_plan_names_the_uids_it_writes_each_once() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let (a, b) = (g.valid_order(), g.valid_order());
    let mut b2 = b.clone();
    b2.customer_id = "another".into();
    let batch = messages(vec![
        a.to_json(),
        b.to_json(),
        b"not an order".to_vec(),
        b2.to_json(),
        a.to_json(),
    ]);
    let plan = ingest.plan(&batch);
    let mut uids: Vec<&str> = plan.uids().map(OrderUid::as_str).collect();
    uids.sort_unstable();
    uids.dedup();
    let mut expected = vec![a.order_uid.as_str(), b.order_uid.as_str()];
    expected.sort_unstable();
    assert_eq!(
        uids, expected,
        "every uid the plan writes, none it rejected"
    );
}

#[test]
fn an_order_accepted_with_inconsistent_totals_is_counted_and_a_consistent_one_is_not() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let policy = IngestPolicy {
        max_message_bytes: 1 << 20,
        consistency: Consistency::Warn,
    };
    let ingest = Ingest::new(store.clone(), sink.clone(), (), policy);
    let mut g = Generator::new(GenerateOptions::default());
    let mut odd = g.valid_order();
    odd.payment.goods_total += 1;
    let batch = messages(vec![
        g.valid_order().to_json(),
        odd.to_json(),
        valid(&mut g),
    ]);
    let (plan, rendered) = recorded(|| ingest.plan(&batch));
    assert_eq!(plan.uids().count(), 3, "accepted all three");
    let counted = rendered
        .lines()
        .find_map(|l| l.strip_prefix(super::metrics::CONSISTENCY_WARNINGS))
        .map(|rest| rest.trim().to_owned());
    assert_eq!(counted.as_deref(), Some("1"), "{rendered}");
}

#[tokio::test]
async fn each_corruption_is_dead_lettered_with_its_reason() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions {
        invalid_rate: 1.0,
        max_message_bytes: 1 << 20,
        ..GenerateOptions::default()
    });
    let generated: Vec<_> = (0..400).map(|_| g.next_message()).collect();
    let batch = messages(generated.iter().map(|m| m.bytes.clone()).collect());
    let report = run(&ingest, &batch).await;
    assert_eq!(report.rejected, 400);
    let sent = sink.sent.lock().unwrap();
    assert_eq!(
        sent.len(),
        400,
        "every rejected message is dead-lettered once"
    );
    for (offset, reason) in sent.iter() {
        let kind: Corruption = generated[*offset as usize].corruption.unwrap();
        assert_eq!(*reason, kind.expected().0.code(), "{kind:?}");
    }
}

#[tokio::test]
async fn a_refused_order_costs_only_itself_and_a_later_version_of_its_uid_is_stored() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let good = g.valid_order();
    let mut refused = good.clone();
    refused.customer_id = "refuse".into();
    let mut third = good.clone();
    third.entry = "OTHER".into();
    // The refused version first, then a valid one of the same uid (stored), an exact copy of
    // the refused one (refused too), and a third version (a conflict with the stored one).
    let batch = messages(vec![
        refused.to_json(),
        good.to_json(),
        refused.to_json(),
        third.to_json(),
        good.to_json(),
    ]);
    let report = run(&ingest, &batch).await;
    assert_eq!(
        (
            report.stored,
            report.rejected,
            report.conflicts,
            report.duplicates
        ),
        (1, 2, 1, 1)
    );
    let uid = OrderUid::parse(good.order_uid.clone()).unwrap();
    assert_eq!(
        store.orders.lock().unwrap().get(&uid),
        Some(&good.content_hash()),
        "the valid version is stored"
    );
    assert_eq!(
        *sink.sent.lock().unwrap(),
        vec![(0, "invalid"), (2, "invalid"), (3, "conflict")]
    );
}

#[test]
fn a_dead_letter_detail_is_capped_and_printable() {
    use super::message::{MAX_DETAIL_BYTES, printable_detail};
    let shown = printable_detail("line\nbreak\0nul\u{1b}[31m");
    assert_eq!(shown, "line\\u{a}break\\u{0}nul\\u{1b}[31m");
    let long = printable_detail(&"é".repeat(10_000));
    assert!(
        long.len() <= MAX_DETAIL_BYTES && long.ends_with(" [cut]"),
        "{}",
        long.len()
    );
}

#[test]
fn the_time_from_produce_to_stored_is_recorded_in_seconds_once_per_order_stored() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let order = valid(&mut g);
    let two_seconds_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 2_000;
    // The order, then an exact copy of it (a duplicate: nothing stored, nothing recorded).
    let mut batch = messages(vec![order.clone(), order]);
    for message in &mut batch {
        message.headers = vec![(
            super::message::PRODUCED_AT_HEADER.to_owned(),
            Some(two_seconds_ago.to_string().into_bytes()),
        )];
    }
    let (report, rendered) = recorded(|| run_here(&ingest, &batch));
    assert_eq!((report.stored, report.duplicates), (1, 1));
    let series = |suffix: &str| -> f64 {
        rendered
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{}{suffix} ", super::metrics::INGEST_END_TO_END))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {suffix} in {rendered}"))
    };
    assert_eq!(series("_count"), 1.0, "once, for the order stored");
    let seconds = series("_sum");
    assert!(
        (2.0..30.0).contains(&seconds),
        "{seconds} s recorded for an order sent 2 s ago"
    );
}

#[test]
fn each_outcome_is_counted_by_how_many_orders_had_it() {
    let (store, sink) = (
        Arc::new(FakeStore::default()),
        Arc::new(FakeSink::default()),
    );
    let ingest = service(&store, &sink);
    let mut g = Generator::new(GenerateOptions::default());
    let (a, b) = (g.valid_order(), g.valid_order());
    let mut other_b = b.clone();
    other_b.customer_id = "another".into();
    // Stored 2 (a, b), duplicate 1 (a again), conflict 1 (b with other content), rejected 2.
    let batch = messages(vec![
        a.to_json(),
        b.to_json(),
        a.to_json(),
        other_b.to_json(),
        b"{".to_vec(),
        b"[]".to_vec(),
    ]);
    let (report, rendered) = recorded(|| run_here(&ingest, &batch));
    let counts = (
        report.stored,
        report.duplicates,
        report.conflicts,
        report.rejected,
    );
    assert_eq!(counts, (2, 1, 1, 2));
    for (outcome, n) in [
        ("stored", 2),
        ("duplicate", 1),
        ("conflict", 1),
        ("rejected", 2),
    ] {
        let series = format!(
            "{}{{outcome=\"{outcome}\"}} {n}",
            super::metrics::ORDERS_INGESTED
        );
        assert!(
            rendered.lines().any(|l| l == series),
            "no {series} in\n{rendered}"
        );
    }
}
