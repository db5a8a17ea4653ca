//! The command line: four subcommands, every flag with an environment fallback.
//!
//! These are the raw arguments as typed, each checked alone by its value parser.
//! [`crate::settings`] reads them from the flags, the environment and a settings file, and
//! turns them into the typed settings the program runs on, checking what needs several
//! values at once or knowledge of a URL's contents.
//!
//! An argument with `hide_env_values` is a secret: never shown, masked by `order-svc config`,
//! and readable from a file named by `<VARIABLE>_FILE`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::validate::Consistency;

#[derive(Debug, Parser)]
#[command(
    name = "order-svc",
    version,
    about = "Takes orders from Kafka, stores them in PostgreSQL, caches the hot ones and serves them over HTTP.",
    after_help = "Every flag can also be set by the environment variable shown, in a .env file in \
                  the working directory, or in the settings file given by --config \
                  (precedence: flag, environment, file, default). `order-svc config` shows \
                  the settings in force."
)]
pub struct Cli {
    /// Settings file (TOML): `[database]` `url = "..."`, `[kafka]` `brokers = "..."`, one key
    /// per environment variable (DATABASE_POOL_SIZE is `pool_size` under `[database]`).
    #[arg(long, env = "ORDER_SVC_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Log format: `pretty` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

// Parsed once per process: boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume orders from Kafka into PostgreSQL and serve them over HTTP.
    Serve(ServeArgs),
    /// Publish orders to Kafka at a steady rate.
    Produce(ProduceArgs),
    /// Send dead letters back to the orders topic (after a rule change or a fix upstream):
    /// the original key, payload and headers; --dry-run shows what would go.
    Redrive(RedriveArgs),
    /// Create the database if needed and apply the embedded SQL migrations.
    Migrate(MigrateArgs),
    /// Write generated orders as JSON lines or a JSON array, some of them invalid on purpose.
    Generate(GenerateArgs),
    /// Print the settings a command runs with and where each comes from, secrets masked:
    /// `order-svc config serve --http-addr 0.0.0.0:9000`. The output is a settings file.
    Config(ConfigArgs),
    /// Ask a running `serve` whether it is alive (or ready, with --ready): exit 0 if so, 1 if
    /// not. For container health checks in images without a shell or curl.
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script: `order-svc completions bash > /etc/bash_completion.d/order-svc`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `order-svc man > order-svc.1; man ./order-svc.1`.
    Man,
    /// API keys: `keys create --name NAME --scopes orders:read` prints a new key once;
    /// `keys list`; `keys revoke NAME`.
    Keys(KeysArgs),
    /// Read the audit trail (`--subject`, `--since`), or delete what is older than the
    /// retention (`--purge-before`).
    Audit(AuditArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Make a key and print it (only its hash is stored: it cannot be shown again).
    Create {
        /// A name for the key (letters, digits, `.`, `_`, `-`; up to 64): who holds it.
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: orders:read, orders:search, pii:read,
        /// rejections:read, audit:read (or all).
        #[arg(long)]
        scopes: String,
    },
    /// Every key: name, scopes, when made, last used, revoked.
    List,
    /// Revoke the key of this name (refused within 10 s by every `serve`).
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Only this caller's records (a token's subject or a key's name).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,

    /// Only records written at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,

    /// How many records at most, newest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,

    /// Delete the records written before this time (the retention), and print how many.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with_all = ["subject", "since"])]
    pub purge_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// Who may read what (see the README's "Access control").
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Scopes of callers who present no credential (`all`, or a list such as
    /// `orders:read`). Unset, anonymous access is off and `serve` needs another way in
    /// (AUTH_API_KEYS or AUTH_ISSUER). Only where the port is private: it warns at start,
    /// and every page says so.
    #[arg(
        long,
        env = "AUTH_ANONYMOUS_SCOPES",
        value_name = "AUTH_ANONYMOUS_SCOPES"
    )]
    pub auth_anonymous_scopes: Option<String>,

    /// Accept API keys (`order-svc keys create`) as bearer tokens.
    #[arg(long, env = "AUTH_API_KEYS", value_name = "AUTH_API_KEYS", default_value = "false",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub auth_api_keys: bool,

    /// The OpenID provider's issuer URL: bearer JWTs it signs for AUTH_AUDIENCE are accepted,
    /// checked against the keys its discovery document names. https, or http on loopback.
    #[arg(long, env = "AUTH_ISSUER", value_name = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The audience (`aud`) a token must be issued for.
    #[arg(long, env = "AUTH_AUDIENCE", value_name = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// The provider's key set, when discovery should not be used.
    #[arg(long, env = "AUTH_JWKS_URL", value_name = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,

    /// The claim holding a token's scopes (a space-separated string or an array).
    #[arg(
        long,
        env = "AUTH_SCOPE_CLAIM",
        value_name = "AUTH_SCOPE_CLAIM",
        default_value = "scope"
    )]
    pub auth_scope_claim: String,

    /// The claim holding a token's roles or groups (such as `groups` or `roles`), mapped to
    /// scopes by AUTH_ROLE_SCOPES.
    #[arg(long, env = "AUTH_ROLES_CLAIM", value_name = "AUTH_ROLES_CLAIM")]
    pub auth_roles_claim: Option<String>,

    /// Roles to scopes: `support=orders:read,orders:search,pii:read;viewer=orders:read`.
    #[arg(long, env = "AUTH_ROLE_SCOPES", value_name = "AUTH_ROLE_SCOPES")]
    pub auth_role_scopes: Option<String>,

    /// The web sign-in's client id at the provider (AUTH_ISSUER): people sign in to the
    /// pages with the authorization code flow and PKCE, and get a session. Unset: no web
    /// sign-in. Roles come from the ID token's AUTH_ROLES_CLAIM, mapped by AUTH_ROLE_SCOPES.
    #[arg(long, env = "AUTH_CLIENT_ID", value_name = "AUTH_CLIENT_ID")]
    pub auth_client_id: Option<String>,

    /// The web sign-in client's secret (unset: a public client, PKCE alone). A secret:
    /// AUTH_CLIENT_SECRET_FILE may name a file holding it.
    #[arg(
        long,
        env = "AUTH_CLIENT_SECRET",
        value_name = "AUTH_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub auth_client_secret: Option<String>,

    /// Where the provider sends people back, as registered there
    /// (`https://orders.example.com/auth/callback`). Unset: the request's own scheme and
    /// host, with /auth/callback.
    #[arg(long, env = "AUTH_REDIRECT_URL", value_name = "AUTH_REDIRECT_URL")]
    pub auth_redirect_url: Option<String>,

    /// The scopes the web sign-in asks the provider for (which claims the ID token carries).
    #[arg(
        long,
        env = "AUTH_SIGN_IN_SCOPES",
        value_name = "AUTH_SIGN_IN_SCOPES",
        default_value = "openid profile email"
    )]
    pub auth_sign_in_scopes: String,

    /// How long a web session lasts from sign-in, in seconds, however it is used.
    #[arg(
        long,
        env = "AUTH_SESSION_SECONDS",
        value_name = "AUTH_SESSION_SECONDS",
        default_value_t = 28_800,
        value_parser = clap::value_parser!(u64).range(60..=2_592_000)
    )]
    pub auth_session_seconds: u64,

    /// Keys that sign customer links (`GET /order/{uid}/link`, scope links:create):
    /// `id=secret` pairs separated by commas, secrets of 32+ characters; the first signs, all
    /// check, so a key left out refuses every link it signed. Unset: no customer links. A
    /// secret: LINK_KEYS_FILE may name a file holding it.
    #[arg(
        long,
        env = "LINK_KEYS",
        value_name = "LINK_KEYS",
        hide_env_values = true
    )]
    pub link_keys: Option<String>,

    /// How long a customer link opens its order, in seconds.
    #[arg(
        long,
        env = "LINK_TTL_SECONDS",
        value_name = "LINK_TTL_SECONDS",
        default_value_t = 259_200,
        value_parser = clap::value_parser!(u64).range(60..=2_592_000)
    )]
    pub link_ttl_seconds: u64,

    /// Where customers open links (`https://orders.example.com`). Unset: the address of
    /// the request that made the link.
    #[arg(long, env = "LINK_BASE_URL", value_name = "LINK_BASE_URL")]
    pub link_base_url: Option<String>,

    /// Key of the audit trail's hashes of searched values (at least 32 characters). Unset:
    /// a random key per process, so hashes cannot be compared across restarts. A secret:
    /// AUDIT_HASH_KEY_FILE may name a file holding it.
    #[arg(
        long,
        env = "AUDIT_HASH_KEY",
        value_name = "AUDIT_HASH_KEY",
        hide_env_values = true
    )]
    pub audit_hash_key: Option<String>,

    /// Lookups per second each caller may make (a burst of twice as many); 0: no limit.
    #[arg(
        long,
        env = "RATE_LOOKUPS_PER_SECOND",
        value_name = "RATE_LOOKUPS_PER_SECOND",
        default_value_t = 100
    )]
    pub rate_lookups_per_second: u32,

    /// Lists and searches per second each caller may make (a burst of twice as many); 0: no
    /// limit.
    #[arg(
        long,
        env = "RATE_SEARCHES_PER_SECOND",
        value_name = "RATE_SEARCHES_PER_SECOND",
        default_value_t = 10
    )]
    pub rate_searches_per_second: u32,
}

/// Where `serve` listens unless told otherwise, and so where `healthcheck` asks.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The address `serve` listens on (its HTTP_ADDR); an unspecified host (0.0.0.0, ::) is
    /// asked on loopback.
    #[arg(
        long,
        env = "HTTP_ADDR",
        value_name = "HTTP_ADDR",
        default_value = DEFAULT_HTTP_ADDR
    )]
    pub http_addr: SocketAddr,

    /// Ask /readyz (database, cache preload, consumer) instead of /healthz (alive).
    #[arg(long)]
    pub ready: bool,

    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The command and its flags, as they would be run (default: serve).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL; `sslmode` (disable, prefer, require, verify-ca,
    /// verify-full), `sslrootcert`, `sslcert` and `sslkey` as libpq reads them. The database
    /// is created by `migrate` when missing. A secret: DATABASE_URL_FILE may name a file
    /// holding it.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orders",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: String,

    /// Allow `sslmode=prefer` or `require` without `sslrootcert` to a server that is not on
    /// this machine: TLS whose certificate nobody checks, which a man in the middle answers
    /// with his own (or downgrades, for prefer). Refused unless set; warned at every start.
    #[arg(long, env = "DATABASE_ALLOW_UNVERIFIED_TLS", value_name = "DATABASE_ALLOW_UNVERIFIED_TLS",
          default_value = "false", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub database_allow_unverified_tls: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port pairs.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        value_name = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,

    /// Topic the orders arrive on.
    #[arg(
        long,
        env = "KAFKA_TOPIC",
        value_name = "KAFKA_TOPIC",
        default_value = "orders"
    )]
    pub kafka_topic: String,

    /// Partitions of the topics `serve` and `produce` create when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", value_name = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_topic_partitions: i32,

    /// How to reach the brokers: `plaintext`, `ssl` (TLS), `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_name = "KAFKA_SECURITY_PROTOCOL",
          value_enum, default_value_t = SecurityProtocol::Plaintext, ignore_case = true)]
    pub kafka_security_protocol: SecurityProtocol,

    /// SASL mechanism, with a `sasl_*` protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        env = "KAFKA_SASL_MECHANISM",
        value_name = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME", value_name = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SASL password. A secret: KAFKA_SASL_PASSWORD_FILE may name a file holding it.
    #[arg(
        long,
        env = "KAFKA_SASL_PASSWORD",
        value_name = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_sasl_password: Option<String>,

    /// CA certificate(s) (PEM) that the brokers' certificates must chain to (default: the
    /// system's trust store).
    #[arg(
        long,
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "KAFKA_SSL_CA_LOCATION"
    )]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS, with KAFKA_SSL_KEY_LOCATION.
    #[arg(
        long,
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "KAFKA_SSL_CERTIFICATE_LOCATION"
    )]
    pub kafka_ssl_certificate_location: Option<PathBuf>,

    /// Private key (PEM) of the client certificate.
    #[arg(
        long,
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "KAFKA_SSL_KEY_LOCATION"
    )]
    pub kafka_ssl_key_location: Option<PathBuf>,

    /// Password of the private key, when it is encrypted. A secret:
    /// KAFKA_SSL_KEY_PASSWORD_FILE may name a file holding it.
    #[arg(
        long,
        env = "KAFKA_SSL_KEY_PASSWORD",
        value_name = "KAFKA_SSL_KEY_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_ssl_key_password: Option<String>,

    /// Check that the broker's certificate names the host connected to: `https` (on) or
    /// `none` (off; for testing only).
    #[arg(long, env = "KAFKA_SSL_ENDPOINT_IDENTIFICATION", value_name = "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
          value_enum, default_value_t = EndpointIdentification::Https)]
    pub kafka_ssl_endpoint_identification: EndpointIdentification,

    /// Check the broker's certificate against KAFKA_SSL_CA_LOCATION (or the system's roots).
    /// `false` accepts any certificate, so anyone on the path can read and change the
    /// traffic: for a test cluster only, and said at every start.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_VERIFICATION",
          value_name = "KAFKA_SSL_CERTIFICATE_VERIFICATION", default_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub kafka_ssl_certificate_verification: bool,
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanism`, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

/// librdkafka's `ssl.endpoint.identification.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointIdentification {
    Https,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Ingest and HTTP in one process.
    All,
    /// Only consume Kafka into PostgreSQL (HTTP serves health and metrics).
    Ingest,
    /// Only serve the API and UI from PostgreSQL and the cache.
    Api,
}

impl Role {
    pub fn ingests(self) -> bool {
        matches!(self, Self::All | Self::Ingest)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Which halves to run: `all`, `ingest` or `api`; several processes may split them.
    #[arg(long, env = "SERVE_ROLE", value_name = "SERVE_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Most connections of the lookup pool (ingest has its own: one per parallel batch, plus
    /// one).
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub database_pool_size: u16,

    /// Longest a database statement may run (PostgreSQL's `statement_timeout`), in
    /// milliseconds; a call with no answer 5 s past it counts as a database outage.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", value_name = "DATABASE_STATEMENT_TIMEOUT_MS",
          default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub database_statement_timeout_ms: u64,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub dlq: DeadLetterTopicArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// Consumer group; `serve` processes in one group share the topic's partitions.
    #[arg(
        long,
        env = "KAFKA_GROUP_ID",
        value_name = "KAFKA_GROUP_ID",
        default_value = "order-svc"
    )]
    pub kafka_group_id: String,

    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "HTTP_ADDR",
        value_name = "HTTP_ADDR",
        default_value = DEFAULT_HTTP_ADDR
    )]
    pub http_addr: SocketAddr,

    /// Serve /metrics on this address of its own (such as 127.0.0.1:9090) instead of with
    /// the API on HTTP_ADDR, so that it need not be public.
    #[arg(long, env = "METRICS_ADDR", value_name = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// What to do with orders whose totals do not add up: `reject` them or `warn` and accept.
    #[arg(
        long,
        env = "VALIDATION_CONSISTENCY",
        value_name = "VALIDATION_CONSISTENCY",
        default_value_t = Consistency::Warn
    )]
    pub validation_consistency: Consistency,

    #[command(flatten)]
    pub limit: MessageLimitArgs,

    /// Most messages written in one batch (one database statement).
    #[arg(long, env = "INGEST_BATCH_MAX", value_name = "INGEST_BATCH_MAX", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ingest_batch_max: u32,

    /// How long a batch waits for more messages before it is written, in milliseconds (a
    /// backlog fills batches at once; a slow stream waits at most this long).
    #[arg(long, env = "INGEST_BATCH_LINGER_MS", value_name = "INGEST_BATCH_LINGER_MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub ingest_batch_linger_ms: u64,

    /// Batches written to PostgreSQL at once, each on its own connection of the ingest pool
    /// (offsets still move in order, and versions of one uid are written in order).
    #[arg(long, env = "INGEST_PARALLEL_BATCHES", value_name = "INGEST_PARALLEL_BATCHES", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub ingest_parallel_batches: u16,

    /// Most bytes the lookup cache holds (least recently used out first): each order's JSON,
    /// uid and tag, plus its bookkeeping (~700 B), so that this is about what a full cache
    /// takes in memory.
    #[arg(long, env = "CACHE_MAX_BYTES", value_name = "CACHE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_max_bytes: u64,

    /// Newest orders loaded into the cache at start, in the background: the service is ready
    /// before it ends, and answers what it has not reached yet from the database.
    #[arg(
        long,
        env = "CACHE_PRELOAD",
        value_name = "CACHE_PRELOAD",
        default_value_t = 100_000
    )]
    pub cache_preload: usize,

    /// Add `X-Cache: hit|miss` to order lookups. It tells anyone who asks whether an order
    /// was read recently, so it is for debugging and benchmarks, off by default.
    #[arg(long, env = "HTTP_DEBUG_HEADERS", value_name = "HTTP_DEBUG_HEADERS",
          default_value = "false", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub http_debug_headers: bool,

    /// Proxies whose `X-Request-Id` and `traceparent` are taken (comma-separated addresses
    /// or networks, such as `10.0.0.0/8,127.0.0.1`). From anyone else, a request gets an id
    /// and a trace of its own (the caller's trace linked, its id logged beside ours).
    #[arg(long, env = "HTTP_TRUSTED_PROXIES", value_name = "HTTP_TRUSTED_PROXIES",
          value_delimiter = ',', value_parser = parse_network)]
    pub http_trusted_proxies: Vec<ipnet::IpNet>,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HTTP_WORKERS", value_name = "HTTP_WORKERS",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: Option<u16>,

    /// For `just bench-http` only (built with the `bench-baseline` feature, never in a
    /// release): serve a fixed body of this many bytes at /__bench/fixed,
    /// the baseline the order lookups are measured against.
    #[cfg(feature = "bench-baseline")]
    #[arg(
        long,
        env = "HTTP_BENCH_FIXED_BYTES",
        value_name = "HTTP_BENCH_FIXED_BYTES",
        hide = true
    )]
    pub http_bench_fixed_bytes: Option<usize>,
}

/// The dead-letter topic, shared by `serve` (which writes it) and `redrive` (which reads it).
#[derive(Debug, Clone, Args)]
pub struct DeadLetterTopicArgs {
    /// Topic that rejected and conflicting messages are sent to, with their reasons.
    #[arg(
        long,
        env = "KAFKA_DLQ_TOPIC",
        value_name = "KAFKA_DLQ_TOPIC",
        default_value = "orders.dlq"
    )]
    pub kafka_dlq_topic: String,
}

#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// The orders topic (KAFKA_TOPIC) is where the letters are sent back to.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Read from its beginning to where it ends when the run starts.
    #[command(flatten)]
    pub dlq: DeadLetterTopicArgs,

    /// The ledger of dead letters sent (`serve`'s database): only letters it records are
    /// sent back.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Send back only letters set aside for these reasons (comma-separated: too_large,
    /// malformed, schema, invalid, inconsistent, conflict). Default: every reason.
    #[arg(long, value_name = "REASON", value_delimiter = ',', value_parser = parse_reason)]
    pub reason: Vec<String>,

    /// Only letters set aside at or after this time (RFC 3339, such as 2026-12-02T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,

    /// Only letters set aside before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,

    /// Print what would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Orders published per second.
    #[arg(long, env = "PRODUCE_RPS", value_name = "PRODUCE_RPS", default_value = "5", value_parser = parse_rate)]
    pub rps: f64,

    /// Stop after this many orders (default: run until Ctrl-C).
    #[arg(long, env = "PRODUCE_COUNT", value_name = "PRODUCE_COUNT")]
    pub count: Option<u64>,

    /// Publish the orders of this file (JSON lines or a JSON array) instead of generated ones.
    #[arg(long, env = "PRODUCE_FILE", value_name = "PRODUCE_FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub generator: GeneratorArgs,
}

/// How generated orders look; shared by `generate` and `produce`.
#[derive(Debug, Clone, Args)]
pub struct GeneratorArgs {
    /// Share of invalid orders, from 0 to 1 (0.1 = about one in ten).
    #[arg(long, env = "GENERATE_INVALID_RATE", value_name = "GENERATE_INVALID_RATE", default_value = "0", value_parser = parse_share)]
    pub invalid_rate: f64,

    /// Seed of the generator: the same seed gives the same orders. Default: a fresh one, logged.
    #[arg(long, env = "GENERATE_SEED", value_name = "GENERATE_SEED")]
    pub seed: Option<u64>,

    /// Fewest items in a valid order.
    #[arg(long, env = "GENERATE_MIN_ITEMS", value_name = "GENERATE_MIN_ITEMS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub min_items: u16,

    /// Most items in a valid order.
    #[arg(long, env = "GENERATE_MAX_ITEMS", value_name = "GENERATE_MAX_ITEMS", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_items: u16,

    #[command(flatten)]
    pub limit: MessageLimitArgs,
}

/// The size limit of one message: what ingest rejects as `too_large`, and what generated
/// `oversized` orders exceed.
#[derive(Debug, Clone, Args)]
pub struct MessageLimitArgs {
    /// Messages larger than this many bytes are rejected as `too_large`.
    #[arg(
        long,
        env = "INGEST_MAX_MESSAGE_BYTES",
        value_name = "INGEST_MAX_MESSAGE_BYTES",
        default_value_t = 1024 * 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_message_bytes: u32,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One order per line.
    Jsonl,
    /// One JSON array (orders that are not JSON values are never drawn).
    Array,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// How many orders to write.
    #[arg(
        long,
        short = 'n',
        env = "GENERATE_COUNT",
        value_name = "GENERATE_COUNT",
        default_value_t = 10
    )]
    pub count: u64,

    #[command(flatten)]
    pub generator: GeneratorArgs,

    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Output layout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub format: OutputFormat,
}

/// A positive, finite rate (orders per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        Ok(_) => Err("must be a number above 0 and at most 1000000".into()),
        Err(_) => Err("must be a number, such as 5 or 0.5".into()),
    }
}

/// A dead-letter reason code.
pub fn parse_reason(s: &str) -> Result<String, String> {
    use crate::domain::message::DeadLetterReason;
    let codes: Vec<&str> = DeadLetterReason::all()
        .map(DeadLetterReason::code)
        .collect();
    if codes.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!("must be one of {}", codes.join(", ")))
    }
}

/// A point in time, RFC 3339.
/// An address (one host) or a network in CIDR notation.
pub fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| "expected an address or a network such as 10.0.0.0/8".to_owned())
}

pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|_| "must be a time in RFC 3339 form, such as 2026-12-02T12:00:00Z".into())
}

/// A share from 0 to 1.
pub fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("must be a number from 0 to 1, such as 0.1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_shares_are_bounded() {
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(
            parse_rate("0").is_err() && parse_rate("-1").is_err() && parse_rate("inf").is_err()
        );
        assert_eq!(parse_share("0.1"), Ok(0.1));
        assert!(parse_share("1.01").is_err() && parse_share("x").is_err());
    }

    #[test]
    fn the_definition_holds_together() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
