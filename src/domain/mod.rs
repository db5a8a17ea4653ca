#![warn(missing_docs)]
//! The core: orders, their rules, and the use cases. It knows nothing of Kafka, PostgreSQL,
//! caches or HTTP; adapters reach it through the traits in [`ports`].

pub mod access;
pub mod browse;
pub mod guard;
pub mod health;
pub mod ingest;
pub mod links;
pub mod lookup;
pub mod message;
pub mod metrics;
pub mod order;
pub mod ports;
pub mod redrive;
pub mod rules;
pub mod validate;

#[cfg(test)]
mod ingest_tests;
#[cfg(test)]
mod tests;
