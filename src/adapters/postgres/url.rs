//! `DATABASE_URL`: a PostgreSQL URL read the way libpq reads it, TLS included, and shown
//! without its password.
//!
//! tokio-postgres understands `sslmode` only as `disable`, `prefer` or `require` and knows no
//! certificate files; libpq's `verify-ca`, `verify-full`, `sslrootcert`, `sslcert` and
//! `sslkey` are taken out of the URL here and become the TLS connector's settings. TLS goes
//! through native-tls, which is the system OpenSSL on Linux: the library rdkafka is built
//! with, so the program carries one TLS stack, and client keys load from PEM as they do for
//! libpq.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode as DriverSslMode};

/// libpq's `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, without checking its certificate (the default).
    Prefer,
    /// TLS or nothing; the certificate is checked against `sslrootcert` when one is given
    /// (as libpq does), not otherwise.
    Require,
    /// TLS with a certificate signed by a trusted CA, whatever host name it names.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            // libpq's `allow` tries plaintext first; we never prefer plaintext.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }
}

/// The TLS half of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tls {
    mode: SslMode,
    root_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// A PostgreSQL URL that parsed, names exactly one database, and can be shown without its
/// password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl DatabaseUrl {
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The same server, user and TLS settings, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// Whether the server is on this machine (a Unix socket, `localhost` or a loopback
    /// address): no network between us for anyone to stand in.
    pub fn is_local(&self) -> bool {
        self.config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
    }

    /// Whether TLS to this server checks the server's certificate.
    pub fn verifies_server(&self) -> bool {
        match self.tls.mode {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => self.tls.root_cert.is_some(),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }

    /// What the connection's security is, in words for the start-up log line.
    pub fn security(&self) -> &'static str {
        match (self.tls.mode, self.verifies_server()) {
            (SslMode::Disable, _) => "plaintext (sslmode=disable)",
            (SslMode::Prefer, _) => {
                "TLS if the server offers it, certificate not checked (sslmode=prefer)"
            }
            (SslMode::Require, false) => "TLS, certificate not checked (sslmode=require)",
            (SslMode::Require | SslMode::VerifyCa, true) => {
                "TLS, certificate checked against the CA, not the host name"
            }
            (SslMode::VerifyFull, _) => "TLS, certificate and host name checked (verify-full)",
            (SslMode::VerifyCa, false) => unreachable!("verify-ca always verifies"),
        }
    }

    /// Says at start how the connection is secured: loudly when nothing checks who answers
    /// on a network.
    pub fn log_security(&self) {
        if self.verifies_server() || self.is_local() {
            tracing::info!(database = %self, security = self.security(), "database connection");
        } else {
            tracing::warn!(database = %self, security = self.security(),
                "database connection not authenticated: anyone on the network path can answer for the server");
        }
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

    /// The TLS connector `sslmode` asks for, its files read now so that a missing or bad
    /// file stops the program at start, named.
    pub fn connector(&self) -> anyhow::Result<MakeTlsConnector> {
        let tls = &self.tls;
        let mut builder = TlsConnector::builder();
        let verify = match tls.mode {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => tls.root_cert.is_some(),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        };
        if !verify {
            builder.danger_accept_invalid_certs(true);
        } else if tls.mode != SslMode::VerifyFull {
            builder.danger_accept_invalid_hostnames(true);
        }
        if let Some(path) = &tls.root_cert {
            let pem = read("sslrootcert", path)?;
            // Only the given CA is trusted, as with libpq; without sslrootcert the system's
            // trust store is.
            builder.disable_built_in_roots(true);
            for cert in split_pem_certificates(&pem) {
                let cert = Certificate::from_pem(cert.as_bytes()).with_context(|| {
                    format!("sslrootcert {} holds no usable certificate", path.display())
                })?;
                builder.add_root_certificate(cert);
            }
        }
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let identity = Identity::from_pkcs8(&read("sslcert", cert)?, &read("sslkey", key)?)
                    .with_context(|| {
                        format!(
                            "sslcert {} and sslkey {} are not a PEM certificate and its \
                             PKCS#8 PEM key",
                            cert.display(),
                            key.display()
                        )
                    })?;
                builder.identity(identity);
            }
            (None, None) => {}
            _ => anyhow::bail!("DATABASE_URL names sslcert or sslkey without the other"),
        }
        let connector = builder
            .build()
            .context("cannot set up TLS for PostgreSQL")?;
        Ok(MakeTlsConnector::new(connector))
    }
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The certificates of a PEM bundle, one by one (native-tls takes one at a time).
fn split_pem_certificates(pem: &[u8]) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(end) = rest.find(END) {
        out.push(rest[..end + END.len()].trim_start().to_owned());
        rest = &rest[end + END.len()..];
    }
    if out.is_empty() {
        // Not PEM certificates: let native-tls say what it is not.
        out.push(text.into_owned());
    }
    out
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

/// Parses without ever quoting the input: it may hold a password.
impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("expected a URL such as postgres://user:password@host:5432/orders".into());
        }
        let mut url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        let mut tls = Tls {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
        };
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => tls.mode = value.parse()?,
                "sslrootcert" => tls.root_cert = Some(PathBuf::from(value.as_ref())),
                "sslcert" => tls.cert = Some(PathBuf::from(value.as_ref())),
                "sslkey" => tls.key = Some(PathBuf::from(value.as_ref())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut config = tokio_postgres::Config::from_str(url.as_str())
            .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
        if config.get_dbname().is_none() {
            return Err("the URL names no database (add /orders at the end)".into());
        }
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if config.get_connect_timeout().is_none() {
            // Without it an unreachable host waits for the kernel's TCP timeout (minutes).
            config.connect_timeout(Duration::from_secs(5));
        }
        config.ssl_mode(match tls.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        });
        config.application_name("order-svc");
        Ok(Self { config, tls })
    }
}

/// The URL as given with its password replaced by `****`, for `order-svc config`.
pub fn mask_password(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(not a URL; not shown)".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    // libpq takes `?password=` (and `sslpassword=`) as well as the userinfo.
    if url
        .query_pairs()
        .any(|(k, _)| k.to_ascii_lowercase().contains("password"))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.to_ascii_lowercase().contains("password") {
                    "****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_is_taken_from_the_url() {
        let url: DatabaseUrl =
            "postgres://app@db.example/orders?sslmode=verify-full&channel_binding=require"
                .parse()
                .unwrap();
        assert_eq!(
            url.config().get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert!(url.verifies_server() && !url.is_local());
        let local: DatabaseUrl = "postgres://app@[::1]:5432/orders".parse().unwrap();
        assert!(local.is_local() && !local.verifies_server());
    }

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
        assert_eq!(
            mask_password("postgres://app:s3cret@db.example:6543/orders?sslmode=require"),
            "postgres://app:****@db.example:6543/orders?sslmode=require"
        );
        for raw in [
            "postgres://app@db/orders?password=s3cret",
            "postgres://app@db/orders?sslmode=require&PassWord=s3cret",
            "postgres://app@db/orders?sslpassword=s3cret&password=s3cret",
        ] {
            let shown = mask_password(raw);
            assert!(
                !shown.contains("s3cret") && shown.contains("****"),
                "{shown}"
            );
        }
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
    fn libpq_tls_parameters_are_read_and_taken_out_of_the_driver_url() {
        let url: DatabaseUrl = "postgres://app:pw@db:5432/orders?sslmode=verify-full\
                                &sslrootcert=/ca.pem&application_name=x&sslcert=/c.pem&sslkey=/k.pem"
            .parse()
            .unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.config().get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(url.tls.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(url.tls.key.as_deref(), Some(Path::new("/k.pem")));
        let default: DatabaseUrl = "postgres://db/orders".parse().unwrap();
        assert_eq!(default.ssl_mode(), SslMode::Prefer);
        let err = "postgres://u:topsecret@db/orders?sslmode=verify"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(
            err.contains("sslmode `verify`") && !err.contains("topsecret"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let url: DatabaseUrl = "postgres://db/orders?sslmode=verify-full&sslrootcert=/no/such.pem"
            .parse()
            .unwrap();
        let err = format!("{:#}", url.connector().err().unwrap());
        assert!(err.contains("sslrootcert /no/such.pem"), "{err}");
    }
}
