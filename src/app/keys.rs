//! `order-svc keys`: make, list and revoke API keys.

use crate::adapters::auth::keys;
use crate::adapters::postgres::{access, connect_named};
use crate::settings::{KeysCommand, KeysSettings};

pub async fn run(settings: KeysSettings) -> anyhow::Result<()> {
    let client = connect_named(&settings.url).await?;
    match settings.action {
        KeysCommand::Create { name, scopes } => {
            let (id, secret_hash, key) = keys::generate();
            let names = scopes.names();
            if !access::insert_key(&client, &id, &name, &secret_hash, &names).await? {
                anyhow::bail!(
                    "a key named {name} exists already: revoke it, or choose another name"
                );
            }
            eprintln!(
                "key {name} made with scopes {scopes}; it is shown once, only its hash is kept:"
            );
            println!("{key}");
        }
        KeysCommand::List => {
            println!("name\tscopes\tcreated\tlast used\trevoked");
            let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                )
            };
            for k in access::list_keys(&client).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.name,
                    k.scopes.join(","),
                    at(Some(k.created_at)),
                    at(k.last_used_at),
                    at(k.revoked_at)
                );
            }
        }
        KeysCommand::Revoke { name } => {
            if access::revoke_key(&client, &name).await? {
                println!(
                    "revoked {name}; every serve refuses it within {} s",
                    keys::KEY_CACHE_TTL.as_secs()
                );
            } else {
                anyhow::bail!("no live key is named {name}");
            }
        }
    }
    Ok(())
}
