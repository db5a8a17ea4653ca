//! The settings the program runs on, built once at start from the parsed arguments, with
//! every check that needs more than one value (or a file, or a URL's contents) and every
//! unit conversion. A bad setting stops the program here, named, before any work starts.
//!
//! [`sources`] reads the flags, the environment, the secrets' files and the settings file;
//! this module turns what they gave into one typed value per command.

pub mod auth;
pub mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::CommandFactory;

use crate::adapters::kafka::Connection;
use crate::adapters::kafka::consumer::ConsumerSettings;
use crate::adapters::postgres::url::{DatabaseUrl, SslMode};
use crate::cli::{
    Cli, Command, DatabaseArgs, DeadLetterTopicArgs, EndpointIdentification, GenerateArgs,
    GeneratorArgs, KafkaArgs, LogFormat, MigrateArgs, OutputFormat, ProduceArgs, RedriveArgs, Role,
    SaslMechanism, ServeArgs,
};
use crate::domain::ingest::IngestPolicy;
use crate::generate::GenerateOptions;
pub use auth::{AuditSettings, AuthSettings, KeysCommand, KeysSettings};
pub use sources::{ParseError, Parsed, Property, parse};

/// One command, ready to run.
// Built once per process: boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Settings {
    Serve(ServeSettings),
    Produce(ProduceSettings),
    Redrive(RedriveSettings),
    Migrate(MigrateSettings),
    Generate(GenerateSettings),
    /// `order-svc config`, `completions`, `man`: the text to print.
    Show(String),
    Healthcheck(HealthcheckSettings),
    Keys(KeysSettings),
    Audit(AuditSettings),
}

/// `order-svc healthcheck`: which endpoint of which address to ask, and for how long.
#[derive(Debug, Clone)]
pub struct HealthcheckSettings {
    pub addr: std::net::SocketAddr,
    pub path: &'static str,
    pub timeout: Duration,
}

impl HealthcheckSettings {
    fn new(args: crate::cli::HealthcheckArgs) -> Self {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut addr = args.http_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Self {
            addr,
            path: if args.ready { "/readyz" } else { "/healthz" },
            timeout: Duration::from_millis(args.timeout_ms),
        }
    }
}

/// What the command line, the environment and the settings file say, checked.
#[derive(Debug)]
pub struct Invocation {
    pub log_format: LogFormat,
    pub settings: Settings,
}

impl Invocation {
    pub fn new(parsed: Parsed) -> anyhow::Result<Self> {
        let Parsed {
            cli,
            kafka_properties,
        } = parsed;
        let Cli {
            log_format,
            config,
            command,
        } = cli;
        let settings = match command {
            Command::Serve(args) => Settings::Serve(ServeSettings::new(args, &kafka_properties)?),
            Command::Produce(args) => {
                Settings::Produce(ProduceSettings::new(args, &kafka_properties)?)
            }
            Command::Redrive(args) => {
                Settings::Redrive(RedriveSettings::new(args, &kafka_properties)?)
            }
            Command::Migrate(args) => Settings::Migrate(MigrateSettings::new(args)?),
            Command::Generate(args) => Settings::Generate(GenerateSettings::new(args)?),
            Command::Config(args) => {
                Settings::Show(sources::describe(config.as_deref(), &args.command)?)
            }
            Command::Healthcheck(args) => Settings::Healthcheck(HealthcheckSettings::new(args)),
            Command::Keys(args) => Settings::Keys(KeysSettings::new(args)?),
            Command::Audit(args) => Settings::Audit(AuditSettings::new(args)?),
            Command::Completions(args) => {
                let mut out = Vec::new();
                clap_complete::generate(args.shell, &mut Cli::command(), "order-svc", &mut out);
                Settings::Show(String::from_utf8(out).context("a completion script is text")?)
            }
            Command::Man => {
                let mut out = Vec::new();
                clap_mangen::Man::new(Cli::command())
                    .render(&mut out)
                    .context("cannot render the manual page")?;
                Settings::Show(String::from_utf8(out).context("a manual page is text")?)
            }
        };
        Ok(Self {
            log_format,
            settings,
        })
    }
}

#[derive(Debug)]
pub struct ServeSettings {
    pub role: Role,
    pub http: HttpSettings,
    pub postgres: PostgresSettings,
    pub kafka: KafkaSettings,
    pub cache: CacheSettings,
    pub ingest: IngestSettings,
    pub auth: AuthSettings,
}

#[derive(Debug)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub workers: usize,
    /// `X-Cache` on lookups.
    pub debug_headers: bool,
    /// Peers whose request ids and trace context are taken.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The benchmark's fixed body (`bench-baseline` builds only).
    pub bench_fixed_bytes: Option<usize>,
}

#[derive(Debug)]
pub struct PostgresSettings {
    pub url: DatabaseUrl,
    /// Connections of the lookup pool.
    pub lookup_pool: usize,
    /// Connections of the ingest pool: one per batch in flight, and one for the dead-letter
    /// ledger.
    pub ingest_pool: usize,
    pub statement_timeout: Duration,
}

#[derive(Debug)]
pub struct KafkaSettings {
    pub connection: Connection,
    pub topic: String,
    /// Of the topics created when missing.
    pub partitions: i32,
}

#[derive(Debug)]
pub struct CacheSettings {
    /// 0 when this process serves no lookups.
    pub max_bytes: u64,
    pub preload: usize,
}

#[derive(Debug)]
pub struct IngestSettings {
    pub consumer: ConsumerSettings,
    pub dlq_topic: String,
    pub policy: IngestPolicy,
}

impl ServeSettings {
    pub fn new(args: ServeArgs, properties: &[Property]) -> anyhow::Result<Self> {
        let kafka = KafkaSettings::new(&args.kafka, properties)?;
        let dlq_topic = dead_letter_topic(&args.dlq, &kafka)?;
        if args.metrics_addr == Some(args.http_addr) && args.http_addr.port() != 0 {
            bail!(
                "METRICS_ADDR is HTTP_ADDR ({}): leave METRICS_ADDR unset to serve /metrics \
                 with the API, or give it an address of its own",
                args.http_addr
            );
        }
        let serves_api = args.role != Role::Ingest;
        let auth = AuthSettings::new(&args.auth, args.metrics_addr.is_some())?;
        let parallel = usize::from(args.ingest_parallel_batches);
        let consumer = ConsumerSettings {
            kafka: kafka.connection.clone(),
            topic: kafka.topic.clone(),
            group_id: args.kafka_group_id,
            batch_max: args.ingest_batch_max as usize,
            batch_linger: Duration::from_millis(args.ingest_batch_linger_ms),
            parallel_batches: parallel,
        };
        #[cfg(feature = "bench-baseline")]
        let bench_fixed_bytes = args.http_bench_fixed_bytes;
        #[cfg(not(feature = "bench-baseline"))]
        let bench_fixed_bytes = None;
        Ok(Self {
            role: args.role,
            http: HttpSettings {
                addr: args.http_addr,
                metrics_addr: args.metrics_addr,
                workers: args.http_workers.map_or_else(
                    || std::thread::available_parallelism().map_or(2, |n| n.get()),
                    usize::from,
                ),
                debug_headers: args.http_debug_headers,
                trusted_proxies: args.http_trusted_proxies.clone(),
                bench_fixed_bytes,
            },
            postgres: PostgresSettings {
                url: database_url(&args.database)?,
                lookup_pool: usize::from(args.database_pool_size),
                ingest_pool: parallel + 1,
                statement_timeout: Duration::from_millis(args.database_statement_timeout_ms),
            },
            kafka,
            cache: CacheSettings {
                max_bytes: if serves_api { args.cache_max_bytes } else { 0 },
                preload: args.cache_preload,
            },
            ingest: IngestSettings {
                consumer,
                dlq_topic,
                policy: IngestPolicy {
                    max_message_bytes: args.limit.max_message_bytes as usize,
                    consistency: args.validation_consistency,
                },
            },
            auth,
        })
    }
}

/// Parses `DATABASE_URL` without ever echoing it: it may hold a password.
pub(crate) fn database_url(args: &DatabaseArgs) -> anyhow::Result<DatabaseUrl> {
    let url: DatabaseUrl = args
        .database_url
        .parse()
        .map_err(|why| anyhow::anyhow!("DATABASE_URL (--database-url): {why}"))?;
    // Read the TLS files now: a missing CA file is a setting to fix, not an outage.
    url.connector().context("DATABASE_URL (--database-url)")?;
    let prefer_or_require = matches!(url.ssl_mode(), SslMode::Prefer | SslMode::Require);
    if prefer_or_require
        && !url.verifies_server()
        && !url.is_local()
        && !args.database_allow_unverified_tls
    {
        bail!(
            "DATABASE_URL: {} to {}, which is not on this machine: anyone on the way can \
             answer for the server. Use sslmode=verify-full with sslrootcert=<the server's \
             CA>, or sslmode=disable on a network you trust, or accept it knowingly with \
             DATABASE_ALLOW_UNVERIFIED_TLS=true",
            url.security(),
            url.host()
        );
    }
    Ok(url)
}

impl KafkaSettings {
    pub fn new(args: &KafkaArgs, properties: &[Property]) -> anyhow::Result<Self> {
        let protocol = args.kafka_security_protocol;
        let mut named: Vec<(&str, String, &str)> = Vec::new();
        let mut set = |property: &'static str, value: String, setting: &'static str| {
            named.push((property, value, setting));
        };
        set(
            "security.protocol",
            name_of(protocol),
            "KAFKA_SECURITY_PROTOCOL",
        );

        let sasl = [
            (
                "KAFKA_SASL_MECHANISM",
                args.kafka_sasl_mechanism.map(mechanism),
            ),
            ("KAFKA_SASL_USERNAME", args.kafka_sasl_username.clone()),
            ("KAFKA_SASL_PASSWORD", args.kafka_sasl_password.clone()),
        ];
        if protocol.uses_sasl() {
            let missing: Vec<&str> = sasl
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "KAFKA_SECURITY_PROTOCOL is {}: set {}",
                    name_of(protocol),
                    missing.join(", ")
                );
            }
            let [(_, Some(m)), (_, Some(user)), (_, Some(password))] = sasl else {
                unreachable!("checked above")
            };
            set("sasl.mechanism", m, "KAFKA_SASL_MECHANISM");
            set("sasl.username", user, "KAFKA_SASL_USERNAME");
            set("sasl.password", password, "KAFKA_SASL_PASSWORD");
        } else if let Some((setting, _)) = sasl.iter().find(|(_, v)| v.is_some()) {
            bail!(
                "{setting} is set but KAFKA_SECURITY_PROTOCOL is {}: use sasl_ssl or \
                 sasl_plaintext, or unset {setting}",
                name_of(protocol)
            );
        }

        let files = [
            (
                "ssl.ca.location",
                "KAFKA_SSL_CA_LOCATION",
                &args.kafka_ssl_ca_location,
            ),
            (
                "ssl.certificate.location",
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &args.kafka_ssl_certificate_location,
            ),
            (
                "ssl.key.location",
                "KAFKA_SSL_KEY_LOCATION",
                &args.kafka_ssl_key_location,
            ),
        ];
        let key_password = args.kafka_ssl_key_password.clone();
        if protocol.uses_tls() {
            for (property, setting, path) in files {
                if let Some(path) = path {
                    readable(setting, path)?;
                    set(property, path.display().to_string(), setting);
                }
            }
            if args.kafka_ssl_certificate_location.is_some()
                != args.kafka_ssl_key_location.is_some()
            {
                bail!(
                    "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and \
                     KAFKA_SSL_KEY_LOCATION"
                );
            }
            if let Some(password) = key_password {
                set("ssl.key.password", password, "KAFKA_SSL_KEY_PASSWORD");
            }
            let check = match args.kafka_ssl_endpoint_identification {
                EndpointIdentification::Https => "https",
                EndpointIdentification::None => "none",
            };
            set(
                "ssl.endpoint.identification.algorithm",
                check.to_owned(),
                "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
            );
            if !args.kafka_ssl_certificate_verification {
                set(
                    "enable.ssl.certificate.verification",
                    "false".to_owned(),
                    "KAFKA_SSL_CERTIFICATE_VERIFICATION",
                );
            }
        } else {
            if !args.kafka_ssl_certificate_verification {
                bail!(
                    "KAFKA_SSL_CERTIFICATE_VERIFICATION is false but KAFKA_SECURITY_PROTOCOL is \
                     {}: there is no certificate to check",
                    name_of(protocol)
                );
            }
            let given = files
                .iter()
                .find(|(_, _, path)| path.is_some())
                .map(|(_, setting, _)| *setting)
                .or(key_password.map(|_| "KAFKA_SSL_KEY_PASSWORD"));
            if let Some(setting) = given {
                bail!(
                    "{setting} is set but KAFKA_SECURITY_PROTOCOL is {}: use ssl or sasl_ssl, \
                     or unset {setting}",
                    name_of(protocol)
                );
            }
        }

        let mut connection = Connection::new(args.kafka_brokers.clone());
        for (property, value, _) in &named {
            connection
                .properties
                .push(((*property).to_owned(), value.clone()));
        }
        for p in properties {
            if let Some((_, why)) = crate::adapters::kafka::REFUSED
                .iter()
                .find(|(n, _)| *n == p.name)
            {
                bail!(
                    "the librdkafka property `{}` ({}) is refused: {why}",
                    p.name,
                    p.origin
                );
            }
            if let Some((_, why)) = crate::adapters::kafka::GUARANTEED
                .iter()
                .find(|(n, _)| *n == p.name)
            {
                bail!(
                    "the librdkafka property `{}` ({}) is order-svc's own: {why}; remove it",
                    p.name,
                    p.origin
                );
            }
            if let Some((_, _, setting)) = named.iter().find(|(n, ..)| *n == p.name) {
                bail!(
                    "the librdkafka property `{}` ({}) is also set by {setting}: set it once",
                    p.name,
                    p.origin
                );
            }
            connection
                .properties
                .push((p.name.clone(), p.value.clone()));
        }
        connection.check().map_err(|e| {
            let origin = properties
                .iter()
                .find(|p| p.name == e.name)
                .map(|p| format!(" ({})", p.origin))
                .or_else(|| {
                    named
                        .iter()
                        .find(|(n, ..)| *n == e.name)
                        .map(|(_, _, s)| format!(" ({s})"))
                })
                .unwrap_or_default();
            anyhow::anyhow!("{e}{origin}")
        })?;
        Ok(Self {
            connection,
            topic: args.kafka_topic.clone(),
            partitions: args.kafka_topic_partitions,
        })
    }
}

fn name_of(protocol: crate::cli::SecurityProtocol) -> String {
    use clap::ValueEnum;
    protocol
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

fn mechanism(m: SaslMechanism) -> String {
    match m {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
    }
    .to_owned()
}

fn readable(setting: &str, path: &PathBuf) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))
}

#[derive(Debug)]
pub struct ProduceSettings {
    pub kafka: KafkaSettings,
    pub rps: f64,
    pub count: Option<u64>,
    pub source: OrderSource,
}

/// The dead-letter topic, which must not be the orders topic (dead letters would be read
/// as orders).
fn dead_letter_topic(args: &DeadLetterTopicArgs, kafka: &KafkaSettings) -> anyhow::Result<String> {
    if args.kafka_dlq_topic == kafka.topic {
        bail!(
            "KAFKA_DLQ_TOPIC is the orders topic `{}`: dead letters would be consumed as \
             orders; name another topic",
            kafka.topic
        );
    }
    Ok(args.kafka_dlq_topic.clone())
}

#[derive(Debug)]
pub struct RedriveSettings {
    /// `topic` is the orders topic: where letters go back to.
    pub kafka: KafkaSettings,
    /// The database holding the ledger of dead letters sent.
    pub url: DatabaseUrl,
    pub dlq_topic: String,
    pub selection: crate::domain::redrive::Selection,
    pub dry_run: bool,
}

impl RedriveSettings {
    pub fn new(args: RedriveArgs, properties: &[Property]) -> anyhow::Result<Self> {
        let kafka = KafkaSettings::new(&args.kafka, properties)?;
        let dlq_topic = dead_letter_topic(&args.dlq, &kafka)?;
        if let (Some(since), Some(until)) = (args.since, args.until)
            && since >= until
        {
            bail!("--since ({since}) must be before --until ({until})");
        }
        Ok(Self {
            url: database_url(&args.database)?,
            kafka,
            dlq_topic,
            selection: crate::domain::redrive::Selection {
                reasons: args.reason,
                since: args.since,
                until: args.until,
            },
            dry_run: args.dry_run,
        })
    }
}

/// Where `produce` takes its orders from.
#[derive(Debug)]
pub enum OrderSource {
    File(PathBuf),
    Generated(GeneratorSettings),
}

impl ProduceSettings {
    pub fn new(args: ProduceArgs, properties: &[Property]) -> anyhow::Result<Self> {
        let generator = GeneratorSettings::new(&args.generator, true)?;
        Ok(Self {
            kafka: KafkaSettings::new(&args.kafka, properties)?,
            rps: args.rps,
            count: args.count,
            source: match args.file {
                Some(path) => OrderSource::File(path),
                None => OrderSource::Generated(generator),
            },
        })
    }
}

/// The generator's settings, its seed drawn when none was given (and then logged by the
/// command, so that the run can be repeated).
#[derive(Debug)]
pub struct GeneratorSettings {
    pub options: GenerateOptions,
    pub seed_drawn: bool,
}

impl GeneratorSettings {
    fn new(args: &GeneratorArgs, allow_raw: bool) -> anyhow::Result<Self> {
        if args.min_items > args.max_items {
            bail!(
                "--min-items (GENERATE_MIN_ITEMS) is {} but --max-items (GENERATE_MAX_ITEMS) is \
                 {}: the minimum must not exceed the maximum",
                args.min_items,
                args.max_items
            );
        }
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        Ok(Self {
            options: GenerateOptions {
                seed,
                invalid_rate: args.invalid_rate,
                min_items: usize::from(args.min_items),
                max_items: usize::from(args.max_items),
                max_message_bytes: args.limit.max_message_bytes as usize,
                allow_raw,
            },
            seed_drawn: args.seed.is_none(),
        })
    }

    /// Says which seed was drawn, when one was.
    pub fn log_seed(&self) {
        if self.seed_drawn {
            let seed = self.options.seed;
            tracing::info!(
                seed,
                "no --seed given; pass --seed {seed} to repeat this run"
            );
        }
    }
}

#[derive(Debug)]
pub struct MigrateSettings {
    pub url: DatabaseUrl,
}

impl MigrateSettings {
    pub fn new(args: MigrateArgs) -> anyhow::Result<Self> {
        Ok(Self {
            url: database_url(&args.database)?,
        })
    }
}

#[derive(Debug)]
pub struct GenerateSettings {
    pub count: u64,
    pub generator: GeneratorSettings,
    pub out: Option<PathBuf>,
    pub format: OutputFormat,
}

impl GenerateSettings {
    pub fn new(args: GenerateArgs) -> anyhow::Result<Self> {
        Ok(Self {
            count: args.count,
            generator: GeneratorSettings::new(&args.generator, args.format == OutputFormat::Jsonl)?,
            out: args.out,
            format: args.format,
        })
    }
}

/// What is wrong with `.env`, never its content: a line that does not parse may hold a
/// secret (`DATABASE_URL postgres://app:s3cret@…`), so only its number is named.
pub fn dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, _) => {
            let number = std::fs::read_to_string(".env")
                .ok()
                .and_then(|text| text.lines().position(|l| l.contains(line.as_str())))
                .map_or_else(|| "a line".to_owned(), |i| format!("line {}", i + 1));
            format!("{number} is not NAME=value (its content is not shown: it may hold a secret)")
        }
        dotenvy::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn kafka(args: &[&str]) -> anyhow::Result<KafkaSettings> {
        let mut argv = vec!["order-svc", "produce"];
        argv.extend_from_slice(args);
        let Command::Produce(produce) = Cli::try_parse_from(argv)?.command else {
            unreachable!()
        };
        KafkaSettings::new(&produce.kafka, &[])
    }

    fn property<'a>(settings: &'a KafkaSettings, name: &str) -> Option<&'a str> {
        settings
            .connection
            .properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn sasl_over_tls_becomes_the_librdkafka_properties_and_librdkafka_accepts_them() {
        for (mechanism, expected) in [
            ("PLAIN", "PLAIN"),
            ("scram-sha-256", "SCRAM-SHA-256"),
            ("SCRAM-SHA-512", "SCRAM-SHA-512"),
        ] {
            let s = kafka(&[
                "--kafka-security-protocol",
                "SASL_SSL",
                "--kafka-sasl-mechanism",
                mechanism,
                "--kafka-sasl-username",
                "svc",
                "--kafka-sasl-password",
                "pw",
            ])
            .unwrap();
            assert_eq!(property(&s, "security.protocol"), Some("sasl_ssl"));
            assert_eq!(property(&s, "sasl.mechanism"), Some(expected));
            assert_eq!(property(&s, "sasl.username"), Some("svc"));
            assert_eq!(property(&s, "sasl.password"), Some("pw"));
            assert_eq!(
                property(&s, "ssl.endpoint.identification.algorithm"),
                Some("https")
            );
            // Debug never shows a value.
            assert!(!format!("{:?}", s.connection).contains("pw\""));
        }
        let plain = kafka(&[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "svc",
            "--kafka-sasl-password",
            "pw",
        ])
        .unwrap();
        assert_eq!(
            property(&plain, "security.protocol"),
            Some("sasl_plaintext")
        );
        assert_eq!(
            property(&plain, "ssl.endpoint.identification.algorithm"),
            None
        );
    }

    #[test]
    fn mutual_tls_needs_the_certificate_and_its_key() {
        let file = std::env::temp_dir().join("order-svc-settings-test.pem");
        std::fs::write(&file, "x").unwrap();
        let path = file.to_str().unwrap();
        let s = kafka(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-ssl-ca-location",
            path,
            "--kafka-ssl-certificate-location",
            path,
            "--kafka-ssl-key-location",
            path,
        ])
        .unwrap();
        assert_eq!(property(&s, "ssl.certificate.location"), Some(path));
        assert_eq!(property(&s, "ssl.key.location"), Some(path));
        let err = kafka(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-ssl-certificate-location",
            path,
        ])
        .unwrap_err();
        assert!(err.to_string().contains("KAFKA_SSL_KEY_LOCATION"), "{err}");
    }
}
