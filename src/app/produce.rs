//! `order-svc produce`: publish orders to Kafka at a steady rate.

use crate::cli::ProduceArgs;

pub async fn run(_args: ProduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("`produce` is not built yet: it lands with the ingest issue")
}
