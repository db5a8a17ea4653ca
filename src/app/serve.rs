//! `order-svc serve`: ingest from Kafka and the HTTP API in one process (or either half,
//! with `--role`).
//!
//! Start: HTTP answers at once (liveness), readiness waits for the database and the
//! consumer; the cache preload runs beside it (lookups it has not reached yet go to the
//! database), and `/readyz` says whether it is done. Shutdown order: stop polling and finish (or abandon) the
//! batches in hand, commit what is durable, flush the dead-letter producer, then drain HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics::gauge;
use tokio::sync::watch;

use crate::adapters::auth::{Authenticator, JwtVerifier, KeyVerifier, RateLimits, SignIn};
use crate::adapters::cache::{self, MokaCache, RememberedRejections};
use crate::adapters::http;
use crate::adapters::kafka::dead_letters::KafkaDeadLetters;
use crate::adapters::kafka::ensure_topics;
use crate::adapters::kafka::{self, consumer};
use crate::adapters::postgres::access::PgAuditTrail;
use crate::adapters::postgres::metrics::PoolName;
use crate::adapters::postgres::pool::{LOOKUP_STATEMENT_TIMEOUT, PgStore, pool};
use crate::cli::Role;
use crate::domain::browse::{Browse, Browser};
use crate::domain::guard::{Guard, ValueHasher};
use crate::domain::health::Readiness;
use crate::domain::ingest::Ingest;
use crate::domain::lookup::{FindOrder, Lookup};
use crate::settings::{AuthSettings, ServeSettings};
use crate::telemetry;

pub async fn run(settings: ServeSettings) -> anyhow::Result<()> {
    let ServeSettings {
        role,
        http,
        postgres,
        kafka,
        cache,
        ingest,
        auth,
    } = settings;
    kafka.connection.warn_weaknesses();
    let url = &postgres.url;
    url.log_security();
    // Lookups, ingest and the readiness check draw on separate pools: a flood of lookups
    // (misses, searches) cannot take the connections ingest needs nor the one that tells
    // whether the database answers, and ingest cannot starve lookups.
    let timeout = postgres.statement_timeout;
    let store = PgStore::new(
        pool(
            url,
            postgres.lookup_pool,
            timeout.min(LOOKUP_STATEMENT_TIMEOUT),
        )?,
        timeout,
    );
    let ingest_store = PgStore::new(pool(url, postgres.ingest_pool, timeout)?, timeout);
    let health_store = PgStore::new(
        pool(url, 1, timeout.min(LOOKUP_STATEMENT_TIMEOUT))?,
        timeout,
    );
    let metrics = {
        let (lookup, ingest, health) = (store.clone(), ingest_store.clone(), health_store.clone());
        telemetry::install_metrics(vec![Box::new(move || {
            lookup.report_pool(PoolName::Lookup);
            ingest.report_pool(PoolName::Ingest);
            health.report_pool(PoolName::Health);
        })])?
    };
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "{url} does not answer yet; will keep trying");
    }
    let serves_api = role != Role::Ingest;
    let preload = cache.preload;
    let cache = MokaCache::new(cache.max_bytes);
    let lookup = Arc::new(Lookup::new(store.clone(), cache.clone()));
    let readiness = Arc::new(Readiness::new(serves_api, role.ingests()));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(watch_database(
        health_store,
        readiness.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(report_cache(cache.clone(), stop_rx.clone()));
    if serves_api {
        let (lookup, readiness, n) = (lookup.clone(), readiness.clone(), preload);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut backoff = Duration::from_millis(200);
            loop {
                match lookup.preload(n).await {
                    Ok(loaded) => {
                        tracing::info!(
                            loaded,
                            millis = started.elapsed().as_millis() as u64,
                            "cache preloaded"
                        );
                        readiness.set_cache_warmed();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache preload failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    let mut ingest_task = None;
    let mut dead_letters = None;
    if role.ingests() {
        ensure_topics(
            &kafka.connection,
            &[&kafka.topic, &ingest.dlq_topic],
            kafka.partitions,
        )
        .await?;
        let dlq = KafkaDeadLetters::new(&kafka.connection, &ingest.dlq_topic)?;
        let use_case = Arc::new(Ingest::new(
            ingest_store.clone(),
            dlq.clone(),
            cache.clone(),
            ingest.policy,
        ));
        let settings = ingest.consumer;
        let consumer = consumer::create(&settings)?;
        tracing::info!(topic = %settings.topic, group = %settings.group_id, dlq = %ingest.dlq_topic, "consuming");
        ingest_task = Some(tokio::spawn(consumer::run(
            consumer,
            settings,
            use_case,
            readiness.clone(),
            stop_rx.clone(),
        )));
        dead_letters = Some(dlq);
    }

    let bench_fixed = http
        .bench_fixed_bytes
        .map(|n| bytes::Bytes::from(vec![b'x'; n]));
    let listen = http::Listen {
        addr: http.addr,
        metrics_addr: http.metrics_addr,
        workers: http.workers,
        debug_headers: http.debug_headers,
        trusted_proxies: http.trusted_proxies.clone(),
    };
    let browse = Arc::new(Browser::new(RememberedRejections::new(store.clone())));
    let access = access(&auth, &store, lookup, browse).await?;
    let mut server = http::start(listen, access, readiness.clone(), metrics, bench_fixed)?;
    tracing::info!(addr = %server.addr, ?role, "serving HTTP");
    if let Some((addr, _)) = &server.metrics {
        tracing::info!(%addr, "serving /metrics on its own address");
    }

    let mut failure = None;
    tokio::select! {
        _ = super::shutdown_signal() => tracing::info!("shutting down"),
        result = &mut server.task => {
            result.context("the HTTP server task failed")?.context("the HTTP server failed")?;
        }
        ended = async { ingest_task.as_mut().expect("an ingest task").await }, if ingest_task.is_some() => {
            // Not a shutdown: the consumer died. Not ready and not alive from now on, and the
            // process exits non-zero so that its supervisor starts a fresh one, which resumes
            // from the last commit.
            ingest_task = None;
            failure = Some(ingest_died(ended, &readiness));
        }
    }
    let _ = stop_tx.send(true);
    if let Some(task) = ingest_task {
        // The batches in hand are a few seconds of work at most; past that they are replayed.
        if tokio::time::timeout(Duration::from_secs(7), task)
            .await
            .is_err()
        {
            tracing::warn!("ingest did not stop in time; its batches will be consumed again");
        }
    }
    if let Some(dlq) = dead_letters {
        dlq.flush();
    }
    server.stop().await;
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// The consumer ended with no shutdown asked: the process is not ready and not alive from
/// now on, the failure is counted, and the error returned makes the process exit non-zero.
fn ingest_died(
    ended: Result<Result<(), consumer::ConsumerDied>, tokio::task::JoinError>,
    readiness: &Readiness,
) -> anyhow::Error {
    readiness.set_consumer_failed();
    metrics::counter!(kafka::metrics::CONSUMER_FAILURES).increment(1);
    let why = match ended {
        Ok(Ok(())) => anyhow::anyhow!("the consumer stopped on its own"),
        Ok(Err(e)) => e.into(),
        Err(e) => anyhow::Error::new(e).context("the consumer task failed"),
    };
    tracing::error!(why = %format!("{why:#}"), "ingest died; shutting down to be restarted");
    why.context("ingest died")
}

/// Who may come in: the ways in the settings name, and the guard every read goes through.
async fn access(
    auth: &AuthSettings,
    store: &PgStore,
    lookup: Arc<dyn FindOrder>,
    browse: Arc<dyn Browse>,
) -> anyhow::Result<http::Access> {
    let jwt = match &auth.jwt {
        Some(settings) => {
            let verifier = Arc::new(JwtVerifier::new(settings.clone())?);
            // Fetched now, so the first token need not wait; a provider not up yet is asked
            // again by the first token that needs it.
            if let Err(e) = verifier.refresh().await {
                tracing::warn!(issuer = %settings.issuer, error = %format!("{e:#}"),
                    "cannot fetch the identity provider's keys yet; will try again");
            }
            Some(verifier)
        }
        None => None,
    };
    let sign_in = match (&auth.sign_in, &jwt) {
        (Some(settings), Some(verifier)) => Some(Arc::new(SignIn::new(
            settings.clone(),
            verifier.clone(),
            store.clone(),
        )?)),
        _ => None,
    };
    // The provider's keys check ID tokens of web sign-ins even where bearer tokens are off.
    let jwt = jwt.filter(|_| auth.jwt.as_ref().is_some_and(|j| j.audience.is_some()));
    if let Some(scopes) = auth.anonymous {
        tracing::warn!(%scopes, "anonymous access is on (AUTH_ANONYMOUS_SCOPES): anyone who reaches the port has these scopes");
    }
    let key = match &auth.audit_hash_key {
        Some(key) => key.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "AUDIT_HASH_KEY is unset: searched values are hashed with a key of this process only"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    };
    let limits = RateLimits::new(auth.rate);
    Ok(http::Access {
        guard: Guard::new(
            lookup,
            browse,
            Arc::new(PgAuditTrail::start(store.clone())),
            ValueHasher::new(&key),
        ),
        auth: Authenticator {
            anonymous: auth.anonymous,
            keys: auth.api_keys.then(|| KeyVerifier::new(store.clone())),
            jwt,
            sign_in,
        },
        limits,
        links: auth
            .links
            .clone()
            .map(|(signer, base)| http::Links { signer, base }),
    })
}

/// Keeps the readiness flag of the database current.
async fn watch_database(
    store: PgStore,
    readiness: Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => {}
        }
        let up = tokio::time::timeout(Duration::from_secs(2), store.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        if up != readiness.database() {
            if up {
                tracing::info!("database reachable");
            } else {
                tracing::warn!("database unreachable");
            }
        }
        readiness.set_database(up);
    }
}

/// Publishes the cache's size as gauges.
async fn report_cache(cache: MokaCache, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => {}
        }
        cache.settle().await;
        gauge!(cache::CACHE_ENTRIES).set(cache.entries() as f64);
        gauge!(cache::CACHE_BYTES).set(cache.bytes() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn died(
        ended: Result<Result<(), consumer::ConsumerDied>, tokio::task::JoinError>,
    ) -> (anyhow::Error, Readiness, String) {
        let readiness = Readiness::new(false, true);
        readiness.set_database(true);
        readiness.set_consumer(true);
        assert!(readiness.alive() && readiness.problems().is_empty());
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let error = metrics::with_local_recorder(&recorder, || ingest_died(ended, &readiness));
        (error, readiness, handle.render())
    }

    #[test]
    fn a_consumer_that_ends_by_itself_leaves_the_process_not_ready_not_alive_and_counted() {
        let (error, readiness, metrics) = died(Ok(Ok(())));
        assert!(!readiness.alive(), "not alive: the supervisor restarts it");
        assert!(readiness.problems().contains(&"consumer not running"));
        assert!(
            metrics.contains(&format!("{} 1", kafka::metrics::CONSUMER_FAILURES)),
            "{metrics}"
        );
        // The error `run` returns, which makes main exit non-zero, says why.
        assert_eq!(
            format!("{error:#}"),
            "ingest died: the consumer stopped on its own"
        );
    }

    #[tokio::test]
    async fn a_consumer_task_that_panicked_is_named_in_the_error() {
        let panicked = tokio::spawn(async { panic!("this test's panic") })
            .await
            .expect_err("the task panicked");
        let (error, readiness, _) = died(Err(panicked));
        assert!(!readiness.alive());
        let said = format!("{error:#}");
        assert!(
            said.starts_with("ingest died: the consumer task failed"),
            "{said}"
        );
    }
}
