//! Faults from outside the process while a mixed stream flows: `serve` killed, PostgreSQL
//! restarted or silent, the broker frozen, consumers joining and leaving, dead letters
//! refused. After each phase: every valid order stored exactly once with the *first* version
//! of its uid, every rejected or conflicting message dead-lettered, and everything committed
//! (no stall). What each message must become is the stream's own label (the generator's
//! corruption, the copies and conflicts made here), never the service's `accept()`. A dead
//! letter may repeat only after a crash or a rebalance during which it was in flight, once
//! per such event: in a phase without either, none repeats.
//!
//! `chaos_short` runs in `just test`; `just chaos` runs `chaos_full` on the release build
//! with a broker and a PostgreSQL cluster of its own. The dead-letter phase runs on
//! librdkafka's mock cluster, which can refuse the dead-letter producer (tansu cannot).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_svc::generate::{Corruption, GenerateOptions, Generator};
use rand::{Rng, SeedableRng};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::helpers::{Serve, TestDb, connect, host_port};
use crate::kafka::{
    PARTITIONS, TestTopic, committed_on, committed_total_on, config_on, read_topic_on,
};
use crate::own::{OwnBroker, OwnPostgres};
use crate::proxy::CutProxy;

const LIMIT: usize = 64 * 1024;

/// What the stream made a message: the acceptance model the checks judge by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A valid order, the first version of its uid.
    Valid,
    /// A message the generator corrupted: refused, dead-lettered.
    Invalid,
    /// An exact copy of an earlier valid order: a duplicate, nothing to do.
    Copy,
    /// Other content under an earlier valid order's uid: a conflict, dead-lettered.
    Conflict,
}

impl Kind {
    fn is_letter(self) -> bool {
        matches!(self, Kind::Invalid | Kind::Conflict)
    }
}

#[derive(Clone)]
struct Message {
    key: Option<String>,
    bytes: Vec<u8>,
    kind: Kind,
}

/// Where a message landed: (partition, offset).
type At = (i32, i64);

/// A message and where it landed.
type Placed = (At, Message);

/// The mixed stream: generated orders (a share invalid), and, some 40 messages after their
/// original, exact copies of every 7th valid order and a version with other content (a
/// conflict) of every 11th.
fn stream(seed: u64, n: usize) -> Vec<Message> {
    let mut g = Generator::new(GenerateOptions {
        seed,
        invalid_rate: 0.15,
        max_message_bytes: LIMIT,
        ..GenerateOptions::default()
    });
    let mut out: Vec<Message> = Vec::with_capacity(n + n / 5);
    let mut later: std::collections::VecDeque<(usize, Message)> = Default::default();
    let mut valid_seen = 0;
    for i in 0..n {
        while later.front().is_some_and(|(due, _)| *due <= i) {
            out.push(later.pop_front().unwrap().1);
        }
        let m = g.next_message();
        // serve runs with VALIDATION_CONSISTENCY=warn (the default): totals that do not add
        // up are stored, with a warning.
        let kind = match m.corruption {
            None | Some(Corruption::InconsistentTotals) => Kind::Valid,
            Some(_) => Kind::Invalid,
        };
        if kind == Kind::Valid {
            valid_seen += 1;
            let copy = |bytes: Vec<u8>, kind| Message {
                key: m.uid.clone(),
                bytes,
                kind,
            };
            if valid_seen % 7 == 0 {
                later.push_back((i + 40, copy(m.bytes.clone(), Kind::Copy)));
            }
            if valid_seen % 11 == 0 {
                let mut other: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
                other["entry"] = "LATER".into();
                let bytes = serde_json::to_vec(&other).unwrap();
                later.push_back((i + 40, copy(bytes, Kind::Conflict)));
            }
        }
        out.push(Message {
            key: m.uid,
            bytes: m.bytes,
            kind,
        });
    }
    out.extend(later.into_iter().map(|(_, m)| m));
    out
}

/// What must have become of the messages sent so far, by where they landed.
#[derive(Default)]
struct Ledger {
    placed: Vec<Placed>,
}

struct Expected {
    /// uid -> `entry` of its first version (a conflict's is `LATER`), and its item count.
    stored: HashMap<String, (String, usize)>,
    /// Messages that must reach the dead-letter topic.
    dead: HashSet<At>,
}

impl Ledger {
    /// By the labels: a corrupted message is dead-lettered; of the others, the first placed
    /// under its uid (in its partition's order) is stored, a later one with the same bytes
    /// is a duplicate, and one with other bytes a conflict, dead-lettered. A copy or a
    /// conflict whose original went to another phase's topic is that topic's first version.
    fn expected(&self) -> Expected {
        let mut placed: Vec<&Placed> = self.placed.iter().collect();
        placed.sort_by_key(|(at, _)| *at);
        let mut stored = HashMap::new();
        let mut first: HashMap<String, &[u8]> = HashMap::new();
        let mut dead = HashSet::new();
        for (at, m) in placed {
            if m.kind == Kind::Invalid {
                dead.insert(*at);
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_slice(&m.bytes).expect("an uncorrupted order is JSON");
            let uid = v["order_uid"].as_str().unwrap().to_owned();
            match first.get(&uid) {
                None => {
                    let entry = v["entry"].as_str().unwrap().to_owned();
                    let items = v["items"].as_array().unwrap().len();
                    stored.insert(uid.clone(), (entry, items));
                    first.insert(uid, &m.bytes);
                }
                Some(bytes) if *bytes == m.bytes.as_slice() => {}
                Some(_) => {
                    dead.insert(*at);
                }
            }
        }
        Expected { stored, dead }
    }
}

/// Messages being sent in the background, with where each has landed so far.
struct Sending {
    placed: Arc<Mutex<Vec<Placed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sending {
    /// Where the messages sent so far landed, and what they are.
    fn so_far(&self) -> Vec<(At, Kind)> {
        let placed = self.placed.lock().unwrap();
        placed.iter().map(|(at, m)| (*at, m.kind)).collect()
    }

    async fn finish(self) -> Vec<Placed> {
        self.task.await.expect("the sender finishes");
        std::mem::take(&mut *self.placed.lock().unwrap())
    }
}

/// How many partitions a `serve` owns now, by its log: the count of its last assignment,
/// 0 after a revocation (the group rebalances eagerly: each assignment is the whole).
fn owned(serve: &Serve) -> usize {
    let logs = serve.logs();
    let last = logs
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"));
    match last {
        Some(line) if line.contains("partitions assigned") => line
            .split("partitions=")
            .nth(1)
            .and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or(0),
        _ => 0,
    }
}

/// The infrastructure of one chaos run.
struct World {
    topic: TestTopic,
    db_url: String,
    proxy: CutProxy,
    producer: FutureProducer,
    ledger: Ledger,
    /// How many times each dead letter had been read at the last check.
    seen_before: HashMap<At, usize>,
}

/// The events of a phase during which a dead letter was in flight (published, or about to
/// be, and not committed): each allows it one repeat.
type MayRepeat = HashMap<At, usize>;

/// One more event (a crash, a rebalance) during which each of `letters` was in flight.
fn allow_repeat(may_repeat: &mut MayRepeat, letters: impl IntoIterator<Item = At>) {
    for at in letters {
        *may_repeat.entry(at).or_default() += 1;
    }
}

impl World {
    async fn new(topic: TestTopic, db_url: String) -> Self {
        crate::helpers::migrate(&db_url);
        let upstream: std::net::SocketAddr = host_port(&db_url).parse().unwrap();
        let producer: FutureProducer = config_on(&topic.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            .create()
            .unwrap();
        Self {
            topic,
            db_url,
            proxy: CutProxy::start(upstream).await,
            producer,
            ledger: Ledger::default(),
            seen_before: HashMap::new(),
        }
    }

    fn serve_env(&self) -> Vec<(&'static str, String)> {
        let proxied = self.db_url.replace(
            &host_port(&self.db_url),
            &format!("127.0.0.1:{}", self.proxy.port),
        );
        let mut env = self.topic.serve_env(&proxied, "chaos");
        env.extend([
            ("INGEST_MAX_MESSAGE_BYTES", LIMIT.to_string()),
            ("INGEST_BATCH_MAX", "200".to_owned()),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "3000".to_owned()),
        ]);
        env
    }

    /// Sends `messages` at a steady pace in the background.
    fn send(&self, messages: Vec<Message>, per_second: usize) -> Sending {
        let (producer, topic) = (self.producer.clone(), self.topic.name.clone());
        let placed = Arc::new(Mutex::new(Vec::with_capacity(messages.len())));
        let out = placed.clone();
        let task = tokio::spawn(async move {
            let chunk = (per_second / 10).max(1);
            for part in messages.chunks(chunk) {
                let tick = tokio::time::sleep(Duration::from_millis(100));
                let sends = part.iter().map(|m| {
                    let mut record: FutureRecord<'_, str, [u8]> =
                        FutureRecord::to(&topic).payload(&m.bytes);
                    if let Some(key) = &m.key {
                        record = record.key(key);
                    }
                    producer.send(record, Duration::from_secs(120))
                });
                for (r, m) in futures::future::join_all(sends).await.into_iter().zip(part) {
                    let d = r
                        .map_err(|(e, _)| e)
                        .expect("the broker takes the message in the end");
                    out.lock()
                        .unwrap()
                        .push(((d.partition, d.offset), m.clone()));
                }
                tick.await;
            }
        });
        Sending { placed, task }
    }

    /// Of `placed`, the messages the group has not committed, and the dead letters among
    /// them.
    fn in_flight(&self, placed: &[(At, Kind)]) -> (usize, HashSet<At>) {
        let committed = committed_on(&self.topic.brokers, &self.topic.name, "chaos");
        let open: Vec<_> = placed
            .iter()
            .filter(|((p, o), _)| *o >= committed[*p as usize])
            .collect();
        let letters = open
            .iter()
            .filter(|(_, kind)| kind.is_letter())
            .map(|(at, _)| *at)
            .collect();
        (open.len(), letters)
    }

    /// Samples the dead letters in flight until `settled` holds and two auto-commit
    /// intervals more have passed (a letter replayed after a rebalance was in flight when
    /// its partition moved), counting one event for each in `may_repeat`.
    async fn through_rebalance(
        &self,
        sending: &Sending,
        what: &str,
        may_repeat: &mut MayRepeat,
        settled: impl Fn() -> bool,
    ) {
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut settled_at = None;
        while settled_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(2)) {
            seen.extend(self.in_flight(&sending.so_far()).1);
            if settled_at.is_none() && settled() {
                settled_at = Some(Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "chaos: group: {what}: the group did not settle within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        allow_repeat(may_repeat, seen);
    }

    /// Waits for everything sent to be committed, then checks the database and the dead
    /// letters, and prints the phase's line.
    async fn check(&mut self, phase: &str, did: &str, started: Instant, may_repeat: &MayRepeat) {
        let sent = self.ledger.placed.len();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = committed_total_on(&self.topic.brokers, &self.topic.name, "chaos");
            if done == sent as i64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chaos: {phase}: STALL: {done} of {sent} messages committed after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let caught_up = started.elapsed().as_secs_f64();
        let expected = self.ledger.expected();

        let client = connect(&self.db_url).await;
        let rows = client
            .query(
                "SELECT o.order_uid, o.entry, (SELECT count(*) FROM items i WHERE i.order_uid = o.order_uid) FROM orders o",
                &[],
            )
            .await
            .unwrap();
        let mut stored: HashMap<String, (String, i64)> = HashMap::new();
        for r in &rows {
            stored.insert(r.get(0), (r.get(1), r.get(2)));
        }
        let lost: Vec<&String> = expected
            .stored
            .keys()
            .filter(|u| !stored.contains_key(*u))
            .collect();
        assert!(
            lost.is_empty(),
            "chaos: {phase}: LOSS: {} valid orders not stored, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        );
        let extra: Vec<&String> = stored
            .keys()
            .filter(|u| !expected.stored.contains_key(*u))
            .collect();
        assert!(
            extra.is_empty(),
            "chaos: {phase}: {} stored orders were never sent valid: {:?}",
            extra.len(),
            &extra[..extra.len().min(3)]
        );
        for (uid, (entry, items)) in &expected.stored {
            let (got_entry, got_items) = &stored[uid];
            assert_eq!(got_entry, entry, "chaos: {phase}: WRONG VERSION of {uid}");
            assert_eq!(
                *got_items, *items as i64,
                "chaos: {phase}: {uid} has {got_items} item rows, not {items}"
            );
        }

        let letters = read_topic_on(
            &self.topic.brokers,
            &self.topic.dlq,
            expected.dead.len(),
            Duration::from_secs(1),
        )
        .await;
        let mut seen: HashMap<At, usize> = HashMap::new();
        for l in &letters {
            let at = (
                l.headers["x-dlq-original-partition"].parse().unwrap(),
                l.headers["x-dlq-original-offset"].parse().unwrap(),
            );
            *seen.entry(at).or_default() += 1;
        }
        let missing: Vec<_> = expected
            .dead
            .iter()
            .filter(|at| !seen.contains_key(at))
            .collect();
        assert!(
            missing.is_empty(),
            "chaos: {phase}: LOSS: {} dead letters missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        let wrong: Vec<_> = seen
            .keys()
            .filter(|at| !expected.dead.contains(at))
            .collect();
        assert!(
            wrong.is_empty(),
            "chaos: {phase}: {} messages dead-lettered that should not be: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        );
        // This phase's repeats: reads beyond the first, less those seen at the last check.
        let mut repeats = 0;
        for (at, n) in &seen {
            let before = self.seen_before.get(at).copied().unwrap_or(0).max(1);
            let new = n.saturating_sub(before);
            let allowed = may_repeat.get(at).copied().unwrap_or(0);
            assert!(
                new <= allowed,
                "chaos: {phase}: DOUBLE: the dead letter of {at:?} was published {new} more time(s), \
                 with {allowed} crash(es) or rebalance(s) while it was in flight"
            );
            repeats += new;
        }
        self.seen_before = seen;
        println!(
            "chaos: {phase}: {did}; {sent} sent, {} stored, {} dead letters ({repeats} repeated, {} were in flight at a crash or rebalance), all committed {caught_up:.1}s after the phase began",
            expected.stored.len(),
            expected.dead.len(),
            may_repeat.len(),
        );
    }
}

struct Plan {
    messages: usize,
    per_second: usize,
    kills: usize,
    freeze: Option<Duration>,
    silence: Duration,
    pg_restarts: bool,
}

/// A rate at which `n` messages take about `seconds` to send, at most `max`.
fn rate_for(n: usize, seconds: usize, max: usize) -> usize {
    (n / seconds.max(1)).clamp(10, max.max(10))
}

async fn chaos(
    plan: Plan,
    broker: Option<&OwnBroker>,
    db_url: String,
    dlq_db_url: String,
    pg: Option<&OwnPostgres>,
) {
    let brokers = broker.map_or_else(crate::kafka::brokers, |b| format!("127.0.0.1:{}", b.port));
    let mut world = World::new(TestTopic::create_on(&brokers).await, db_url).await;
    let mut all = stream(77, plan.messages).into_iter();
    let phases = 6;
    let slice = plan.messages / phases + 1;
    let mut next = |n: usize| all.by_ref().take(n).collect::<Vec<_>>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut serve = Serve::start(&world.serve_env()).await;
    serve.wait_ready().await;
    let none = MayRepeat::new();

    // 1. kill -9 while work is in flight, each followed by a restart. The stream is paced to
    //    outlast the kills, and each kill waits for messages placed and not yet committed.
    let started = Instant::now();
    let part = next(slice);
    let sending = world.send(
        part.clone(),
        rate_for(part.len(), plan.kills * 2, plan.per_second),
    );
    let mut may_repeat = MayRepeat::new();
    for k in 1..=plan.kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..700))).await;
        let wait_until = Instant::now() + Duration::from_secs(30);
        while world.in_flight(&sending.so_far()).0 == 0 {
            assert!(
                Instant::now() < wait_until,
                "chaos: kill {k}: nothing in flight for 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve.child.kill().unwrap();
        let _ = serve.child.wait();
        // Read once the process is gone: nothing it did can commit any more.
        let (open, letters) = world.in_flight(&sending.so_far());
        assert!(
            open > 0,
            "chaos: kill {k}: nothing was in flight when it landed"
        );
        allow_repeat(&mut may_repeat, letters);
        serve = Serve::start(&world.serve_env()).await;
    }
    world.ledger.placed.extend(sending.finish().await);
    world
        .check(
            "kill -9",
            &format!(
                "{} kills of serve while messages were in flight, each restarted",
                plan.kills
            ),
            started,
            &may_repeat,
        )
        .await;

    // 2. PostgreSQL restarted in immediate mode, twice.
    if let Some(pg) = pg.filter(|_| plan.pg_restarts) {
        let started = Instant::now();
        let sending = world.send(next(slice), plan.per_second);
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            pg.restart_immediate();
        }
        world.ledger.placed.extend(sending.finish().await);
        world
            .check(
                "postgres restart",
                "PostgreSQL restarted twice with -m immediate",
                started,
                &none,
            )
            .await;
    }

    // 3. The broker frozen: a partition that loses nothing.
    if let (Some(broker), Some(freeze)) = (broker, plan.freeze) {
        let started = Instant::now();
        let sending = world.send(next(slice), plan.per_second);
        tokio::time::sleep(Duration::from_secs(1)).await;
        broker.signal("-STOP");
        tokio::time::sleep(freeze).await;
        broker.signal("-CONT");
        world.ledger.placed.extend(sending.finish().await);
        world
            .check(
                "broker frozen",
                &format!("broker stopped (SIGSTOP) for {}s", freeze.as_secs()),
                started,
                &none,
            )
            .await;
    }

    // 4. Three processes in one group: two join, one leaves by SIGTERM, one by SIGKILL, each
    //    change made once the group has settled with every member owning partitions.
    let started = Instant::now();
    let part = next(slice);
    let sending = world.send(part.clone(), rate_for(part.len(), 20, plan.per_second));
    let mut may_repeat = MayRepeat::new();
    let second = Serve::start(&world.serve_env()).await;
    let third = Serve::start(&world.serve_env()).await;
    let all_own = |members: &[&Serve]| {
        let counts: Vec<usize> = members.iter().map(|m| owned(m)).collect();
        counts.iter().all(|&n| n > 0) && counts.iter().sum::<usize>() == PARTITIONS as usize
    };
    world
        .through_rebalance(&sending, "two joined", &mut may_repeat, || {
            all_own(&[&serve, &second, &third])
        })
        .await;
    serve.terminate();
    let status = serve.child.wait().unwrap();
    assert!(
        status.success(),
        "chaos: group: SIGTERM must exit 0, got {status}"
    );
    world
        .through_rebalance(&sending, "one left by SIGTERM", &mut may_repeat, || {
            all_own(&[&second, &third])
        })
        .await;
    let mut second = second;
    second.child.kill().unwrap();
    let _ = second.child.wait();
    allow_repeat(&mut may_repeat, world.in_flight(&sending.so_far()).1);
    world
        .through_rebalance(&sending, "one left by SIGKILL", &mut may_repeat, || {
            all_own(&[&third])
        })
        .await;
    drop(second);
    serve = third;
    world.ledger.placed.extend(sending.finish().await);
    world
        .check(
            "group",
            "3 processes, each owning partitions; one left by SIGTERM (exit 0), one by SIGKILL",
            started,
            &may_repeat,
        )
        .await;

    // 5. PostgreSQL silent: a proxy that stops forwarding without closing anything.
    let started = Instant::now();
    let sending = world.send(next(slice), plan.per_second);
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.proxy.silence();
    let mut saw_not_ready = false;
    let until = Instant::now() + plan.silence;
    while Instant::now() < until {
        saw_not_ready |= serve.status("/readyz").await == Some(503);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    world.proxy.restore();
    assert!(
        saw_not_ready,
        "chaos: silent database: /readyz never said 503"
    );
    world.ledger.placed.extend(sending.finish().await);
    world
        .check(
            "silent database",
            &format!(
                "PostgreSQL silent for {}s, /readyz 503 meanwhile",
                plan.silence.as_secs()
            ),
            started,
            &none,
        )
        .await;
    drop(serve);

    // 6. Dead letters refused by the broker.
    dead_letters_refused(dlq_db_url, next(slice)).await;
}

/// The dead-letter phase, on librdkafka's mock cluster: every publish is refused for a
/// while. No offset may move past a dead letter not delivered; once publishes are taken
/// again, everything is as after any other phase, with no letter repeated.
async fn dead_letters_refused(db_url: String, messages: Vec<Message>) {
    let cluster = MockCluster::new(1).expect("librdkafka's mock cluster");
    let name = format!("chaos-{}", uuid::Uuid::new_v4().simple());
    let topic = TestTopic {
        dlq: format!("{name}.dlq"),
        name,
        brokers: cluster.bootstrap_servers(),
    };
    cluster.create_topic(&topic.name, PARTITIONS, 1).unwrap();
    cluster.create_topic(&topic.dlq, PARTITIONS, 1).unwrap();
    let mut world = World::new(topic, db_url).await;
    let started = Instant::now();
    // Sent before the fault: the mock refuses every producer's requests alike.
    let placed = world.send(messages, 1_000).finish().await;
    let mut first_letter = vec![i64::MAX; PARTITIONS as usize];
    for ((p, o), m) in &placed {
        if m.kind.is_letter() {
            first_letter[*p as usize] = first_letter[*p as usize].min(*o);
        }
    }
    assert!(
        first_letter.iter().any(|&o| o < i64::MAX),
        "the phase's messages hold dead letters"
    );
    world.ledger.placed.extend(placed);
    let refused = RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    cluster.request_errors(RDKafkaApiKey::Produce, &vec![refused; 100_000]);
    let serve = Serve::start(&world.serve_env()).await;
    serve.wait_ready().await;
    // Several auto-commit intervals with every publish refused.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let held = committed_on(&world.topic.brokers, &world.topic.name, "chaos");
    for (p, (&committed, &first)) in held.iter().zip(&first_letter).enumerate() {
        assert!(
            committed <= first,
            "chaos: dead letters refused: partition {p} committed {committed}, past its first undelivered dead letter at {first}"
        );
    }
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let did = format!(
        "every publish refused for 6 s (offsets held at {held:?}, first letters at {first_letter:?}), then taken"
    );
    world
        .check("dead letters refused", &did, started, &MayRepeat::new())
        .await;
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short() {
    let (db, dlq_db) = (TestDb::unique(), TestDb::unique());
    chaos(
        Plan {
            messages: 1_500,
            per_second: 400,
            kills: 3,
            freeze: None,
            silence: Duration::from_secs(4),
            pg_restarts: false,
        },
        None,
        db.url.clone(),
        dlq_db.url.clone(),
        None,
    )
    .await;
}

/// `just chaos`: the full suite, on a broker and a PostgreSQL cluster of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run with `just chaos`"]
async fn chaos_full() {
    let broker = OwnBroker::start();
    let pg = OwnPostgres::start();
    chaos(
        Plan {
            messages: 12_000,
            per_second: 600,
            kills: 10,
            freeze: Some(Duration::from_secs(15)),
            silence: Duration::from_secs(20),
            pg_restarts: true,
        },
        Some(&broker),
        pg.url("orders"),
        pg.url("orders_dlq"),
        Some(&pg),
    )
    .await;
}
