//! `order-svc migrate`: create the database when missing, apply pending migrations, say what
//! was applied.

use crate::adapters::postgres::migrations;
use crate::settings::MigrateSettings;

pub async fn run(settings: MigrateSettings) -> anyhow::Result<()> {
    let url = &settings.url;
    let outcome = migrations::run(url).await?;
    if outcome.created_database {
        println!("created {url}");
    }
    if outcome.applied.is_empty() {
        println!("{url} is up to date: nothing to apply");
    } else {
        for name in &outcome.applied {
            println!("applied {name}");
        }
        println!("{url}: applied {} migration(s)", outcome.applied.len());
    }
    Ok(())
}
