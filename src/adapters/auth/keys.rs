//! API keys: `osk_<id>_<secret>`, 16 hex digits of id (finds the row) and 64 of secret
//! (256 random bits). Only the SHA-256 of the secret is stored; the presented secret's hash
//! is compared with it in constant time. A verified key is remembered for [`KEY_CACHE_TTL`],
//! so a revoked key is refused at most that long after `order-svc keys revoke`.

use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::adapters::postgres::access::KeyRow;
use crate::adapters::postgres::pool::PgStore;
use crate::domain::access::{Caller, Scopes, Via};

use super::AuthFailure;

/// How long a key's row is remembered: the longest a revoked key still works.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// How often a key's last use is written, at most.
const LAST_USE_EVERY: Duration = Duration::from_secs(60);

const PREFIX: &str = "osk_";

/// A new key: its id, its secret's hash, and the whole key to hand out once.
pub fn generate() -> (String, [u8; 32], String) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let key = format!("{PREFIX}{id}_{secret}");
    (id, hash(&secret), key)
}

/// The SHA-256 of a key's secret.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `token` is shaped as one of our keys.
pub fn is_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The id and secret of a well-formed key.
fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

/// A key's row as remembered: `None` when no live key has that id.
type Known = Option<(KeyRow, Vec<u8>)>;

/// Checks keys against the table, remembering rows for [`KEY_CACHE_TTL`].
#[derive(Clone)]
pub struct KeyVerifier {
    store: PgStore,
    rows: moka::future::Cache<String, Known>,
    used: moka::sync::Cache<String, ()>,
}

impl KeyVerifier {
    pub fn new(store: PgStore) -> Self {
        Self {
            store,
            rows: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            used: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LAST_USE_EVERY)
                .build(),
        }
    }

    /// The caller this key stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let (id, secret) = split(token).ok_or(AuthFailure::Invalid("malformed API key"))?;
        let store = self.store.clone();
        let id_owned = id.to_owned();
        let known = self
            .rows
            .try_get_with(
                id.to_owned(),
                async move { store.live_key(&id_owned).await },
            )
            .await
            .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        let Some((row, stored)) = known else {
            return Err(AuthFailure::Invalid("unknown or revoked API key"));
        };
        if !bool::from(hash(secret).as_slice().ct_eq(stored.as_slice())) {
            return Err(AuthFailure::Invalid("unknown or revoked API key"));
        }
        if !self.used.contains_key(id) {
            self.used.insert(id.to_owned(), ());
            let (store, id) = (self.store.clone(), id.to_owned());
            tokio::spawn(async move {
                if let Err(e) = store.key_used(&id).await {
                    tracing::warn!(error = %e, "cannot record an API key's last use");
                }
            });
        }
        Ok(Caller {
            subject: row.name.into(),
            client: None,
            via: Via::ApiKey,
            scopes: Scopes::known(row.scopes.iter().map(String::as_str)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_splits_back_into_its_id_and_the_secret_its_hash_is_of() {
        let (id, secret_hash, key) = generate();
        assert!(is_key(&key));
        let (got_id, secret) = split(&key).expect("well formed");
        assert_eq!(got_id, id);
        assert_eq!(hash(secret), secret_hash);
        assert!(
            !key.contains(&hex::encode(secret_hash)),
            "the key is not its hash"
        );
        for bad in [
            "osk_",
            "osk_0123456789abcdef",
            "osk_0123456789abcdef_00",
            "osk_0123456789abcdeg_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
