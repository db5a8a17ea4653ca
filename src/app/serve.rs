//! `order-svc serve`: ingest from Kafka and the HTTP API in one process.

use crate::cli::ServeArgs;

pub async fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "`serve` is not built yet: the ingest and lookup halves land with their own issues"
    )
}
