//! The consumer that drives ingest: poll a batch, hand it to the use case, retry until it is
//! durable, and only then store its offsets.
//!
//! Offsets: `enable.auto.offset.store=false`, so librdkafka commits (every second, on a
//! rebalance, and once more synchronously at shutdown) only what [`store_offsets`]
//! stored, which is only what ingest finished. A crash anywhere replays from the last
//! commit, and ingest makes the replay harmless.
//!
//! Order per key: batches are written in parallel, but a batch that holds a uid waits until
//! every earlier batch in flight that holds the same uid is written, so the first version
//! of a uid in partition order is always the one stored. Which batch may write, whose offsets
//! move and what shutdown gives up is decided by a [`Window`] (no client, no runtime in it:
//! its rules and their tests are in [`super::window`]); this module does what it says.
//!
//! No message can stop the consumer: every byte of key, payload and headers is copied
//! without a panic (rdkafka panics on a header name that is not UTF-8; that header is kept
//! under a replacement name), and a batch task that fails anyway ends [`run`] with an error
//! that the caller turns into "not ready" and a restart.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics::{counter, gauge};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::domain::health::Readiness;
use crate::domain::ingest::IngestBatches;
use crate::domain::message::InboundMessage;
use crate::domain::metrics as m;
use crate::domain::order::OrderUid;

use super::window::{BatchId, Retry, Turn, Window};

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub kafka: super::Connection,
    pub topic: String,
    pub group_id: String,
    pub batch_max: usize,
    pub batch_linger: Duration,
    /// Batches written at once (each on its own database connection).
    pub parallel_batches: usize,
}

/// Turns librdkafka statistics into lag gauges and commits before partitions are taken away.
pub struct IngestContext;

/// Partitions whose broker gave an end offset before what was already consumed (said once
/// each): their lag cannot be known, and is not reported as if it were.
static WRONG_ENDS: std::sync::Mutex<Vec<(String, i32)>> = std::sync::Mutex::new(Vec::new());

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // A broker that answers a wrong end offset (tansu's memory storage; see the
                // README's "Broker") would show a lag of 0 where there may be any: said loudly,
                // and no lag reported for that partition.
                if *partition >= 0 && stats.hi_offset >= 0 && stats.app_offset > stats.hi_offset {
                    let key = (topic.topic.clone(), *partition);
                    let mut said = WRONG_ENDS.lock().unwrap_or_else(|p| p.into_inner());
                    if !said.contains(&key) {
                        tracing::warn!(topic = %topic.topic, partition, end = stats.hi_offset,
                            consumed = stats.app_offset,
                            "the broker reports this partition's end before what was already consumed: its consumer lag is unknown");
                        said.push(key);
                    }
                    continue;
                }
                // -1 is librdkafka's internal "unassigned" partition; lag -1 means unknown.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    gauge!(super::metrics::CONSUMER_LAG, "topic" => topic.topic.clone(), "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            commit(consumer, "rebalance");
            tracing::info!(partitions = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(partitions = partitions.count(), "partitions assigned");
        }
    }
}

fn commit<C: Consumer<IngestContext>>(consumer: &C, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::debug!(when, "offsets committed"),
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(when, error = %e, "offset commit failed"),
    }
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// How long a fetch may wait at the broker for messages. Apache Kafka answers a waiting fetch
/// as soon as a message arrives, so there this only bounds idle round trips; a broker that
/// holds the fetch for the whole wait (tansu does) adds up to this much to every message's
/// way. librdkafka's 500 ms made the median time from produce to visible 179 ms here; 25 ms
/// makes it about 40 ms (`just bench-live`).
pub const FETCH_WAIT_MAX_MS: &str = "25";

pub fn create(settings: &ConsumerSettings) -> anyhow::Result<IngestConsumer> {
    let consumer: IngestConsumer = config(settings)
        .create_with_context(IngestContext)
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&settings.topic])
        .with_context(|| format!("cannot subscribe to topic {}", settings.topic))?;
    Ok(consumer)
}

/// The consumer's properties: the connection's, then our defaults where the user set none,
/// then what the delivery guarantee rests on, whatever the user set.
fn config(settings: &ConsumerSettings) -> ClientConfig {
    let mut config = settings.kafka.client_config();
    // Defaults that KAFKA_PROPERTY_* may change.
    let defaults = &[
        // tansu holds a JoinGroup for half the session timeout: the 45 s default would make
        // every join take ~23 s.
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1000"),
        ("statistics.interval.ms", "5000"),
        ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS),
        // librdkafka's prefetch sits in memory beside the cache: 64 MiB by default, and the
        // memory stays with the process after a backlog. 16 MiB keeps a backlog's drain as
        // fast (`just bench-ingest`) once a full queue postpones the next fetch by 20 ms
        // instead of a whole second (fetch.queue.backoff.ms), which is what halved it when
        // only the queue was lowered; `just bench-memory`: 223–226 MiB instead of 280 with
        // a full 128 MiB cache filled by ingest.
        ("queued.max.messages.kbytes", "16384"),
        ("fetch.queue.backoff.ms", "20"),
    ];
    settings.kafka.defaults(&mut config, defaults);
    // What nothing lost, nothing doubled rests on: never the user's to change.
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    config
}

/// Most bytes of keys and payloads in one batch: a thousand messages near the size limit
/// would otherwise make one statement larger than PostgreSQL accepts.
const BATCH_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Name given to a header whose name is not UTF-8 (rdkafka cannot hand out its bytes).
pub const UNREADABLE_HEADER_NAME: &str = "\u{FFFD}";

/// Copies what ingest needs out of the client's buffer.
fn owned(message: &BorrowedMessage<'_>) -> InboundMessage {
    InboundMessage {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message.headers().map(copy_headers).unwrap_or_default(),
    }
}

/// Every header, in order. rdkafka's `try_get` unwraps the name's UTF-8 conversion, so a
/// name that is not UTF-8 (legal on the wire) panics inside it: that one header is kept as
/// [`UNREADABLE_HEADER_NAME`] without a value, and counted.
pub(super) fn copy_headers(headers: &BorrowedHeaders) -> Vec<(String, Option<Vec<u8>>)> {
    (0..headers.count())
        .filter_map(|i| {
            let copy = || {
                headers
                    .try_get(i)
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            };
            match std::panic::catch_unwind(AssertUnwindSafe(copy)) {
                Ok(header) => header,
                Err(_) => {
                    counter!(super::metrics::HEADERS_UNREADABLE).increment(1);
                    tracing::warn!(
                        index = i,
                        "a message header name is not UTF-8; kept without its value under U+FFFD"
                    );
                    Some((UNREADABLE_HEADER_NAME.to_owned(), None))
                }
            }
        })
        .collect()
}

/// Why [`run`] ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
#[error("the consumer stopped: {0}")]
pub struct ConsumerDied(String);

/// Runs until `shutdown` turns true: the batches in hand are finished (or, while the
/// database is down, abandoned without moving their offsets), what is durable is committed,
/// and the function returns.
///
/// Up to `settings.parallel_batches` batches are written at once, each on its own database
/// connection, while the next one is being polled: on a small machine PostgreSQL, the
/// consumer and the decoding then overlap instead of taking turns. Offsets are still stored
/// strictly in poll order: a batch's offsets move only once it and every batch before it
/// are durable.
pub async fn run<I: IngestBatches>(
    consumer: IngestConsumer,
    settings: ConsumerSettings,
    ingest: Arc<I>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConsumerDied> {
    let consumer = Arc::new(consumer);
    let window = Shared::new(settings.parallel_batches);
    let mut tasks = JoinSet::new();
    let mut died = None;
    readiness.set_consumer(true);
    enum Event {
        Stop,
        /// A batch task ended.
        Ended(Result<(), tokio::task::JoinError>),
        Message(Result<InboundMessage, rdkafka::error::KafkaError>),
    }
    loop {
        let has_room = window.read(Window::has_room);
        let event = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => Event::Stop,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => Event::Ended(ended),
            m = consumer.recv(), if has_room => Event::Message(m.map(|m| owned(&m))),
        };
        match event {
            Event::Stop => break,
            Event::Ended(Ok(())) => retire(&consumer, &window),
            Event::Ended(Err(e)) => {
                // No later batch may move offsets past a failed one: all are consumed again.
                window.update(Window::give_up_all);
                tasks.abort_all();
                died = Some(ConsumerDied(format!("a batch task failed: {e}")));
                break;
            }
            Event::Message(Err(e)) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Event::Message(Ok(first)) => {
                let batch = gather(&consumer, &settings, first).await;
                let id = window.update(|w| w.open(next_offsets(&batch)));
                tasks.spawn(write_batch(
                    batch,
                    ingest.clone(),
                    consumer.clone(),
                    window.clone(),
                    id,
                ));
            }
        }
    }
    // Finish what is in hand: the window says which batches give up.
    window.update(Window::stop);
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended
            && !e.is_cancelled()
        {
            window.update(Window::give_up_all);
            tasks.abort_all();
            died.get_or_insert(ConsumerDied(format!("a batch task failed: {e}")));
        }
        retire(&consumer, &window);
    }
    readiness.set_consumer(false);
    commit(consumer.as_ref(), "shutdown");
    died.map_or(Ok(()), Err)
}

/// Per partition, the offset after a batch's last message: the next one to read.
type Offsets = Vec<(String, i32, i64)>;

fn next_offsets(batch: &[InboundMessage]) -> Offsets {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let slot = next.entry((m.topic.as_str(), m.partition)).or_insert(0);
        *slot = (*slot).max(m.offset + 1);
    }
    let mut offsets: Offsets = next
        .into_iter()
        .map(|((topic, partition), offset)| (topic.to_owned(), partition, offset))
        .collect();
    offsets.sort_unstable();
    offsets
}

/// The window of batches in flight, shared by the loop and the batch tasks: every change
/// wakes whoever waits for one.
#[derive(Clone)]
struct Shared(Arc<watch::Sender<Window<OrderUid, Offsets>>>);

impl Shared {
    fn new(capacity: usize) -> Self {
        Self(Arc::new(watch::Sender::new(Window::new(capacity))))
    }

    /// Changes the window (or only reads it) and wakes the waiting tasks.
    fn update<T>(&self, change: impl FnOnce(&mut Window<OrderUid, Offsets>) -> T) -> T {
        let mut out = None;
        self.0.send_modify(|w| out = Some(change(w)));
        out.expect("send_modify runs the change")
    }

    /// Reads the window without waking anyone.
    fn read<T>(&self, look: impl FnOnce(&Window<OrderUid, Offsets>) -> T) -> T {
        look(&self.0.borrow())
    }

    /// Waits until `until` holds of the window, and gives what `read` makes of it then.
    async fn wait<T>(
        &self,
        until: impl FnMut(&Window<OrderUid, Offsets>) -> bool,
        read: impl FnOnce(&Window<OrderUid, Offsets>) -> T,
    ) -> T {
        let mut view = self.0.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let w = view
            .wait_for(until)
            .await
            .expect("the window outlives its tasks");
        read(&w)
    }
}

/// Stores the offsets of every batch the window retires, oldest first.
fn retire(consumer: &IngestConsumer, window: &Shared) {
    for offsets in window.update(Window::retire) {
        store_offsets(consumer, &offsets);
    }
}

/// The bytes of a message that count towards [`BATCH_MAX_BYTES`]: its key and payload.
fn weight(m: &InboundMessage) -> usize {
    m.payload().len() + m.key.as_ref().map_or(0, Vec::len)
}

/// Whether a batch of `len` messages weighing `bytes` takes no more: `batch_max` messages, or
/// [`BATCH_MAX_BYTES`] reached (the message that crossed it is the last).
fn is_full(len: usize, bytes: usize, batch_max: usize) -> bool {
    len >= batch_max || bytes >= BATCH_MAX_BYTES
}

/// After a first message, gathers more until `batch_max` or `batch_linger`.
async fn gather(
    consumer: &IngestConsumer,
    settings: &ConsumerSettings,
    first: InboundMessage,
) -> Vec<InboundMessage> {
    let mut bytes = weight(&first);
    let mut batch = Vec::with_capacity(settings.batch_max);
    batch.push(first);
    let linger = tokio::time::Instant::now() + settings.batch_linger;
    while !is_full(batch.len(), bytes, settings.batch_max) {
        match tokio::time::timeout_at(linger, consumer.recv()).await {
            Ok(Ok(message)) => {
                let message = owned(&message);
                bytes += weight(&message);
                batch.push(message);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
            Err(_) => break,
        }
    }
    batch
}

/// Makes one batch durable, retrying with capped exponential backoff and pausing the
/// partitions while it cannot, in the turn the window gives it; marks it done there.
async fn write_batch<I: IngestBatches>(
    batch: Vec<InboundMessage>,
    ingest: Arc<I>,
    consumer: Arc<IngestConsumer>,
    window: Shared,
    id: BatchId,
) {
    if !crate::adapters::trace::tracing_enabled() {
        make_durable(&batch, ingest, consumer, window, id).await;
        return;
    }
    // One span per batch, linked to the trace of every message that carries a `traceparent`
    // (OpenTelemetry's way for a consumer of batches: one message, one link).
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "ingest batch",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.batch.message_count = batch.len(),
        stored = tracing::field::Empty,
        duplicates = tracing::field::Empty,
        conflicts = tracing::field::Empty,
        rejected = tracing::field::Empty,
        write_ms = tracing::field::Empty,
    );
    for message in &batch {
        if let Some(context) = crate::adapters::trace::remote_context(|name| {
            message
                .header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
        }) {
            span.add_link(context.span().span_context().clone());
        }
    }
    let started = std::time::Instant::now();
    let done = make_durable(&batch, ingest, consumer, window, id)
        .instrument(span.clone())
        .await;
    if let Some(report) = &done {
        span.record("stored", report.stored);
        span.record("duplicates", report.duplicates);
        span.record("conflicts", report.conflicts);
        span.record("rejected", report.rejected);
        span.record("write_ms", started.elapsed().as_millis() as u64);
    }
}

/// The work of [`write_batch`], inside its span when tracing is on: the report when the
/// batch is done, `None` when it was given up (it is consumed again after a restart).
async fn make_durable<I: IngestBatches>(
    batch: &[InboundMessage],
    ingest: Arc<I>,
    consumer: Arc<IngestConsumer>,
    window: Shared,
    id: BatchId,
) -> Option<crate::domain::ingest::BatchReport> {
    let mut plan = ingest.plan(batch);
    let ours: HashSet<OrderUid> = plan.uids().cloned().collect();
    window.update(|w| w.planned(id, ours));
    // Not cut short by shutdown (the window's rules): an earlier batch given up gives this
    // one up too.
    let turn = window
        .wait(|w| w.turn(id) != Turn::Wait, |w| w.turn(id))
        .await;
    if turn == Turn::GiveUp {
        window.update(|w| w.give_up(id));
        return None;
    }
    let given_up = || {
        tracing::warn!(
            messages = batch.len(),
            "shutting down with a batch that is not durable; it will be consumed again"
        );
        None
    };
    let mut backoff = Duration::from_millis(100);
    let mut paused: Option<TopicPartitionList> = None;
    while let Err(e) = ingest.write(&mut plan).await {
        counter!(m::INGEST_RETRIES).increment(1);
        tracing::warn!(error = %e, retry_in = ?backoff, "batch not durable yet; retrying");
        if window.update(|w| w.failed(id)) == Retry::GiveUp {
            return given_up();
        }
        if paused.is_none() {
            // Stop fetching while we cannot make progress; nothing fetched is lost, since no
            // offset moves until the batch is durable.
            paused = consumer.assignment().ok();
            if let Some(tpl) = &paused
                && let Err(e) = consumer.pause(tpl)
            {
                tracing::warn!(error = %e, "cannot pause partitions");
            }
        }
        tokio::select! {
            () = window.wait(|w| w.is_given_up(id), |_| ()) => {}
            () = tokio::time::sleep(backoff) => {}
        }
        if window.update(|w| w.retry(id)) == Retry::GiveUp {
            return given_up();
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    window.update(|w| w.written(id));
    if let Some(tpl) = paused
        && let Err(e) = consumer.resume(&tpl)
    {
        tracing::warn!(error = %e, "cannot resume partitions");
    }
    let report = ingest.finish(plan).await;
    tracing::debug!(?report, messages = batch.len(), "batch done");
    window.update(|w| w.done(id));
    Some(report)
}

/// Stores a batch's offsets: from now on librdkafka commits them.
fn store_offsets(consumer: &IngestConsumer, offsets: &Offsets) {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (topic, partition, offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(error = %e, "cannot build the offset list");
        }
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // The partition was revoked meanwhile; its new owner replays from the last commit.
        tracing::info!(error = %e, "offsets not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(properties: &[(&str, &str)]) -> ConsumerSettings {
        let mut kafka = super::super::Connection::new("127.0.0.1:9092");
        kafka.properties = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ConsumerSettings {
            kafka,
            topic: "orders".into(),
            group_id: "order-svc".into(),
            batch_max: 1000,
            batch_linger: Duration::from_millis(5),
            parallel_batches: 2,
        }
    }

    #[test]
    fn the_users_properties_win_over_our_defaults_but_not_over_the_delivery_guarantee() {
        let ours = config(&settings(&[]));
        assert_eq!(ours.get("fetch.wait.max.ms"), Some(FETCH_WAIT_MAX_MS));
        assert_eq!(ours.get("session.timeout.ms"), Some("6000"));

        let theirs = config(&settings(&[
            ("fetch.wait.max.ms", "500"),
            ("session.timeout.ms", "45000"),
            ("enable.auto.offset.store", "true"),
            ("auto.offset.reset", "latest"),
            ("group.id", "someone-else"),
        ]));
        assert_eq!(theirs.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(theirs.get("session.timeout.ms"), Some("45000"));
        // Offsets are stored only once a batch is durable, and a new group starts from the
        // beginning: a user's property cannot turn either off.
        assert_eq!(theirs.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(theirs.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(theirs.get("group.id"), Some("order-svc"));
        // The untouched defaults stay.
        assert_eq!(theirs.get("queued.max.messages.kbytes"), Some("16384"));
    }

    fn message(partition: i32, offset: i64, key: usize, payload: usize) -> InboundMessage {
        InboundMessage {
            topic: "orders".into(),
            partition,
            offset,
            timestamp_ms: None,
            key: Some(vec![b'k'; key]),
            payload: Some(vec![b'{'; payload]),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_batch_moves_each_partition_to_the_offset_after_its_last_message() {
        let batch = [
            message(1, 7, 1, 1),
            message(0, 3, 1, 1),
            message(1, 9, 1, 1),
            message(1, 8, 1, 1),
            message(0, 4, 1, 1),
        ];
        assert_eq!(
            next_offsets(&batch),
            vec![("orders".to_owned(), 0, 5), ("orders".to_owned(), 1, 10)]
        );
        assert!(next_offsets(&[]).is_empty());
    }

    #[test]
    fn a_batch_ends_at_its_message_count_or_once_its_keys_and_payloads_reach_64_mib() {
        const MIB: usize = 1024 * 1024;
        assert_eq!(BATCH_MAX_BYTES, 64 * MIB);
        // Ten messages of 10 MiB (key and payload both count): the seventh crosses 64 MiB and
        // is the last one taken, though a thousand would fit the count.
        let big = message(0, 0, MIB, 9 * MIB);
        let (mut len, mut bytes) = (0, 0);
        while !is_full(len, bytes, 1000) {
            len += 1;
            bytes += weight(&big);
        }
        assert_eq!((len, bytes), (7, 70 * MIB));
        assert!(!is_full(1, BATCH_MAX_BYTES - 1, 1000));
        assert!(is_full(1, BATCH_MAX_BYTES, 1000));
        assert!(is_full(1000, 0, 1000));
        assert!(!is_full(999, 0, 1000));
    }

    #[test]
    fn every_property_settings_refuse_is_one_our_clients_set() {
        let settings = settings(&[]);
        let (consumer, producer) = (config(&settings), settings.kafka.producer_config());
        for (name, _) in super::super::GUARANTEED {
            assert!(
                consumer.get(name).is_some() || producer.get(name).is_some(),
                "{name} is refused but never set"
            );
        }
    }

    mod dying {
        //! The consumer against the real test broker (TEST_KAFKA_BROKERS, started by `just
        //! test`), with a batch task that fails as a bug in it would.
        use super::*;
        use crate::domain::ingest::{Ingest, IngestPolicy};
        use crate::domain::message::{DeadLetter, MessageId};
        use crate::domain::ports::*;
        use crate::domain::validate::{CheckedOrder, Consistency};
        use rdkafka::consumer::BaseConsumer;

        /// Stores everything, sends every letter.
        #[derive(Clone)]
        struct Takes;

        impl OrderStore for Takes {
            async fn store_batch(
                &self,
                orders: &[CheckedOrder],
            ) -> Result<Vec<StoreOutcome>, StoreError> {
                Ok(vec![StoreOutcome::Inserted; orders.len()])
            }
        }

        impl DeadLetterLedger for Takes {
            async fn dead_lettered(&self, ids: &[MessageId]) -> Result<Vec<bool>, StoreError> {
                Ok(vec![false; ids.len()])
            }
            async fn record_dead_letters(&self, _: &[DeadLetter<'_>]) -> Result<(), StoreError> {
                Ok(())
            }
        }

        impl DeadLetterSink for Takes {
            async fn send(&self, _: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
                Ok(())
            }
        }

        /// Told of a stored order, it panics: the batch task fails after the write.
        #[derive(Clone)]
        struct Panics;

        impl NewOrderListener for Panics {
            async fn stored(&self, _: &CheckedOrder) {
                panic!("a bug in a batch task (this test's)");
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_batch_task_that_fails_ends_the_consumer_with_an_error_and_commits_nothing() {
            let brokers = std::env::var("TEST_KAFKA_BROKERS")
                .ok()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "127.0.0.1:19092".to_owned());
            let kafka = super::super::super::Connection::new(&brokers);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let topic = format!("unit-dies-{}-{nanos}", std::process::id());
            super::super::super::ensure_topics(&kafka, &[&topic], 1)
                .await
                .expect("the test broker of TEST_KAFKA_BROKERS");
            let order = crate::generate::Generator::new(Default::default()).valid_order();
            let publisher = super::super::super::producer::OrderPublisher::new(&kafka, &topic)
                .expect("a producer");
            publisher
                .enqueue(Some(order.order_uid.as_bytes()), &order.to_json())
                .await
                .expect("queued")
                .await
                .expect("delivered")
                .expect("acknowledged");

            let settings = ConsumerSettings {
                kafka: kafka.clone(),
                topic: topic.clone(),
                group_id: topic.clone(),
                batch_max: 10,
                batch_linger: Duration::from_millis(5),
                parallel_batches: 2,
            };
            let policy = IngestPolicy {
                max_message_bytes: 1 << 20,
                consistency: Consistency::Reject,
            };
            let ingest = Arc::new(Ingest::new(Takes, Takes, Panics, policy));
            let readiness = Arc::new(Readiness::new(false, true));
            let (_stop, stop_rx) = watch::channel(false);
            let consumer = create(&settings).expect("a consumer");
            let ended = tokio::time::timeout(
                Duration::from_secs(60),
                run(consumer, settings, ingest, readiness.clone(), stop_rx),
            )
            .await
            .expect("the consumer ends by itself, with no shutdown asked");
            let died = ended.expect_err("a failed batch task ends the consumer with an error");
            assert!(died.to_string().contains("a batch task failed"), "{died}");
            assert!(
                readiness.problems().iter().any(|p| p.contains("consumer")),
                "not ready once the consumer stopped: {:?}",
                readiness.problems()
            );

            // The order was stored, but its batch never finished: its offset did not move.
            let group: BaseConsumer = settings_for_reading(&kafka, &topic).create().unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, 0);
            let committed = group
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("the group's committed offsets");
            let offset = committed.find_partition(&topic, 0).unwrap().offset();
            assert!(
                !matches!(offset, Offset::Offset(n) if n > 0),
                "committed {offset:?} past a batch that failed"
            );
        }

        fn settings_for_reading(
            kafka: &super::super::super::Connection,
            group: &str,
        ) -> ClientConfig {
            let mut config = kafka.client_config();
            config.set("group.id", group);
            config
        }
    }
}
