//! The core: orders, their rules, and the use cases. It knows nothing of Kafka, PostgreSQL,
//! caches or HTTP; adapters reach it through the traits in `ports` (added with the use cases
//! that need them).

pub mod generate;
pub mod order;
pub mod validate;

#[cfg(test)]
mod tests;
