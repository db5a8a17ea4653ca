//! Web sign-in: OpenID Connect's authorization code flow with PKCE against the provider that
//! discovery finds, and the server-side sessions it opens.
//!
//! - `begin`: a fresh `state`, `nonce` and PKCE verifier, kept in a short-lived cookie of
//!   the browser that asked (HttpOnly, SameSite=Lax, path `/auth/`), and the provider's
//!   authorization URL to send it to.
//! - `finish`: the provider sends the browser back with a code; the `state` it carries must
//!   be the cookie's (so a sign-in cannot be started by another site), the code is exchanged
//!   with the verifier and the client's secret, and the ID token is checked by the same
//!   verifier as bearer tokens (the provider's keys, the key's algorithm, `iss`, `aud` = our
//!   client, times) plus its `nonce`. Then a session: 256 random bits in the cookie, their
//!   SHA-256 in PostgreSQL, with the subject, name and scopes (the roles claim, mapped as for
//!   tokens) and an absolute expiry.
//! - Each request with the cookie finds its session (remembered for [`SESSION_CACHE_TTL`]);
//!   signing out deletes it. Sign-out is a POST that carries a token derived from the
//!   session's secret, so no other site can sign a user out.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthFailure;
use super::jwt::JwtVerifier;
use crate::adapters::postgres::pool::PgStore;
use crate::adapters::postgres::sessions::SessionRow;
use crate::domain::access::{Caller, Scopes, Via};

/// How long a session found in the database is trusted without asking again: the bound on
/// how late another replica learns of a sign-out (the one signed out on knows at once).
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(10);
/// How long a browser may take at the provider.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(600);
/// The session's cookie.
pub const SESSION_COOKIE: &str = "order_svc_session";
/// The cookie of a sign-in under way.
pub const PENDING_COOKIE: &str = "order_svc_sign_in";

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub client_id: String,
    /// Sent with HTTP Basic to the token endpoint; `None`: a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Where the provider sends browsers back; `None`: this request's own
    /// `<scheme>://<host>/auth/callback`.
    pub redirect_url: Option<String>,
    /// How long a session lasts, whatever is done with it.
    pub session_ttl: Duration,
    /// The scopes asked of the provider (OpenID scopes: which claims the ID token holds).
    pub scopes: String,
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: String,
    token: String,
    end_session: Option<String>,
}

/// A sign-in under way, as its cookie holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    next: String,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// What the pages call the user.
    pub name: Arc<str>,
    /// The sign-out form's token.
    pub csrf: Arc<str>,
}

/// Why a sign-in did not complete (said to the user; never a secret).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("this sign-in was not started here, or took too long: sign in again")]
    Stale,
    #[error("the identity provider refused the sign-in ({0})")]
    Refused(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the identity provider or the database cannot be reached: try again")]
    Unavailable,
}

/// The web sign-in of one client of one provider.
pub struct SignIn {
    settings: SignInSettings,
    verifier: Arc<JwtVerifier>,
    store: PgStore,
    http: reqwest::Client,
    endpoints: tokio::sync::OnceCell<Endpoints>,
    /// SHA-256 of a session's secret → the session, or `None` (none live).
    sessions: moka::future::Cache<[u8; 32], Option<Session>>,
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Where to go after signing in: a path of this service, never another site's address.
pub fn local_path(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic())
        && !next.starts_with("/auth/");
    if ok { next.to_owned() } else { "/".into() }
}

impl SignIn {
    pub fn new(
        settings: SignInSettings,
        verifier: Arc<JwtVerifier>,
        store: PgStore,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            settings,
            verifier,
            store,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            endpoints: tokio::sync::OnceCell::new(),
            sessions: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SESSION_CACHE_TTL)
                .build(),
        })
    }

    pub fn session_ttl(&self) -> Duration {
        self.settings.session_ttl
    }

    /// The redirect URI: the setting, else `base` (this request's scheme and host) with
    /// the callback's path.
    pub fn redirect_uri(&self, base: &str) -> String {
        self.settings
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("{base}/auth/callback"))
    }

    async fn endpoints(&self) -> Result<&Endpoints, AuthFailure> {
        self.endpoints
            .get_or_try_init(|| async {
                let doc = self.verifier.discovery().await?;
                let url = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
                Ok::<_, anyhow::Error>(Endpoints {
                    authorization: url("authorization_endpoint")
                        .ok_or_else(|| anyhow::anyhow!("no authorization_endpoint"))?,
                    token: url("token_endpoint")
                        .ok_or_else(|| anyhow::anyhow!("no token_endpoint"))?,
                    end_session: url("end_session_endpoint"),
                })
            })
            .await
            .map_err(|e| AuthFailure::Unavailable(format!("{e:#}")))
    }

    /// Starts a sign-in that returns to `next`: the provider's URL to send the browser to,
    /// and the value of the [`PENDING_COOKIE`] to set.
    pub async fn begin(
        &self,
        redirect_uri: String,
        next: &str,
    ) -> Result<(String, String), AuthFailure> {
        let endpoints = self.endpoints().await?;
        let pending = Pending {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            redirect_uri,
            next: local_path(next),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|_| AuthFailure::Unavailable("authorization_endpoint is no URL".into()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &pending.redirect_uri)
            .append_pair("scope", &self.settings.scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let cookie = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&pending).unwrap_or_default());
        Ok((url.into(), cookie))
    }

    /// Completes a sign-in: the provider's `code` and `state`, and the pending cookie. The
    /// new session's cookie value and where to go.
    pub async fn finish(
        &self,
        pending: Option<&str>,
        code: &str,
        state: &str,
    ) -> Result<(String, String), SignInError> {
        let pending: Pending = pending
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(SignInError::Stale)?;
        if !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(SignInError::Stale);
        }
        let endpoints = self
            .endpoints()
            .await
            .map_err(|_| SignInError::Unavailable)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &pending.redirect_uri)
            .append_pair("code_verifier", &pending.verifier)
            .append_pair("client_id", &self.settings.client_id)
            .finish();
        let mut request = self
            .http
            .post(&endpoints.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        if let Some(secret) = &self.settings.client_secret {
            // RFC 6749 2.3.1: both form-encoded before Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(&self.settings.client_id), Some(enc(secret)));
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot reach the identity provider's token endpoint");
            SignInError::Unavailable
        })?;
        let status = response.status();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error");
            // The provider's error code only: its description may quote what we sent.
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(SignInError::Refused(error));
        }
        let id_token =
            reply
                .get("id_token")
                .and_then(Value::as_str)
                .ok_or(SignInError::Invalid(
                    "the identity provider sent no ID token",
                ))?;
        let claims = self
            .verifier
            .verify_id_token(id_token, &self.settings.client_id, &pending.nonce)
            .await
            .map_err(|e| match e {
                AuthFailure::Invalid(why) => SignInError::Invalid(why),
                _ => SignInError::Unavailable,
            })?;
        let caller = self.verifier.caller(&claims, Via::Session);
        if caller.subject.is_empty() {
            return Err(SignInError::Invalid("the ID token names no subject"));
        }
        let text = |n: &str| {
            claims
                .get(n)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let name = text("preferred_username")
            .or_else(|| text("name"))
            .or_else(|| text("email"))
            .unwrap_or(&caller.subject);
        let ttl = chrono::Duration::from_std(self.settings.session_ttl)
            .unwrap_or(chrono::Duration::hours(8));
        let row = SessionRow {
            subject: caller.subject.to_string(),
            name: name.chars().take(128).collect(),
            client: self.settings.client_id.clone(),
            scopes: caller
                .scopes
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            expires_at: Utc::now() + ttl,
        };
        let secret = random_token();
        self.store
            .insert_session(&hash(&secret), &row)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot store a session");
                SignInError::Unavailable
            })?;
        tracing::info!(subject = %row.subject, scopes = %caller.scopes, "signed in");
        Ok((secret, pending.next))
    }

    /// The session a cookie stands for.
    pub async fn session(&self, cookie: &str) -> Result<Session, AuthFailure> {
        let key = hash(cookie);
        let store = self.store.clone();
        let client = self.settings.client_id.clone();
        let csrf = csrf_token(cookie);
        let found = self
            .sessions
            .try_get_with(key, async move {
                let row = store.live_session(&key).await?;
                Ok::<_, crate::domain::ports::StoreError>(row.map(|row| Session {
                    name: row.name.into(),
                    csrf: csrf.into(),
                    caller: Caller {
                        subject: row.subject.into(),
                        client: Some(client.into()),
                        via: Via::Session,
                        scopes: Scopes::known(row.scopes.iter().map(String::as_str)),
                    },
                }))
            })
            .await
            .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        found.ok_or(AuthFailure::Invalid("session expired or signed out"))
    }

    /// Ends the session a cookie stands for, here at once and on other replicas within
    /// [`SESSION_CACHE_TTL`]; the provider's sign-out address, when it has one.
    pub async fn end(&self, cookie: &str) -> Result<Option<String>, AuthFailure> {
        let key = hash(cookie);
        self.store
            .delete_session(&key)
            .await
            .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        self.sessions.invalidate(&key).await;
        Ok(self
            .endpoints()
            .await
            .ok()
            .and_then(|e| e.end_session.clone()))
    }
}

/// The sign-out form's token of the session whose cookie is `cookie`: derived from its
/// secret, so only a page of that session can hold it.
pub fn csrf_token(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"order-svc sign-out\0");
    h.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether a sign-out form's token is the session's.
pub fn csrf_matches(cookie: &str, token: &str) -> bool {
    bool::from(csrf_token(cookie).as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_a_path_of_ours_is_followed() {
        for ok in ["/", "/orders/abc", "/?q=x&before=y"] {
            assert_eq!(local_path(ok), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "",
            "/auth/callback?code=x",
            "/a b",
            "/\u{e9}",
        ] {
            assert_eq!(local_path(bad), "/", "{bad}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(600))), "/");
    }

    #[test]
    fn the_sign_out_token_is_the_sessions_own() {
        let (a, b) = (random_token(), random_token());
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert_ne!(csrf_token(&a), a, "the token is not the cookie");
    }
}
