//! TLS to PostgreSQL and to Kafka, against real servers, with a CA and certificates made
//! here: the connection works when the certificate is trusted and names the host, and
//! fails, saying why and never showing a password, when it is not or does not.
//!
//! tansu's own TLS listener is not used: stunnel (Debian's `stunnel4`) terminates TLS in
//! front of a plain tansu that advertises stunnel's address, which is how librdkafka sees a
//! TLS cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::helpers::{Serve, count, free_port, migrated_db, order_svc, run, wait_for};
use crate::own::{OwnBroker, OwnPostgres, try_spawn_listening};

const PASSWORD: &str = "pw-9f3c1e-never-shown";

/// A CA, a server certificate for `localhost` signed by it, and a second CA that signed
/// nothing here (an untrusted issuer).
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate for the PostgreSQL user `postgres`, and its PKCS#8 key.
    client_cert: PathBuf,
    client_key: PathBuf,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("order-svc-pki-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = ca("order-svc test CA");
        let other = ca("someone else's CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "postgres");
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", issuer.pem()),
            other_ca: write("other-ca.pem", other.pem()),
            cert: write("server.crt", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            client_cert: write("client.crt", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            _dir: TempDir(dir),
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A PostgreSQL cluster that takes TCP connections over TLS only.
fn tls_postgres(pki: &Pki) -> OwnPostgres {
    OwnPostgres::start_with(|data| {
        std::fs::copy(&pki.cert, data.join("server.crt")).unwrap();
        std::fs::copy(&pki.key, data.join("server.key")).unwrap();
        std::fs::copy(&pki.ca, data.join("ca.pem")).unwrap();
        set_mode(&data.join("server.key"), 0o600);
        // A plaintext client is turned away, so a connection that works went through TLS;
        // the database `mtls` takes only clients with a certificate naming their user.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl mtls all 127.0.0.1/32 trust clientcert=verify-full\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file=ca.pem"
            .to_owned()
    })
}

fn migrate_with(url: &str) -> (bool, String) {
    let (out, stdout, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", url));
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_and_names_what_is_wrong() {
    let pki = Pki::new();
    let pg = tls_postgres(&pki);
    let port = pg.port;
    let ca = pki.ca.display();
    let url = |host: &str, query: &str| {
        format!("postgres://postgres:{PASSWORD}@{host}:{port}/orders?{query}")
    };

    let (ok, out) = migrate_with(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(ok, "verify-full with the right CA and host: {out}");

    // The server refuses plaintext: what connected above went through TLS.
    let (ok, out) = migrate_with(&url("localhost", "sslmode=disable"));
    assert!(!ok && out.contains("no encryption"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");

    // The default (`prefer`) and `require` take TLS when the server offers it.
    let (ok, out) = migrate_with(&url("localhost", ""));
    assert!(ok, "prefer: {out}");
    let (ok, out) = migrate_with(&url("127.0.0.1", "sslmode=require"));
    assert!(ok, "require: {out}");

    // A certificate from an issuer the client does not trust.
    let other = pki.other_ca.display();
    let (ok, out) = migrate_with(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ));
    assert!(!ok && out.contains("certificate verify failed"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");

    // The right issuer, another host name: verify-full refuses, verify-ca does not look.
    let (ok, out) = migrate_with(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(!ok && out.to_lowercase().contains("mismatch"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
    let (ok, out) = migrate_with(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ));
    assert!(ok, "verify-ca: {out}");

    // Mutual TLS: without a client certificate the server refuses, with one it accepts.
    let mtls = |query: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@localhost:{port}/mtls?sslmode=verify-full&sslrootcert={ca}{query}"
        )
    };
    let (ok, out) = migrate_with(&mtls(""));
    assert!(!ok && out.contains("certificate"), "{out}");
    let with_cert = format!(
        "&sslcert={}&sslkey={}",
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let (ok, out) = migrate_with(&mtls(&with_cert));
    assert!(ok, "a client certificate: {out}");
    assert!(!out.contains(PASSWORD), "{out}");

    // serve: the lookup pool and the preload over verify-full.
    let serve = Serve::start(&[
        ("SERVE_ROLE", "api".to_owned()),
        (
            "DATABASE_URL",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        ),
    ])
    .await;
    serve.wait_ready().await;
    assert_eq!(serve.status("/order/nosuchorder").await, Some(404));
    assert!(!serve.logs().contains(PASSWORD));
}

/// stunnel terminating TLS on `tls_port` for the plain broker on `plain_port`.
struct Stunnel {
    child: Child,
}

impl Stunnel {
    /// `None` when something else took `tls_port` first.
    fn try_start(pki: &Pki, tls_port: u16, plain_port: u16) -> Option<Self> {
        let conf = pki.cert.with_file_name("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\n\
                 connect = 127.0.0.1:{plain_port}\ncert = {}\nkey = {}\n",
                pki.cert.display(),
                pki.key.display()
            ),
        )
        .unwrap();
        let program = ["stunnel4", "stunnel"]
            .into_iter()
            .find(|p| {
                Command::new("which")
                    .arg(p)
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("stunnel (Debian's stunnel4; .ci/run installs it)");
        let mut cmd = Command::new(program);
        cmd.arg(&conf).stdout(Stdio::null()).stderr(Stdio::null());
        try_spawn_listening("stunnel", tls_port, cmd).map(|child| Self { child })
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn kafka_over_tls_carries_produce_and_ingest_and_refuses_a_bad_certificate() {
    let pki = Pki::new();
    // The broker advertises stunnel's port, which is known before stunnel binds it: when
    // another process takes it meanwhile, both start again on another.
    let (tls_port, _broker, _stunnel) = (0..5)
        .find_map(|_| {
            let tls_port = free_port();
            let broker = OwnBroker::start_advertising(Some(&format!("localhost:{tls_port}")));
            let stunnel = Stunnel::try_start(&pki, tls_port, broker.port)?;
            Some((tls_port, broker, stunnel))
        })
        .expect("stunnel found a free port in five tries");
    let topic = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let tls = |brokers: String, ca: &Path| {
        vec![
            ("KAFKA_BROKERS", brokers),
            ("KAFKA_TOPIC", topic.clone()),
            ("KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
            ("KAFKA_SSL_CA_LOCATION", ca.display().to_string()),
            // `localhost` may resolve to ::1 first, where stunnel does not listen; this
            // also shows a librdkafka property passed through.
            ("KAFKA_PROPERTY_BROKER_ADDRESS_FAMILY", "v4".to_owned()),
        ]
    };
    let good = tls(format!("localhost:{tls_port}"), &pki.ca);

    let (out, _, stderr) = run(order_svc()
        .args(["produce", "--count", "25", "--rps", "1000", "--seed", "11"])
        .envs(good.clone()));
    assert!(out.status.success(), "produce over TLS: {stderr}");

    let db = migrated_db();
    let mut env = good.clone();
    env.extend([
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_DLQ_TOPIC", format!("{topic}.dlq")),
        ("KAFKA_GROUP_ID", format!("{topic}-g")),
    ]);
    let serve = Serve::start(&env).await;
    let client = db.client().await;
    wait_for(60, "25 orders ingested over TLS", || async {
        (count(&client, "orders").await == 25).then_some(())
    })
    .await;
    drop(serve);

    // An issuer the client does not trust.
    let (out, _, stderr) = run(order_svc()
        .args(["produce", "--count", "1", "--seed", "1"])
        .envs(tls(format!("localhost:{tls_port}"), &pki.other_ca)));
    assert!(
        !out.status.success() && stderr.contains("certificate verify failed"),
        "{stderr}"
    );
    // The right issuer, but the certificate does not name 127.0.0.1 (librdkafka reports
    // it as a failed verification too, without naming the host name).
    let (out, _, stderr) = run(order_svc()
        .args(["produce", "--count", "1", "--seed", "1"])
        .envs(tls(format!("127.0.0.1:{tls_port}"), &pki.ca)));
    assert!(
        !out.status.success() && stderr.contains("certificate verify failed"),
        "{stderr}"
    );
    // ... and with the check turned off, the same address works.
    let mut unchecked = tls(format!("127.0.0.1:{tls_port}"), &pki.ca);
    unchecked.push(("KAFKA_SSL_ENDPOINT_IDENTIFICATION", "none".to_owned()));
    let (out, _, stderr) = run(order_svc()
        .args(["produce", "--count", "1", "--seed", "1"])
        .envs(unchecked));
    assert!(out.status.success(), "{stderr}");
}
