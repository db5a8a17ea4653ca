//! The settings layer from outside: a settings file under flags and the environment, what
//! `order-svc config` shows, the checks that stop the program at start, and secrets that
//! never reach the output.

use std::path::PathBuf;

use crate::helpers::{order_svc, run};

fn file(text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "order-svc-settings-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{out}"))
}

#[test]
fn a_setting_comes_from_the_flag_else_the_environment_else_the_file_else_the_default() {
    let path = file(
        "[database]\npool_size = 4\n[http]\naddr = \"127.0.0.1:9000\"\n\
         [cache]\npreload = 7\nmax_bytes = 1000\n",
    );
    let (out, stdout, stderr) = run(order_svc()
        .arg("--config")
        .arg(&path)
        .args(["config", "serve", "--cache-preload", "9"])
        .env("HTTP_ADDR", "127.0.0.1:9001"));
    assert!(out.status.success(), "{stderr}");
    assert!(line(&stdout, "preload").contains("\"9\"  # flag --cache-preload"));
    assert!(line(&stdout, "addr").contains("\"127.0.0.1:9001\"  # environment HTTP_ADDR"));
    assert!(line(&stdout, "pool_size").contains("\"4\"  # settings file"));
    assert!(line(&stdout, "statement_timeout_ms").ends_with("# default"));

    // What `config` prints is itself a settings file that gives the same settings.
    let printed = file(&stdout);
    let (out, again, stderr) = run(order_svc()
        .arg("--config")
        .arg(&printed)
        .args(["config", "serve"]));
    assert!(out.status.success(), "{stderr}");
    assert!(line(&again, "preload").contains("\"9\"  # settings file"));

    // The file is read by the commands themselves, not only shown: ORDER_SVC_CONFIG names
    // it here, and `generate` writes as many orders as it says.
    let counted = file("[generate]\ncount = 3\nseed = 5\n");
    let (out, stdout, stderr) = run(order_svc()
        .arg("generate")
        .env("ORDER_SVC_CONFIG", &counted));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for p in [path, printed, counted] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_bad_or_unknown_key_in_the_file_stops_the_program_naming_it() {
    let bad = file("[http]\naddr = \"nowhere\"\n");
    let (out, _, stderr) = run(order_svc().arg("--config").arg(&bad).arg("serve"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("http.addr") && stderr.contains("invalid socket address"),
        "{stderr}"
    );

    let unknown = file("[databse]\nurl = \"postgres://x/y\"\n");
    let (out, _, stderr) = run(order_svc().arg("--config").arg(&unknown).arg("migrate"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown setting `databse.url`"), "{stderr}");

    let broken = file("[kafka]\nbrokers = \"a\"\npassword = \"s3cr3t-line\n");
    let (out, _, stderr) = run(order_svc().arg("--config").arg(&broken).arg("serve"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 3") && !stderr.contains("s3cr3t"),
        "{stderr}"
    );
    for p in [bad, unknown, broken] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn passwords_never_reach_the_output() {
    const SECRET: &str = "Pa55-4b9e-never-printed";
    // A URL that does not parse: the message names the setting, not the value.
    for url in [
        format!("postgres://app:{SECRET}@db:notaport/orders"),
        format!("postgres://app:{SECRET}@db/orders?sslmode=sometimes"),
        format!("postgres://app:{SECRET}@db"),
    ] {
        let (out, stdout, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", &url));
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("DATABASE_URL"), "{stderr}");
        assert!(!format!("{stdout}{stderr}").contains(SECRET), "{stderr}");
    }
    // Nor as a flag's value.
    let (out, _, stderr) = run(order_svc().args([
        "migrate",
        "--database-url",
        &format!("postgres://app:{SECRET}@db:x/orders"),
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr.contains(SECRET), "{stderr}");

    // `config` masks them, wherever they come from; a `_FILE` secret is read from its file.
    let secret_file = file(&format!("{SECRET}\n"));
    let (out, stdout, stderr) = run(order_svc()
        .args(["config", "serve"])
        .env("DATABASE_URL", format!("postgres://app:{SECRET}@db/orders"))
        .env("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
        .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        .env("KAFKA_SASL_USERNAME", "svc")
        .env("KAFKA_SASL_PASSWORD_FILE", &secret_file)
        .env("KAFKA_PROPERTY_SSL_KEY_PASSWORD", SECRET));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(line(&stdout, "url").contains("postgres://app:****@db/orders"));
    assert!(line(&stdout, "sasl_password").contains("\"****\"  # file"));
    assert!(line(&stdout, "\"ssl.key.password\"").contains("\"****\""));

    // A password in the URL's query (libpq takes `?password=`), and properties that hold
    // secrets under other names: masked too.
    let (out, stdout, stderr) = run(order_svc()
        .args(["config", "serve"])
        .env(
            "DATABASE_URL",
            format!("postgres://app@db/orders?password={SECRET}"),
        )
        .env(
            "KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG",
            format!("clientSecret={SECRET}"),
        )
        .env("KAFKA_PROPERTY_SSL_KEY_PEM", SECRET));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(line(&stdout, "url").contains("password=****"), "{stdout}");

    // A .env line that does not parse is named by its number, never shown.
    let dir = std::env::temp_dir().join(format!("order-svc-env-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("LOG_FORMAT=json\nDATABASE_URL postgres://app:{SECRET}@db/orders\n"),
    )
    .unwrap();
    let (out, stdout, stderr) = run(order_svc().current_dir(&dir).args(["config", "serve"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains(SECRET), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();

    // A property librdkafka refuses is named, its value not shown.
    let (out, _, stderr) = run(order_svc()
        .arg("serve")
        .env("KAFKA_PROPERTY_ENABLE_IDEMPOTENCE", SECRET));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("enable.idempotence") && !stderr.contains(SECRET),
        "{stderr}"
    );

    // Both the variable and its file: ambiguous, refused.
    let (out, _, stderr) = run(order_svc()
        .arg("serve")
        .env("KAFKA_SASL_PASSWORD", "x")
        .env("KAFKA_SASL_PASSWORD_FILE", &secret_file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("KAFKA_SASL_PASSWORD_FILE"), "{stderr}");
    std::fs::remove_file(secret_file).unwrap();
}

#[test]
fn kafka_security_settings_are_checked_together_at_start() {
    let cases: [(&[(&str, &str)], &str); 10] = [
        (
            &[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
            "set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD",
        ),
        (
            &[("KAFKA_SASL_USERNAME", "svc")],
            "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL is plaintext",
        ),
        (
            &[
                ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("KAFKA_SSL_CA_LOCATION", "/no/such/ca.pem"),
            ],
            "KAFKA_SSL_CA_LOCATION: cannot read /no/such/ca.pem",
        ),
        (
            &[("KAFKA_PROPERTY_NO_SUCH_THING", "1")],
            "`no.such.thing`: No such configuration property",
        ),
        (
            &[("KAFKA_PROPERTY_SECURITY_PROTOCOL", "ssl")],
            "is also set by KAFKA_SECURITY_PROTOCOL",
        ),
        (
            &[("KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE", "true")],
            "`enable.auto.offset.store` (environment KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE) is order-svc's own",
        ),
        (
            &[("KAFKA_PROPERTY_ACKS", "1")],
            "`acks` (environment KAFKA_PROPERTY_ACKS) is order-svc's own",
        ),
        // A library loaded from a setting is code from a file: refused.
        (
            &[("KAFKA_PROPERTY_PLUGIN_LIBRARY_PATHS", "/tmp/evil.so")],
            "`plugin.library.paths` (environment KAFKA_PROPERTY_PLUGIN_LIBRARY_PATHS) is refused",
        ),
        // Certificates unchecked only by the named setting, which says so at every start.
        (
            &[(
                "KAFKA_PROPERTY_ENABLE_SSL_CERTIFICATE_VERIFICATION",
                "false",
            )],
            "KAFKA_SSL_CERTIFICATE_VERIFICATION=false instead",
        ),
        (
            &[("KAFKA_SSL_CERTIFICATE_VERIFICATION", "false")],
            "KAFKA_SSL_CERTIFICATE_VERIFICATION is false but KAFKA_SECURITY_PROTOCOL is plaintext",
        ),
    ];
    for (env, expected) in cases {
        for command in ["serve", "produce"] {
            let (out, _, stderr) = run(order_svc().arg(command).envs(env.iter().copied()));
            assert_eq!(out.status.code(), Some(2), "{command} {env:?}: {stderr}");
            assert!(stderr.contains(expected), "{command} {env:?}: {stderr}");
        }
    }
}

#[test]
fn unverified_tls_to_another_machine_is_refused_unless_accepted_by_name() {
    for url in [
        "postgres://app@db.example:5432/orders",
        "postgres://app@db.example:5432/orders?sslmode=prefer",
        "postgres://app@10.1.2.3:5432/orders?sslmode=require",
    ] {
        let (out, _, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", url));
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("verify-full") && stderr.contains("DATABASE_ALLOW_UNVERIFIED_TLS"),
            "{url}: {stderr}"
        );
    }
    // Accepted by name, it goes on to connect (and fails there: no such server).
    let (out, _, stderr) = run(order_svc()
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://app@192.0.2.1:5432/orders?connect_timeout=1",
        )
        .env("DATABASE_ALLOW_UNVERIFIED_TLS", "true"));
    assert_ne!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    // Loopback, and plaintext chosen explicitly, are the operator's to choose.
    for url in [
        "postgres://app@127.0.0.1:1/orders?connect_timeout=1",
        "postgres://app@192.0.2.1:5432/orders?sslmode=disable&connect_timeout=1",
    ] {
        let (out, _, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", url));
        assert_ne!(out.status.code(), Some(2), "{url}: {stderr}");
    }
}
