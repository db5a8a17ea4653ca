//! Where each setting comes from: a flag, the environment (and `.env`), a secret's file, the
//! settings file, or the default, in that order of precedence.
//!
//! One mechanism for every source: clap. The settings file and the `*_FILE` secrets become
//! the defaults of the arguments they set, so clap applies a flag, then the environment,
//! then them, and every value from every source goes through the same value parser with the
//! same message. What clap cannot tell (that a default came from the file) is kept beside
//! it, for `order-svc config`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::adapters::postgres::url::mask_password;
use crate::cli::Cli;

/// The prefix of environment variables that pass a librdkafka property through:
/// `KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE=true` sets `socket.keepalive.enable`.
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(String),
    Environment(String),
    /// A secret read from the file a `<VARIABLE>_FILE` variable (or `<key>_file` key) names.
    SecretFile {
        setting: String,
        path: PathBuf,
    },
    File {
        path: PathBuf,
        key: String,
    },
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag --{flag}"),
            Self::Environment(var) => write!(f, "environment {var}"),
            Self::SecretFile { setting, path } => {
                write!(f, "file {} named by {setting}", path.display())
            }
            Self::File { path, key } => write!(f, "settings file {}, {key}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A librdkafka property passed through, with its origin.
#[derive(Debug, Clone)]
pub struct Property {
    pub name: String,
    pub value: String,
    pub origin: Origin,
}

/// The command line as parsed from every source.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub kafka_properties: Vec<Property>,
}

/// Why the settings could not be read.
#[derive(Debug)]
pub enum ParseError {
    /// clap's own: usage, `--help`, `--version`. It prints itself and knows its exit code.
    Clap(clap::Error),
    Settings(anyhow::Error),
}

/// Reads the command line, the environment and the settings file.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, ParseError> {
    let prepared = prepare(&args).map_err(ParseError::Settings)?;
    let matches = prepared
        .command
        .try_get_matches_from(args)
        .map_err(ParseError::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    Ok(Parsed {
        cli,
        kafka_properties: prepared.properties,
    })
}

/// The clap command with the file's values and the secrets' files as defaults.
struct Prepared {
    command: Command,
    /// Where each default that is not the built-in one came from, by (subcommand, arg id).
    origins: HashMap<(String, String), Origin>,
    properties: Vec<Property>,
}

/// The settings file's key of an environment variable: its first word is the table, the
/// rest the key (`DATABASE_POOL_SIZE` is `pool_size` under `[database]`).
pub fn file_key(env: &str) -> String {
    let lower = env.to_ascii_lowercase();
    match lower.split_once('_') {
        Some((table, key)) => format!("{table}.{key}"),
        None => lower,
    }
}

/// An argument's place: its subcommand ("" for the global ones), itself, its variable.
struct Setting {
    sub: String,
    arg: Arg,
    env: String,
}

fn settings_of(command: &Command) -> Vec<Setting> {
    let of = |sub: &str, args: &mut dyn Iterator<Item = &Arg>| -> Vec<Setting> {
        args.filter(|a| a.get_id() != "config")
            .filter_map(|a| {
                let env = a.get_env()?.to_str()?.to_owned();
                Some(Setting {
                    sub: sub.to_owned(),
                    arg: a.clone(),
                    env,
                })
            })
            .collect()
    };
    let mut all = of(
        "",
        &mut command.get_arguments().filter(|a| a.is_global_set()),
    );
    for sub in command.get_subcommands() {
        all.extend(of(
            sub.get_name(),
            &mut sub.get_arguments().filter(|a| !a.is_global_set()),
        ));
    }
    all
}

fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// `--config FILE` or `--config=FILE` before any `--`, else `ORDER_SVC_CONFIG`. Read before
/// clap parses, because the file's values are clap's defaults.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = a.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("ORDER_SVC_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// A settings file: scalar values by `table.key`, and the librdkafka properties.
#[derive(Debug, Default)]
struct SettingsFile {
    path: PathBuf,
    values: BTreeMap<String, String>,
    properties: BTreeMap<String, String>,
}

fn scalar(value: &toml::Value) -> Option<String> {
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => return None,
    })
}

impl SettingsFile {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // toml's message quotes the offending line, which may hold a secret: say where.
            let at = e.span().map_or(String::new(), |span| {
                let line = text[..span.start].lines().count().max(1);
                format!(" at line {line}")
            });
            anyhow::anyhow!(
                "the settings file {} is not valid TOML{at}: {}",
                path.display(),
                e.message()
            )
        })?;
        let mut file = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (name, value) in &table {
            let Some(section) = value.as_table() else {
                bail!(
                    "settings file {}: `{name}` must be a table such as [{name}]",
                    path.display()
                );
            };
            for (key, value) in section {
                if name == "kafka" && key == "properties" {
                    let Some(properties) = value.as_table() else {
                        bail!(
                            "settings file {}: kafka.properties must be a table of librdkafka \
                             properties",
                            path.display()
                        );
                    };
                    for (property, value) in properties {
                        let value = scalar(value).with_context(|| {
                            format!(
                                "settings file {}: kafka.properties.\"{property}\" must be a \
                                 string, number or boolean",
                                path.display()
                            )
                        })?;
                        file.properties.insert(property.clone(), value);
                    }
                    continue;
                }
                let value = scalar(value).with_context(|| {
                    format!(
                        "settings file {}: {name}.{key} must be a string, number or boolean",
                        path.display()
                    )
                })?;
                file.values.insert(format!("{name}.{key}"), value);
            }
        }
        Ok(file)
    }
}

/// Reads the file a secret's `_FILE` setting names: its content, without the line end that
/// editors and `echo` add.
fn read_secret(setting: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

fn prepare(args: &[OsString]) -> anyhow::Result<Prepared> {
    let bin = args.first().cloned().unwrap_or_else(|| "order-svc".into());
    let mut command = Cli::command();
    let file = match config_path(args) {
        Some(path) => SettingsFile::read(&path)?,
        None => SettingsFile::default(),
    };
    let settings = settings_of(&command);
    let mut defaults: Vec<(String, String, String, Origin, bool)> = Vec::new();

    // The file's values, each checked by clap's parser for its argument first, so that a
    // bad one is named by its key.
    for (key, value) in &file.values {
        let base = key.strip_suffix("_file");
        let matching: Vec<&Setting> = settings
            .iter()
            .filter(|s| file_key(&s.env) == *key)
            .collect();
        let secret_file = base.is_some_and(|base| {
            settings
                .iter()
                .any(|s| is_secret(&s.arg) && file_key(&s.env) == base)
        });
        if matching.is_empty() && !secret_file {
            bail!(
                "settings file {}: unknown setting `{key}` (`order-svc config` prints every \
                 setting with its key)",
                file.path.display()
            );
        }
        for s in matching {
            let long = s.arg.get_long().unwrap_or_default();
            let mut argv = vec![bin.clone()];
            if s.sub.is_empty() {
                argv.extend([format!("--{long}={value}").into(), "config".into()]);
            } else {
                argv.extend([s.sub.clone().into(), format!("--{long}={value}").into()]);
            }
            // Only the value is checked here: a command that needs a subcommand of its own
            // (`keys create`) is not missing anything the file could give.
            if let Err(e) = Cli::command().try_get_matches_from(argv)
                && !matches!(
                    e.kind(),
                    clap::error::ErrorKind::MissingSubcommand
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                bail!(
                    "settings file {}, {key}: {}",
                    file.path.display(),
                    first_line(&e)
                );
            }
            let origin = Origin::File {
                path: file.path.clone(),
                key: key.clone(),
            };
            let id = s.arg.get_id().to_string();
            defaults.push((s.sub.clone(), id, value.clone(), origin, is_secret(&s.arg)));
        }
    }

    // Secrets from files: `<VARIABLE>_FILE`, or `<key>_file` in the settings file. They
    // stand where the variable would, above the settings file's plain value.
    for s in settings.iter().filter(|s| is_secret(&s.arg)) {
        let var = format!("{}_FILE", s.env);
        let key = format!("{}_file", file_key(&s.env));
        let from_env = std::env::var_os(&var).filter(|p| !p.is_empty());
        if from_env.is_some() && std::env::var_os(&s.env).is_some() {
            bail!("both {} and {var} are set: set only one", s.env);
        }
        let (setting, path) = match (from_env, file.values.get(&key)) {
            (Some(path), _) => (var, PathBuf::from(path)),
            (None, Some(path)) if std::env::var_os(&s.env).is_none() => (
                format!("{key} in {}", file.path.display()),
                PathBuf::from(path),
            ),
            _ => continue,
        };
        let value = read_secret(&setting, &path)?;
        let id = s.arg.get_id().to_string();
        defaults.retain(|(sub, other, ..)| !(sub == &s.sub && other == &id));
        defaults.push((
            s.sub.clone(),
            id,
            value,
            Origin::SecretFile { setting, path },
            true,
        ));
    }

    let mut origins = HashMap::new();
    for (sub, id, value, origin, secret) in defaults {
        let set = |arg: Arg| arg.default_value(value.clone()).hide_default_value(secret);
        command = if sub.is_empty() {
            command.mut_arg(&id, set)
        } else {
            command.mut_subcommand(&sub, |c| c.mut_arg(&id, set))
        };
        origins.insert((sub, id), origin);
    }

    // librdkafka properties: the file's, then the environment's over them.
    let mut properties: BTreeMap<String, Property> = file
        .properties
        .iter()
        .map(|(name, value)| {
            let origin = Origin::File {
                path: file.path.clone(),
                key: format!("kafka.properties.\"{name}\""),
            };
            let property = Property {
                name: name.clone(),
                value: value.clone(),
                origin,
            };
            (name.clone(), property)
        })
        .collect();
    for (var, value) in std::env::vars_os() {
        let Some(rest) = var
            .to_str()
            .and_then(|v| v.strip_prefix(KAFKA_PROPERTY_PREFIX))
        else {
            continue;
        };
        let name = rest.to_ascii_lowercase().replace('_', ".");
        let Some(value) = value.to_str() else {
            bail!("{}: the value is not UTF-8", var.to_string_lossy());
        };
        let property = Property {
            name: name.clone(),
            value: value.to_owned(),
            origin: Origin::Environment(var.to_string_lossy().into_owned()),
        };
        properties.insert(name, property);
    }
    Ok(Prepared {
        command,
        origins,
        properties: properties.into_values().collect(),
    })
}

/// Property names whose values are secrets (or may hold one: `sasl.oauthbearer.config`
/// carries client secrets, `*.key*` private keys).
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        ".pem",
        "token",
        "key",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// What `order-svc config` prints: the settings `command` (a subcommand and its flags) runs
/// with, as a settings file, each with its origin, secrets masked.
pub fn describe(config: Option<&Path>, command: &[OsString]) -> anyhow::Result<String> {
    let mut args: Vec<OsString> = vec!["order-svc".into()];
    if let Some(path) = config {
        args.extend(["--config".into(), path.as_os_str().to_owned()]);
    }
    if command.is_empty() {
        args.push("serve".into());
    } else {
        args.extend(command.iter().cloned());
    }
    let prepared = prepare(&args)?;
    // In the order of `--help` (giving an argument a default moves it to the end).
    let settings = settings_of(&Cli::command());
    let matches = match prepared.command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        // `order-svc config serve --help`: the help of serve's settings.
        Err(e) if !e.use_stderr() => return Ok(e.render().to_string()),
        Err(e) => bail!("{}", first_line(&e)),
    };
    let Some((sub, sub_matches)) = matches.subcommand() else {
        bail!("name the command whose settings to show, such as `order-svc config serve`");
    };
    if sub == "config" {
        bail!("`order-svc config` shows the settings of serve, produce, migrate or generate");
    }
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut line = |table: &str, text: String| match tables.iter_mut().find(|(t, _)| t == table) {
        Some((_, lines)) => lines.push(text),
        None => tables.push((table.to_owned(), vec![text])),
    };
    for s in settings.iter().filter(|s| s.sub.is_empty() || s.sub == sub) {
        // Hidden arguments (the benchmark's) are not settings to show.
        if s.arg.is_hide_set() {
            continue;
        }
        let m: &ArgMatches = if s.sub.is_empty() {
            &matches
        } else {
            sub_matches
        };
        let id = s.arg.get_id().as_str();
        let key = file_key(&s.env);
        let (table, name) = key.split_once('.').unwrap_or(("", key.as_str()));
        let raw: Option<Vec<String>> = m
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect());
        let Some(values) = raw else {
            line(table, format!("# {name} = (not set)  # {}", s.env));
            continue;
        };
        let value = values.join(",");
        let shown = match (is_secret(&s.arg), id) {
            (true, "database_url") => mask_password(&value),
            (true, _) => "****".to_owned(),
            (false, _) => value,
        };
        let origin = match m.value_source(id) {
            Some(ValueSource::CommandLine) => {
                Origin::Flag(s.arg.get_long().unwrap_or_default().to_owned())
            }
            Some(ValueSource::EnvVariable) => Origin::Environment(s.env.clone()),
            _ => prepared
                .origins
                .get(&(s.sub.clone(), id.to_owned()))
                .cloned()
                .unwrap_or(Origin::Default),
        };
        line(
            table,
            format!("{name} = {}  # {origin}", toml::Value::String(shown)),
        );
    }
    for p in &prepared.properties {
        let shown = if is_secret_property(&p.name) {
            "****".to_owned()
        } else {
            p.value.clone()
        };
        line(
            "kafka.properties",
            format!(
                "{} = {}  # {}",
                toml::Value::String(p.name.clone()),
                toml::Value::String(shown),
                p.origin
            ),
        );
    }
    let mut out = format!(
        "# The settings `order-svc {sub}` runs with, each with where it comes from (flag > \
         environment > settings file > default).\n# Secrets are masked. This is a settings \
         file: `order-svc --config FILE {sub}` reads one.\n"
    );
    for (table, lines) in tables {
        let _ = write!(out, "\n[{table}]\n");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_the_variables_split_at_their_first_word() {
        assert_eq!(file_key("DATABASE_POOL_SIZE"), "database.pool_size");
        assert_eq!(file_key("KAFKA_DLQ_TOPIC"), "kafka.dlq_topic");
        assert_eq!(file_key("HTTP_ADDR"), "http.addr");
    }

    #[test]
    fn every_setting_has_a_key_of_its_own_per_command() {
        let command = Cli::command();
        let settings = settings_of(&command);
        let mut seen = std::collections::HashSet::new();
        for s in &settings {
            assert!(
                seen.insert((s.sub.clone(), file_key(&s.env))),
                "{} {}",
                s.sub,
                s.env
            );
        }
        assert!(
            settings
                .iter()
                .any(|s| s.env == "DATABASE_URL" && is_secret(&s.arg))
        );
    }

    #[test]
    fn the_config_flag_is_found_before_clap_runs() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["x", "--config", "a.toml", "serve"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["x", "serve", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_env_example_names_every_setting() {
        let example = include_str!("../../.env.example");
        for s in settings_of(&Cli::command()) {
            if s.arg.is_hide_set() {
                continue;
            }
            assert!(
                example.contains(&format!("{}=", s.env)),
                ".env.example does not name {}",
                s.env
            );
        }
    }
}
