//! Bearer JWTs, checked here against the identity provider's published keys (JWKS): found
//! by OpenID discovery from the issuer (or named), fetched at start, fetched again when a
//! token names a key id we do not hold (at most once per [`MIN_REFRESH`]), never from a
//! token. The algorithm is the key's, never the token's alone: a token whose header names
//! another is refused, so `none`, and HS256 with the public key as its secret, never pass.
//! Symmetric keys in a JWKS are ignored. A verified token is remembered until it expires.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::access::{Caller, Scopes, Via};

use super::AuthFailure;

/// The least time between two fetches of the JWKS: tokens naming unknown key ids cannot
/// make the service hammer the provider.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `iss` of every token, and where discovery starts.
    pub issuer: String,
    /// `aud` a bearer token must name; `None`: bearer tokens are not accepted (the
    /// provider is there for web sign-in only, whose ID tokens name the client).
    pub audience: Option<String>,
    /// The JWKS address, when not found by discovery.
    pub jwks_url: Option<String>,
    /// The claim holding scopes (a space-separated string or an array).
    pub scope_claim: String,
    /// The claim holding roles or groups, mapped to scopes by `role_scopes`.
    pub roles_claim: Option<String>,
    /// Role → the scopes it grants.
    pub role_scopes: Vec<(String, Scopes)>,
}

/// One usable key: how to check with it, and the algorithm it is for.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

struct Keys {
    by_id: HashMap<String, Arc<Key>>,
    /// The only key, when the set has exactly one (a token without `kid` may use it).
    only: Option<Arc<Key>>,
    fetched: Option<Instant>,
}

/// Checks bearer tokens.
pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    fetching: tokio::sync::Mutex<()>,
    /// SHA-256 of a token → its caller and expiry (unix seconds).
    verified: moka::sync::Cache<[u8; 32], (Caller, u64)>,
}

/// The algorithm a JWK is for: its `alg`, else what its type and curve allow.
fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        // A shared secret published in a key set is no key to trust a token by.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        Some(alg) => Algorithm::try_from(alg)
            .ok()
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)),
        None => Some(by_type),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            settings,
            http,
            keys: RwLock::new(Keys {
                by_id: HashMap::new(),
                only: None,
                fetched: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            verified: moka::sync::Cache::builder().max_capacity(10_000).build(),
        })
    }

    /// A JSON document of the provider's (an error status is an error).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> anyhow::Result<T> {
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The issuer's discovery document.
    pub(crate) async fn discovery(&self) -> anyhow::Result<Value> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc: Value = self.get_json(&url).await?;
        // A document that names another issuer is another provider's (OpenID Connect
        // Discovery 1.0, section 4.3).
        if doc.get("issuer").and_then(Value::as_str) != Some(&self.settings.issuer) {
            anyhow::bail!("{url} names another issuer");
        }
        Ok(doc)
    }

    /// Where the key set is: the setting, else the issuer's discovery document.
    async fn jwks_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.settings.jwks_url {
            return Ok(url.clone());
        }
        self.discovery()
            .await?
            .get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the discovery document names no jwks_uri"))
    }

    /// Fetches the key set now (unless another fetch just did, or did within
    /// [`MIN_REFRESH`]).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let _one = self.fetching.lock().await;
        if let Some(at) = self.keys.read().expect("not poisoned").fetched
            && at.elapsed() < MIN_REFRESH
        {
            return Ok(());
        }
        // Counted as a fetch even when it fails: a provider that is down is not asked more.
        self.keys.write().expect("not poisoned").fetched = Some(Instant::now());
        let url = self.jwks_url().await?;
        let set: JwkSet = self.get_json(&url).await?;
        let mut by_id = HashMap::new();
        let mut usable = Vec::new();
        for jwk in &set.keys {
            let (Some(alg), Ok(key)) = (algorithm(jwk), DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            let key = Arc::new(Key { key, alg });
            if let Some(kid) = &jwk.common.key_id {
                by_id.insert(kid.clone(), key.clone());
            }
            usable.push(key);
        }
        let only = (usable.len() == 1).then(|| usable[0].clone());
        tracing::info!(keys = usable.len(), %url, "identity provider's keys fetched");
        let mut keys = self.keys.write().expect("not poisoned");
        keys.by_id = by_id;
        keys.only = only;
        Ok(())
    }

    fn key_for(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        let keys = self.keys.read().expect("not poisoned");
        match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            None => keys.only.clone(),
        }
    }

    /// The caller a bearer token stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let Some(audience) = &self.settings.audience else {
            return Err(AuthFailure::Invalid("bearer tokens are not accepted here"));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((caller, exp)) = self.verified.get(&digest) {
            if exp + LEEWAY_SECONDS > now() {
                return Ok(caller);
            }
            self.verified.invalidate(&digest);
        }
        let claims = self.decode(token, audience).await?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let caller = self.caller(&claims, Via::Token);
        self.verified.insert(digest, (caller.clone(), exp));
        Ok(caller)
    }

    /// The claims of an ID token issued to the web sign-in's client `client_id` for the
    /// sign-in that sent `nonce`: checked as a bearer token is, and its `nonce` must match.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Value, AuthFailure> {
        let claims = self.decode(token, client_id).await?;
        let matches = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !matches {
            return Err(AuthFailure::Invalid("ID token is not for this sign-in"));
        }
        Ok(claims)
    }

    /// A token's claims, once its signature (by a key of the provider's, with that key's
    /// algorithm), issuer, audience and times are checked.
    async fn decode(&self, token: &str, audience: &str) -> Result<Value, AuthFailure> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthFailure::Invalid("malformed token"))?;
        let kid = header.kid.as_deref();
        let key = match self.key_for(kid) {
            Some(key) => key,
            None => {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot fetch the identity provider's keys");
                }
                self.key_for(kid)
                    .ok_or(AuthFailure::Invalid("token signed by an unknown key"))?
            }
        };
        if header.alg != key.alg {
            return Err(AuthFailure::Invalid("token algorithm is not its key's"));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthFailure::Invalid(match e.kind() {
                K::ExpiredSignature => "token expired",
                K::ImmatureSignature => "token not yet valid",
                K::InvalidIssuer => "token from another issuer",
                K::InvalidAudience => "token for another audience",
                K::InvalidSignature => "token signature does not verify",
                K::MissingRequiredClaim(_) => "token lacks a required claim",
                _ => "token refused",
            })
        })?;
        Ok(data.claims)
    }

    /// The caller the claims describe: `sub`, the client (`azp`, else `client_id`), and
    /// the scopes of the scope claim and of the roles the roles claim names.
    pub(crate) fn caller(&self, claims: &Value, via: Via) -> Caller {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let words = |name: &str| -> Vec<String> {
            match claims.get(name) {
                Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut scopes =
            Scopes::known(words(&self.settings.scope_claim).iter().map(String::as_str));
        if let Some(claim) = &self.settings.roles_claim {
            for role in words(claim) {
                for (name, granted) in &self.settings.role_scopes {
                    if *name == role {
                        scopes = scopes.union(*granted);
                    }
                }
            }
        }
        Caller {
            subject: text("sub").unwrap_or_default().into(),
            client: text("azp").or_else(|| text("client_id")).map(Into::into),
            via,
            scopes,
        }
    }
}
