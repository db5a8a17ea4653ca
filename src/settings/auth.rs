//! Who may come in: the access settings of `serve`, and the `keys` and `audit` commands'.

use anyhow::{Context, bail};

use crate::adapters::auth::{JwtSettings, RateSettings, SignInSettings};
use crate::adapters::postgres::url::DatabaseUrl;
use crate::cli::{AuditArgs, AuthArgs, KeysAction, KeysArgs};
use crate::domain::access::Scopes;
use crate::domain::guard::AuditQuery;
use crate::domain::links::{LinkKey, LinkSigner, MIN_KEY};

/// What `serve` accepts, checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The scopes of callers who present nothing; `None`: anonymous access off.
    pub anonymous: Option<Scopes>,
    pub api_keys: bool,
    /// The identity provider: bearer tokens (with an audience), web sign-in, or both.
    pub jwt: Option<JwtSettings>,
    pub sign_in: Option<SignInSettings>,
    /// Customer links: their signer and public address (`None`: the request's).
    pub links: Option<(LinkSigner, Option<String>)>,
    /// The audit hashes' key; `None`: a random one for this process.
    pub audit_hash_key: Option<String>,
    pub rate: RateSettings,
}

/// Shortest AUDIT_HASH_KEY taken.
const MIN_AUDIT_KEY: usize = 32;

/// An identity provider's address: https, or http to a loopback host (a provider on the
/// same machine, as in tests and `just up`).
fn provider_url(setting: &str, raw: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(raw).with_context(|| format!("{setting} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            bail!("{setting} must be an https URL (http only to a loopback host), not {other}:")
        }
    }
    // Kept as written: it is what `iss` must equal, trailing slash and all.
    Ok(raw.to_owned())
}

/// `id=secret,id=secret` → the link keys. Never echoes a secret.
fn link_keys(raw: &str) -> anyhow::Result<Vec<LinkKey>> {
    let mut keys: Vec<LinkKey> = Vec::new();
    for (n, pair) in raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let Some((id, secret)) = pair.split_once('=') else {
            bail!("LINK_KEYS: key {} is not id=secret", n + 1);
        };
        let id = id.trim();
        if !(1..=16).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!(
                "LINK_KEYS: key {}'s id must be 1 to 16 letters or digits",
                n + 1
            );
        }
        if secret.chars().count() < MIN_KEY {
            bail!("LINK_KEYS: key {id}'s secret must be at least {MIN_KEY} characters");
        }
        if keys.iter().any(|k| k.id == id) {
            bail!("LINK_KEYS: key id {id} appears twice");
        }
        keys.push(LinkKey {
            id: id.to_owned(),
            secret: secret.as_bytes().to_vec(),
        });
    }
    Ok(keys)
}

/// `role=scope,scope;role=scope` → the pairs.
fn role_scopes(raw: &str) -> anyhow::Result<Vec<(String, Scopes)>> {
    raw.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|rule| {
            let (role, scopes) = rule.split_once('=').with_context(
                || "AUTH_ROLE_SCOPES: each rule is role=scope,scope (rules separated by ;)",
            )?;
            let scopes = Scopes::parse_list(scopes)
                .map_err(|why| anyhow::anyhow!("AUTH_ROLE_SCOPES, role {}: {why}", role.trim()))?;
            Ok((role.trim().to_owned(), scopes))
        })
        .collect()
}

/// The settings with every optional value that is set to nothing taken as unset, as an
/// environment variable set to nothing usually means (compose's `${AUTH_ISSUER:-}`).
fn unset_if_empty(args: &AuthArgs) -> AuthArgs {
    let mut args = args.clone();
    for value in [
        &mut args.auth_issuer,
        &mut args.auth_audience,
        &mut args.auth_jwks_url,
        &mut args.auth_roles_claim,
        &mut args.auth_role_scopes,
        &mut args.auth_client_id,
        &mut args.auth_client_secret,
        &mut args.auth_redirect_url,
        &mut args.link_keys,
        &mut args.link_base_url,
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    }
    args
}

impl AuthSettings {
    /// `metrics_apart`: `/metrics` has an address of its own (METRICS_ADDR).
    pub fn new(args: &AuthArgs, metrics_apart: bool) -> anyhow::Result<Self> {
        let args = &unset_if_empty(args);
        let anonymous = args
            .auth_anonymous_scopes
            .as_deref()
            // Empty is unset, as for the others.
            .filter(|list| !list.trim().is_empty())
            .map(|list| {
                Scopes::parse_list(list)
                    .map_err(|why| anyhow::anyhow!("AUTH_ANONYMOUS_SCOPES: {why}"))
            })
            .transpose()?;
        let jwt = match &args.auth_issuer {
            None => {
                if args.auth_audience.is_some()
                    || args.auth_client_id.is_some()
                    || args.auth_jwks_url.is_some()
                    || args.auth_role_scopes.is_some()
                {
                    bail!(
                        "AUTH_AUDIENCE, AUTH_CLIENT_ID, AUTH_JWKS_URL and AUTH_ROLE_SCOPES need \
                         AUTH_ISSUER (the identity provider)"
                    );
                }
                None
            }
            Some(_) if args.auth_audience.is_none() && args.auth_client_id.is_none() => {
                bail!(
                    "AUTH_ISSUER needs AUTH_AUDIENCE (bearer tokens), AUTH_CLIENT_ID (web \
                     sign-in), or both"
                )
            }
            Some(issuer) => Some(JwtSettings {
                issuer: provider_url("AUTH_ISSUER", issuer)?,
                audience: args.auth_audience.clone(),
                jwks_url: args
                    .auth_jwks_url
                    .as_deref()
                    .map(|u| provider_url("AUTH_JWKS_URL", u))
                    .transpose()?,
                scope_claim: args.auth_scope_claim.clone(),
                roles_claim: args.auth_roles_claim.clone(),
                role_scopes: args
                    .auth_role_scopes
                    .as_deref()
                    .map(role_scopes)
                    .transpose()?
                    .unwrap_or_default(),
            }),
        };
        let sign_in = match &args.auth_client_id {
            None => {
                if args.auth_client_secret.is_some() || args.auth_redirect_url.is_some() {
                    bail!("AUTH_CLIENT_SECRET and AUTH_REDIRECT_URL need AUTH_CLIENT_ID");
                }
                None
            }
            Some(client_id) => {
                let redirect_url = args
                    .auth_redirect_url
                    .as_deref()
                    .map(|raw| {
                        let url = url::Url::parse(raw).context("AUTH_REDIRECT_URL is not a URL")?;
                        if !matches!(url.scheme(), "http" | "https")
                            || url.path() != "/auth/callback"
                        {
                            bail!(
                                "AUTH_REDIRECT_URL must be this service's \
                                 http(s)://<host>/auth/callback"
                            );
                        }
                        Ok(raw.to_owned())
                    })
                    .transpose()?;
                if !args
                    .auth_sign_in_scopes
                    .split_whitespace()
                    .any(|s| s == "openid")
                {
                    bail!("AUTH_SIGN_IN_SCOPES must include openid");
                }
                Some(SignInSettings {
                    client_id: client_id.clone(),
                    client_secret: args.auth_client_secret.clone(),
                    redirect_url,
                    session_ttl: std::time::Duration::from_secs(args.auth_session_seconds),
                    scopes: args.auth_sign_in_scopes.clone(),
                })
            }
        };
        let links = args
            .link_keys
            .as_deref()
            .map(|raw| {
                let signer = LinkSigner::new(link_keys(raw)?, args.link_ttl_seconds as i64)
                    .context("LINK_KEYS names no key")?;
                let base = args
                    .link_base_url
                    .as_deref()
                    .map(|u| {
                        let url = url::Url::parse(u).context("LINK_BASE_URL is not a URL")?;
                        if !matches!(url.scheme(), "http" | "https") {
                            bail!("LINK_BASE_URL must be http(s)://<host>");
                        }
                        Ok(u.trim_end_matches('/').to_owned())
                    })
                    .transpose()?;
                Ok::<_, anyhow::Error>((signer, base))
            })
            .transpose()?;
        if links.is_none() && args.link_base_url.is_some() {
            bail!("LINK_BASE_URL needs LINK_KEYS");
        }
        if anonymous.is_none() && !args.auth_api_keys && jwt.is_none() {
            bail!(
                "no authentication is configured: set AUTH_ISSUER with AUTH_AUDIENCE (bearer \
                 tokens of your OpenID provider) and/or AUTH_CLIENT_ID (web sign-in), or \
                 AUTH_API_KEYS=true (keys made by \
                 `order-svc keys create`); or, where the port is private, allow anonymous \
                 access explicitly with AUTH_ANONYMOUS_SCOPES (such as orders:read, or all)"
            );
        }
        if anonymous.is_none() && !metrics_apart {
            bail!(
                "authentication is on, so /metrics is not served with the API: set \
                 METRICS_ADDR (such as 0.0.0.0:9464) and let only Prometheus reach it"
            );
        }
        if let Some(key) = &args.audit_hash_key
            && key.chars().count() < MIN_AUDIT_KEY
        {
            bail!("AUDIT_HASH_KEY must be at least {MIN_AUDIT_KEY} characters");
        }
        Ok(Self {
            anonymous,
            api_keys: args.auth_api_keys,
            jwt,
            sign_in,
            links,
            audit_hash_key: args.audit_hash_key.clone(),
            rate: RateSettings {
                lookups_per_second: args.rate_lookups_per_second,
                searches_per_second: args.rate_searches_per_second,
            },
        })
    }
}

/// `order-svc keys`.
#[derive(Debug)]
pub struct KeysSettings {
    pub url: DatabaseUrl,
    pub action: KeysCommand,
}

#[derive(Debug)]
pub enum KeysCommand {
    Create { name: String, scopes: Scopes },
    List,
    Revoke { name: String },
}

fn key_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("--name must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

impl KeysSettings {
    pub fn new(args: KeysArgs) -> anyhow::Result<Self> {
        let action = match args.action {
            KeysAction::Create { name, scopes } => {
                key_name(&name)?;
                let scopes = Scopes::parse_list(&scopes)
                    .map_err(|why| anyhow::anyhow!("--scopes: {why}"))?;
                if scopes.is_empty() {
                    bail!("--scopes: name at least one scope");
                }
                KeysCommand::Create { name, scopes }
            }
            KeysAction::List => KeysCommand::List,
            KeysAction::Revoke { name } => {
                key_name(&name)?;
                KeysCommand::Revoke { name }
            }
        };
        Ok(Self {
            url: super::database_url(&args.database)?,
            action,
        })
    }
}

/// `order-svc audit`.
#[derive(Debug)]
pub struct AuditSettings {
    pub url: DatabaseUrl,
    pub query: AuditQuery,
    pub purge_before: Option<chrono::DateTime<chrono::Utc>>,
}

impl AuditSettings {
    pub fn new(args: AuditArgs) -> anyhow::Result<Self> {
        Ok(Self {
            url: super::database_url(&args.database)?,
            query: AuditQuery {
                subject: args.subject,
                since: args.since,
                before: None,
                limit: args.limit as usize,
            },
            purge_before: args.purge_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::domain::access::Scope;

    fn auth(args: &[&str]) -> anyhow::Result<AuthSettings> {
        let mut argv = vec!["order-svc", "serve"];
        argv.extend_from_slice(args);
        let Command::Serve(serve) = Cli::try_parse_from(argv)?.command else {
            unreachable!()
        };
        AuthSettings::new(&serve.auth, serve.metrics_addr.is_some())
    }

    #[test]
    fn serve_needs_a_way_in_or_an_explicit_choice_of_anonymous_access() {
        let e = auth(&[]).unwrap_err().to_string();
        assert!(
            e.contains("AUTH_ANONYMOUS_SCOPES") && e.contains("AUTH_ISSUER"),
            "{e}"
        );
        let open = auth(&["--auth-anonymous-scopes", "orders:read"]).unwrap();
        assert_eq!(open.anonymous, Some(Scope::OrdersRead.into()));
        let e = auth(&["--auth-api-keys", "true"]).unwrap_err().to_string();
        assert!(e.contains("METRICS_ADDR"), "{e}");
        let keys = auth(&["--auth-api-keys", "true", "--metrics-addr", "127.0.0.1:0"]).unwrap();
        assert!(keys.api_keys && keys.anonymous.is_none());
    }

    #[test]
    fn web_sign_in_needs_the_provider_and_says_what_is_missing() {
        let base = ["--metrics-addr", "127.0.0.1:0"];
        let with = |more: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(more);
            auth(&args)
        };
        let e = with(&["--auth-client-id", "order-svc"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUTH_ISSUER"), "{e}");
        let signing_in = with(&[
            "--auth-issuer",
            "https://id.example/realms/shop",
            "--auth-client-id",
            "order-svc",
            "--auth-client-secret",
            "s3cret-value",
        ])
        .unwrap();
        let sign_in = signing_in.sign_in.unwrap();
        assert_eq!(sign_in.client_secret.as_deref(), Some("s3cret-value"));
        assert_eq!(
            signing_in.jwt.unwrap().audience,
            None,
            "no bearer tokens asked"
        );
        let e = with(&[
            "--auth-issuer",
            "https://id.example",
            "--auth-client-id",
            "c",
            "--auth-redirect-url",
            "https://evil.example/elsewhere",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("AUTH_REDIRECT_URL"), "{e}");
        let e = with(&[
            "--auth-client-secret",
            "s3cret-value",
            "--auth-api-keys",
            "true",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("AUTH_CLIENT_ID") && !e.contains("s3cret"), "{e}");
        // Set to nothing (compose's `${AUTH_ISSUER:-}`) is unset.
        let keys = with(&[
            "--auth-api-keys",
            "true",
            "--auth-issuer",
            "",
            "--auth-client-id",
            " ",
            "--auth-client-secret",
            "",
        ])
        .unwrap();
        assert!(keys.jwt.is_none() && keys.sign_in.is_none());
    }

    #[test]
    fn token_settings_are_checked_together() {
        let base = ["--metrics-addr", "127.0.0.1:0"];
        let with = |more: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(more);
            auth(&args)
        };
        assert!(
            with(&["--auth-issuer", "https://id.example"]).is_err(),
            "no audience"
        );
        let e = with(&["--auth-issuer", "http://id.example", "--auth-audience", "a"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("https"), "{e}");
        let jwt = with(&[
            "--auth-issuer",
            "http://127.0.0.1:3000/",
            "--auth-audience",
            "orders",
            "--auth-roles-claim",
            "groups",
            "--auth-role-scopes",
            "support=orders:read,pii:read; viewer=orders:read",
        ])
        .unwrap()
        .jwt
        .unwrap();
        assert_eq!(jwt.issuer, "http://127.0.0.1:3000/", "what iss must equal");
        assert_eq!(jwt.role_scopes.len(), 2);
        assert!(jwt.role_scopes[0].1.has(Scope::PiiRead));
        let e = with(&[
            "--auth-issuer",
            "https://id.example",
            "--auth-audience",
            "a",
            "--auth-role-scopes",
            "support=orders:write",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("orders:write"), "{e}");
        let e = with(&["--auth-api-keys", "true", "--audit-hash-key", "short"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUDIT_HASH_KEY") && !e.contains("short"), "{e}");
    }
}
