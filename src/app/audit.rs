//! `order-svc audit`: read the audit trail, or apply its retention.

use crate::adapters::postgres::{access, connect_named};
use crate::settings::AuditSettings;

pub async fn run(settings: AuditSettings) -> anyhow::Result<()> {
    let mut client = connect_named(&settings.url).await?;
    if let Some(before) = settings.purge_before {
        let n = access::purge_audit(&mut client, before).await?;
        println!(
            "deleted {n} audit records written before {}",
            before.to_rfc3339()
        );
        return Ok(());
    }
    for (_, record) in access::read_audit(&client, &settings.query).await? {
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}
