//! Authentication: turns what a request presents (`Authorization: Bearer` with a JWT of
//! the identity provider or one of our API keys, the cookie of a web sign-in, or nothing
//! where the operator allowed anonymous access) into the domain's [`Caller`]. What the caller may do is the domain's
//! to decide ([`crate::domain::guard`]).
//!
//! Rate limits are per caller too: a budget for lookups and one for searches, per subject
//! (per client address for anonymous callers).

pub mod jwt;
pub mod keys;
pub mod session;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::access::{Caller, Scopes};

pub use jwt::{JwtSettings, JwtVerifier};
pub use keys::KeyVerifier;
pub use session::{Session, SignIn, SignInSettings};

/// Why a request has no caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Nothing presented, and anonymous access is off.
    #[error("sign in or present a bearer token or API key")]
    Missing,
    /// What was presented does not prove anything; the text says why (never the token).
    #[error("{0}")]
    Invalid(&'static str),
    /// What is needed to check it cannot be reached (the database, the provider).
    #[error("credentials cannot be checked right now")]
    Unavailable(String),
}

/// Every way in that the operator configured.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// The scopes of callers who present nothing, when anonymous access is on.
    pub anonymous: Option<Scopes>,
    pub keys: Option<KeyVerifier>,
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Web sign-in at the identity provider, and its sessions.
    pub sign_in: Option<Arc<SignIn>>,
}

impl Authenticator {
    /// Whether nothing at all is asked of callers (the pages say so).
    pub fn is_open(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The caller behind an `Authorization` header's value, else a session cookie's (a
    /// header wins: a program's request is its token's, whatever cookies it carries).
    /// With neither, the anonymous caller if there is one. A session that has ended counts
    /// as no cookie where anonymous access is on.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        session: Option<&str>,
    ) -> Result<(Caller, Option<Session>), AuthFailure> {
        let Some(value) = authorization else {
            let anonymous = || {
                self.anonymous
                    .map(|scopes| (Caller::anonymous(scopes), None))
                    .ok_or(AuthFailure::Missing)
            };
            return match (session, &self.sign_in) {
                (Some(cookie), Some(sign_in)) => match sign_in.session(cookie).await {
                    Ok(s) => Ok((s.caller.clone(), Some(s))),
                    Err(AuthFailure::Invalid(_)) if self.anonymous.is_some() => anonymous(),
                    Err(e) => Err(e),
                },
                _ => anonymous(),
            };
        };
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Invalid(
                "the Authorization header must be Bearer <token>",
            ))?;
        let caller = if keys::is_key(token) {
            match &self.keys {
                Some(keys) => keys.verify(token).await,
                None => Err(AuthFailure::Invalid("API keys are not accepted here")),
            }
        } else {
            match &self.jwt {
                Some(jwt) => jwt.verify(token).await,
                None => Err(AuthFailure::Invalid("bearer tokens are not accepted here")),
            }
        };
        caller.map(|c| (c, None))
    }
}

/// Requests per second each caller may make, by budget; 0 turns a budget off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    pub lookups_per_second: u32,
    pub searches_per_second: u32,
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// One order by uid.
    Lookup,
    /// Lists, searches, rejections, the audit trail.
    Search,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Search => "search",
        }
    }
}

/// Whom a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Subject(String),
    Address(Option<IpAddr>),
}

impl Principal {
    /// The caller's subject, or its address when it is anonymous.
    pub fn of(caller: &Caller, peer: Option<IpAddr>) -> Self {
        match caller.via {
            crate::domain::access::Via::Anonymous => Self::Address(peer),
            _ => Self::Subject(format!("{}:{}", caller.via.as_str(), caller.subject)),
        }
    }
}

/// Failed credentials per second each client address may present (a burst of twice as
/// many) before it is refused without checking, while budgets are on: each check of an API
/// key not seen before costs a database read, so guessing must not be free.
pub const FAILURES_PER_SECOND: u32 = 10;

/// The two budgets, each a token bucket per principal (a burst of twice the rate), and the
/// budget of failed credentials per client address.
pub struct RateLimits {
    lookups: Option<DefaultKeyedRateLimiter<Principal>>,
    searches: Option<DefaultKeyedRateLimiter<Principal>>,
    failures: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    /// Addresses over their failures' budget, until when.
    blocked: moka::sync::Cache<Option<IpAddr>, std::time::Instant>,
}

fn limiter(per_second: u32) -> Option<DefaultKeyedRateLimiter<Principal>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl RateLimits {
    pub fn new(settings: RateSettings) -> Self {
        let failures = (settings.lookups_per_second > 0 || settings.searches_per_second > 0)
            .then(|| NonZeroU32::new(FAILURES_PER_SECOND))
            .flatten()
            .map(|rate| {
                let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
            });
        Self {
            lookups: limiter(settings.lookups_per_second),
            searches: limiter(settings.searches_per_second),
            failures,
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// `Err(wait)` when `peer` presented too many failed credentials lately: refused before
    /// anything it presents is checked.
    pub fn check_blocked(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        // Budgets off (benchmarks): no lookup on every request.
        if self.failures.is_none() {
            return Ok(());
        }
        match self.blocked.get(&peer) {
            Some(until) if until > std::time::Instant::now() => {
                Err(until - std::time::Instant::now())
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed credential of `peer`'s; past the budget, `peer` is blocked until its
    /// bucket has room again.
    pub fn failed(&self, peer: Option<IpAddr>) {
        if let Some(failures) = &self.failures
            && let Err(not_until) = failures.check_key(&peer)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked.insert(
                peer,
                std::time::Instant::now() + wait.max(Duration::from_secs(1)),
            );
        }
    }

    /// `Ok` when `who` may go on, else how long until it may. `who` is asked only when the
    /// budget is on (building it costs an allocation per request).
    pub fn check(&self, budget: Budget, who: impl FnOnce() -> Principal) -> Result<(), Duration> {
        let limiter = match budget {
            Budget::Lookup => &self.lookups,
            Budget::Search => &self.searches,
        };
        match limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(&who())
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Forgets principals whose buckets are full again (bounds the memory they take).
    pub fn forget_idle(&self) {
        for l in [&self.lookups, &self.searches].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.failures {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Scope;

    #[tokio::test]
    async fn no_credential_is_refused_unless_anonymous_access_is_on() {
        let closed = Authenticator::default();
        assert_eq!(
            closed.authenticate(None, None).await.unwrap_err(),
            AuthFailure::Missing
        );
        let open = Authenticator {
            anonymous: Some(Scope::OrdersRead.into()),
            ..Authenticator::default()
        };
        let (caller, _) = open.authenticate(None, None).await.unwrap();
        assert!(caller.may(Scope::OrdersRead) && !caller.may(Scope::PiiRead));
        for header in ["Basic dXNlcjpwdw==", "Bearer ", "Bearer", "token"] {
            assert!(
                matches!(
                    open.authenticate(Some(header), None).await,
                    Err(AuthFailure::Invalid(_))
                ),
                "{header}"
            );
        }
        assert_eq!(
            open.authenticate(Some("Bearer eyJ.x.y"), None)
                .await
                .unwrap_err(),
            AuthFailure::Invalid("bearer tokens are not accepted here")
        );
    }

    #[test]
    fn an_address_presenting_failed_credentials_is_stopped_and_others_are_not() {
        let limits = RateLimits::new(RateSettings {
            lookups_per_second: 100,
            searches_per_second: 10,
        });
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        for _ in 0..2 * FAILURES_PER_SECOND {
            assert!(limits.check_blocked(a).is_ok());
            limits.failed(a);
        }
        limits.failed(a);
        let wait = limits.check_blocked(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check_blocked(b).is_ok());
        let off = RateLimits::new(RateSettings {
            lookups_per_second: 0,
            searches_per_second: 0,
        });
        for _ in 0..100 {
            off.failed(a);
        }
        assert!(off.check_blocked(a).is_ok(), "budgets off: no blocking");
    }

    #[test]
    fn one_callers_budget_is_not_anothers() {
        let limits = RateLimits::new(RateSettings {
            lookups_per_second: 1,
            searches_per_second: 0,
        });
        let a = Principal::Subject("a".into());
        let b = Principal::Subject("b".into());
        assert!(limits.check(Budget::Lookup, || a.clone()).is_ok());
        assert!(
            limits.check(Budget::Lookup, || a.clone()).is_ok(),
            "a burst of 2"
        );
        let wait = limits.check(Budget::Lookup, || a.clone()).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check(Budget::Lookup, || b.clone()).is_ok());
        for _ in 0..100 {
            assert!(
                limits.check(Budget::Search, || a.clone()).is_ok(),
                "0: no budget"
            );
        }
    }
}
