//! Integration tests: the real binary against a real PostgreSQL (and, with ingest, a real
//! Kafka-protocol broker). One test binary with modules keeps link time low. `just test`
//! starts the services; TEST_DATABASE_URL and TEST_KAFKA_BROKERS say where they are.

mod access;
mod browse;
mod chaos;
mod cli;
mod deploy;
mod dlq_faults;
mod helpers;
mod hostile;
mod ingest;
mod kafka;
mod links;
mod lookup;
mod migrate;
mod operate;
mod own;
mod proxy;
mod redrive;
mod roundtrip;
mod settings;
mod sign_in;
mod silent;
mod tls;
mod traces;
mod ui;
mod wire;
