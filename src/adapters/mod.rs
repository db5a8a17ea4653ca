//! Adapters: the technologies (PostgreSQL, Kafka, moka and actix-web) plugged into the
//! domain's ports. Driver errors are translated here and never leave as driver types.

pub mod auth;
pub mod cache;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod trace;
