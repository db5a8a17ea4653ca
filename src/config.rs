//! Settings the program runs on, checked once at start.
//!
//! clap parses single values (with the parsers below); what needs several values at once,
//! or knowledge of a URL's contents, is checked here before any work starts, so a bad
//! setting stops the program with a message naming the setting to fix.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use tokio_postgres::config::Host;

use crate::cli::GeneratorArgs;
use crate::generate::GenerateOptions;

/// A PostgreSQL URL that parsed, names exactly one database, and can be shown without its
/// password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
}

impl DatabaseUrl {
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// `host:port`, as people write it, for messages.
    pub fn host(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }
}

/// Never prints the password.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database {} at {}", self.dbname(), self.host())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("expected a URL such as postgres://user:password@host:5432/orders".into());
        }
        let mut config = tokio_postgres::Config::from_str(s)
            .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
        if config.get_dbname().is_none() {
            return Err("the URL names no database (add /orders at the end)".into());
        }
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if config.get_connect_timeout().is_none() {
            // Without it an unreachable host waits for the kernel's TCP timeout (minutes).
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        config.application_name("order-svc");
        Ok(Self { config })
    }
}

/// A positive, finite rate (orders per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        Ok(_) => Err("must be a number above 0 and at most 1000000".into()),
        Err(_) => Err("must be a number, such as 5 or 0.5".into()),
    }
}

/// A share from 0 to 1.
pub fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("must be a number from 0 to 1, such as 0.1".into()),
    }
}

impl GeneratorArgs {
    /// The generator's settings; draws and logs a seed when none was given.
    pub fn options(&self, allow_raw: bool) -> anyhow::Result<GenerateOptions> {
        if self.min_items > self.max_items {
            bail!(
                "--min-items (GENERATE_MIN_ITEMS) is {} but --max-items (GENERATE_MAX_ITEMS) is {}: \
                 the minimum must not exceed the maximum",
                self.min_items,
                self.max_items
            );
        }
        let seed = self.seed.unwrap_or_else(|| {
            let seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            tracing::info!(
                seed,
                "no --seed given; pass --seed {seed} to repeat this run"
            );
            seed
        });
        Ok(GenerateOptions {
            seed,
            invalid_rate: self.invalid_rate,
            min_items: usize::from(self.min_items),
            max_items: usize::from(self.max_items),
            max_message_bytes: self.limit.max_message_bytes as usize,
            allow_raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_display_hides_the_password() {
        let url: DatabaseUrl = "postgres://app:s3cret@db.example:6543/orders"
            .parse()
            .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("db.example:6543") && shown.contains("orders"),
            "{shown}"
        );
    }

    #[test]
    fn database_url_without_a_database_is_refused() {
        let err = "postgres://postgres@127.0.0.1:5432"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(err.contains("names no database"), "{err}");
        assert!("mysql://x@y/z".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn rates_and_shares_are_bounded() {
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(
            parse_rate("0").is_err() && parse_rate("-1").is_err() && parse_rate("inf").is_err()
        );
        assert_eq!(parse_share("0.1"), Ok(0.1));
        assert!(parse_share("1.01").is_err() && parse_share("x").is_err());
    }
}
