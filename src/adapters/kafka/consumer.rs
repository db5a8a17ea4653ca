//! The consumer that drives ingest: poll a batch, hand it to the use case, retry until it is
//! durable, and only then store its offsets.
//!
//! Offsets: `enable.auto.offset.store=false`, so librdkafka commits (every second, on a
//! rebalance, and once more synchronously at shutdown) only what [`store_batch_offsets`]
//! stored, which is only what ingest finished. A crash anywhere replays from the last
//! commit, and ingest makes the replay harmless.
//!
//! Order per key: batches are written in parallel, but a batch that holds a uid waits until
//! every earlier batch in flight that holds the same uid is written, so the first version
//! of a uid in partition order is always the one stored.
//!
//! No message can stop the consumer: every byte of key, payload and headers is copied
//! without a panic (rdkafka panics on a header name that is not UTF-8; that header is kept
//! under a replacement name), and a batch task that fails anyway ends [`run`] with an error
//! that the caller turns into "not ready" and a restart.

use std::collections::{HashMap, HashSet, VecDeque};
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
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::domain::health::Readiness;
use crate::domain::ingest::IngestBatches;
use crate::domain::message::InboundMessage;
use crate::domain::metrics as m;
use crate::domain::order::OrderUid;

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

/// How far a batch in flight has come, as later batches see it.
#[derive(Debug, Clone)]
enum Progress {
    /// Still decoding: which uids it holds is not known yet.
    Planning,
    /// Decoded; it will write these uids.
    Planned(Arc<HashSet<OrderUid>>),
    /// Its orders are stored (or set aside) and its dead letters delivered.
    Written,
}

/// Whether a batch holding `ours` may write now, given an earlier batch's progress.
fn may_pass(earlier: &Progress, ours: &HashSet<OrderUid>) -> bool {
    match earlier {
        Progress::Planning => false,
        // Walks the smaller of the two sets.
        Progress::Planned(theirs) => theirs.is_disjoint(ours),
        Progress::Written => true,
    }
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
    let mut in_flight = InFlight::default();
    let mut died = None;
    readiness.set_consumer(true);
    enum Event {
        Stop,
        /// The oldest batch in flight ended.
        Retired(Ended),
        Message(Result<InboundMessage, rdkafka::error::KafkaError>),
    }
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => Event::Stop,
            done = in_flight.oldest(), if !in_flight.is_empty() => Event::Retired(done),
            m = consumer.recv(), if in_flight.len() < settings.parallel_batches => {
                Event::Message(m.map(|m| owned(&m)))
            }
        };
        match event {
            Event::Stop => break,
            Event::Retired(Ok(Some(batch))) => store_batch_offsets(&consumer, &batch),
            Event::Retired(failed) => {
                // Abandoned at shutdown, or its task failed: no later batch may move offsets
                // past it, so none of them counts; all are consumed again.
                in_flight.abandon();
                if let Err(e) = failed {
                    died = Some(ConsumerDied(format!("a batch task failed: {e}")));
                }
                break;
            }
            Event::Message(Err(e)) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Event::Message(Ok(first)) => {
                let batch = gather(&consumer, &settings, first).await;
                in_flight.push(|order| {
                    write_batch(
                        batch,
                        ingest.clone(),
                        consumer.clone(),
                        order,
                        shutdown.clone(),
                    )
                });
            }
        }
    }
    // Finish what is in hand, in order, until the first batch that could not be finished.
    while !in_flight.is_empty() {
        match in_flight.oldest().await {
            Ok(Some(batch)) => store_batch_offsets(&consumer, &batch),
            _ => in_flight.abandon(),
        }
    }
    readiness.set_consumer(false);
    commit(consumer.as_ref(), "shutdown");
    died.map_or(Ok(()), Err)
}

/// How a batch in flight ended: durable (`Some`), abandoned at shutdown (`None`), or its
/// task failed.
type Ended = Result<Option<Vec<InboundMessage>>, tokio::task::JoinError>;

/// A batch being written: it ends with the batch when durable, `None` when abandoned.
type BatchTask = JoinHandle<Option<Vec<InboundMessage>>>;

/// The batches being written, oldest first, each with the progress that later batches
/// watch to keep the order per key.
#[derive(Default)]
struct InFlight {
    tasks: VecDeque<(BatchTask, watch::Receiver<Progress>)>,
}

/// What a batch task gets to keep the order per key: the progress of every earlier batch
/// in flight, and where it tells its own.
type Order = (Vec<watch::Receiver<Progress>>, watch::Sender<Progress>);

impl InFlight {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts the task `write` makes for the next batch, behind every batch in flight.
    fn push<F>(&mut self, write: impl FnOnce(Order) -> F)
    where
        F: Future<Output = Option<Vec<InboundMessage>>> + Send + 'static,
    {
        let (tell, told) = watch::channel(Progress::Planning);
        let earlier = self.tasks.iter().map(|(_, p)| p.clone()).collect();
        let task = tokio::spawn(write((earlier, tell)));
        self.tasks.push_back((task, told));
    }

    /// Waits for the oldest batch to end and retires it. Cancel-safe: dropped before the
    /// end, it retires nothing.
    async fn oldest(&mut self) -> Ended {
        let (task, _) = self.tasks.front_mut().expect("a batch in flight");
        let ended = task.await;
        self.tasks.pop_front();
        ended
    }

    /// Stops every batch still in flight: none of them may move an offset.
    fn abandon(&mut self) {
        for (task, _) in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// After a first message, gathers more until `batch_max` or `batch_linger`.
async fn gather(
    consumer: &IngestConsumer,
    settings: &ConsumerSettings,
    first: InboundMessage,
) -> Vec<InboundMessage> {
    let size = |m: &InboundMessage| m.payload().len() + m.key.as_ref().map_or(0, Vec::len);
    let mut bytes = size(&first);
    let mut batch = Vec::with_capacity(settings.batch_max);
    batch.push(first);
    let linger = tokio::time::Instant::now() + settings.batch_linger;
    while batch.len() < settings.batch_max && bytes < BATCH_MAX_BYTES {
        match tokio::time::timeout_at(linger, consumer.recv()).await {
            Ok(Ok(message)) => {
                let message = owned(&message);
                bytes += size(&message);
                batch.push(message);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
            Err(_) => break,
        }
    }
    batch
}

/// Makes one batch durable, retrying with capped exponential backoff and pausing the
/// partitions while it cannot. Returns the batch when done, `None` when shutdown came first
/// (or an earlier batch it had to wait for was abandoned).
///
/// `order` holds the progress of every earlier batch still in flight, and where this one
/// tells its own.
async fn write_batch<I: IngestBatches>(
    batch: Vec<InboundMessage>,
    ingest: Arc<I>,
    consumer: Arc<IngestConsumer>,
    order: Order,
    shutdown: watch::Receiver<bool>,
) -> Option<Vec<InboundMessage>> {
    if !crate::adapters::trace::tracing_enabled() {
        return make_durable(batch, ingest, consumer, order, shutdown)
            .await
            .map(|(batch, _)| batch);
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
    let done = make_durable(batch, ingest, consumer, order, shutdown)
        .instrument(span.clone())
        .await;
    if let Some((_, report)) = &done {
        span.record("stored", report.stored);
        span.record("duplicates", report.duplicates);
        span.record("conflicts", report.conflicts);
        span.record("rejected", report.rejected);
        span.record("write_ms", started.elapsed().as_millis() as u64);
    }
    done.map(|(batch, _)| batch)
}

/// The work of [`write_batch`], inside its span when tracing is on; gives the report too.
async fn make_durable<I: IngestBatches>(
    batch: Vec<InboundMessage>,
    ingest: Arc<I>,
    consumer: Arc<IngestConsumer>,
    order: Order,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(Vec<InboundMessage>, crate::domain::ingest::BatchReport)> {
    let (earlier, tell) = order;
    let mut plan = ingest.plan(&batch);
    let ours: Arc<HashSet<OrderUid>> = Arc::new(plan.uids().cloned().collect());
    tell.send_replace(Progress::Planned(ours.clone()));
    // Not cut short by shutdown: a later batch with no uid in common may already be writing,
    // and its offsets move only once this one is durable. Abandoning this one then would
    // leave that one stored and uncommitted. Shutdown finishes the batches in hand; one that
    // cannot be written (the database down) gives up in the retry loop below, and the
    // batches waiting for it end with it.
    for mut before in earlier {
        // That batch ended without writing (abandoned): neither may this one.
        before.wait_for(|p| may_pass(p, &ours)).await.ok()?;
    }
    let mut backoff = Duration::from_millis(100);
    let mut paused: Option<TopicPartitionList> = None;
    while let Err(e) = ingest.write(&mut plan).await {
        counter!(m::INGEST_RETRIES).increment(1);
        tracing::warn!(error = %e, retry_in = ?backoff, "batch not durable yet; retrying");
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
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::warn!(messages = batch.len(), "shutting down with a batch that is not durable; it will be consumed again");
                return None;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    tell.send_replace(Progress::Written);
    if let Some(tpl) = paused
        && let Err(e) = consumer.resume(&tpl)
    {
        tracing::warn!(error = %e, "cannot resume partitions");
    }
    let report = ingest.finish(plan).await;
    tracing::debug!(?report, messages = batch.len(), "batch done");
    Some((batch, report))
}

/// Stores, per partition, the offset after the batch's last message: the next one to read.
fn store_batch_offsets(consumer: &IngestConsumer, batch: &[InboundMessage]) {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let slot = next.entry((m.topic.as_str(), m.partition)).or_insert(0);
        *slot = (*slot).max(m.offset + 1);
    }
    let mut tpl = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
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
}
