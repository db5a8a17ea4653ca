//! order-svc: takes orders from Kafka, stores them in PostgreSQL, keeps the hot ones in
//! memory and serves them over HTTP.
//!
//! The crate is hexagonal, and its dependency rule is that arrows point inward:
//! - [`domain`] is the core (orders, rules, use cases, ports). It imports no adapter crate:
//!   no rdkafka, tokio-postgres, deadpool, moka, actix or tera.
//! - [`adapters`] plug those technologies into the domain's ports; they import `domain`.
//! - [`app`] holds one composition root per subcommand and imports both.
//! - `main.rs` parses the command line, starts telemetry and calls one `app::*::run`.
//!
//! [`cli`] describes the command line; [`settings`] reads it with the environment and the
//! settings file and builds the typed settings each command runs on; [`telemetry`] sets up
//! logs, metrics and the trace exporter (it reads the adapters' metric lists; no adapter
//! imports it: what they share about traces and request ids is [`adapters::trace`]).
//! [`generate`] makes test data (valid orders and each kind of invalid one): a tool for
//! `generate`, `produce`, the tests and the benchmarks, not a rule of the business, so it
//! lives beside the domain, not in it.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod domain;
pub mod generate;
pub mod settings;
pub mod telemetry;
