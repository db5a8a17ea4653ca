//! bench-http's token case: an OpenID provider of this process (discovery and a JWKS with one
//! EC P-256 key, on a port of its own), tokens it signs, and oha runs with and without them.

use std::net::SocketAddr;
use std::process::Command;

use base64::Engine;
use serde_json::json;

pub const AUDIENCE: &str = "order-svc-bench";

pub struct Provider {
    pub issuer: String,
    key: jsonwebtoken::EncodingKey,
    _server: actix_web::dev::ServerHandle,
}

impl Provider {
    /// Serves `/.well-known/openid-configuration` and `/jwks` on its own thread.
    pub fn start() -> anyhow::Result<Self> {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let raw = pair.public_key_raw().to_vec();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256",
                         "x": b64(&raw[1..33]), "y": b64(&raw[33..65])});
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let base = issuer.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    let (base, jwk) = (base.clone(), jwk.clone());
                    App::new()
                        .route(
                            "/.well-known/openid-configuration",
                            web::get().to(move || {
                                let base = base.clone();
                                async move {
                                    HttpResponse::Ok().json(
                                        json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}),
                                    )
                                }
                            }),
                        )
                        .route(
                            "/jwks",
                            web::get().to(move || {
                                let jwk = jwk.clone();
                                async move { HttpResponse::Ok().json(json!({"keys": [jwk]})) }
                            }),
                        )
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("the provider listens")
                .run();
                let _ = tx.send(server.handle());
                let _ = server.await;
            });
        });
        Ok(Self {
            issuer,
            key: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            _server: rx.recv()?,
        })
    }

    /// A token for a member of `group`, valid for an hour.
    pub fn token(&self, group: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("bench".into());
        let claims = json!({"iss": self.issuer, "aud": AUDIENCE, "sub": format!("bench-{group}"),
                            "groups": [group], "iat": now, "exp": now + 3600});
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// oha, closed loop, over the cached uids: requests per second and p99 (ms), and how many
/// answers were not 200.
fn closed(
    urls: &std::path::Path,
    connections: usize,
    seconds: u64,
    token: Option<&str>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut command = Command::new("oha");
    command.args(["--no-tui", "--output-format", "json"]).args([
        "-z",
        &format!("{seconds}s"),
        "-c",
        &connections.to_string(),
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command.arg("--urls-from-file").arg(urls).output()?;
    anyhow::ensure!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let total: f64 = report["statusCodeDistribution"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
    let ok = report["statusCodeDistribution"]["200"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((
        report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        report["latencyPercentiles"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1000.0,
        total - ok,
    ))
}

/// Anonymous against the support and viewer tokens, alternating, BENCH_RUNS times.
pub fn compare(
    addr: SocketAddr,
    uids: &[String],
    connections: usize,
    seconds: u64,
    provider: &Provider,
) -> anyhow::Result<()> {
    if Command::new("oha").arg("--version").output().is_err() {
        println!("oha not found: the token case needs it (`cargo install oha`)");
        return Ok(());
    }
    let runs: usize = super::common::env_or("BENCH_RUNS", 3);
    let urls =
        std::env::temp_dir().join(format!("bench-http-tok-{}", uuid::Uuid::new_v4().simple()));
    let picks = (0..100_000u64)
        .map(|i| {
            format!(
                "http://{addr}/order/{}\n",
                uids[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % uids.len()]
            )
        })
        .collect::<String>();
    std::fs::write(&urls, picks)?;
    let support = provider.token("support")?;
    let viewer = provider.token("viewer")?;
    println!();
    println!(
        "authentication (oha closed loop, {connections} connections, {seconds} s each; ratio to the anonymous run before it):"
    );
    println!(
        "{:<4} {:<18} {:>10} {:>9} {:>9} {:>7}",
        "run", "caller", "req/s", "p99 ms", "non-200", "ratio"
    );
    let mut ratios: Vec<(f64, f64)> = Vec::new();
    for run in 1..=runs {
        let anonymous = closed(&urls, connections, seconds, None)?;
        let with_support = closed(&urls, connections, seconds, Some(&support))?;
        let with_viewer = closed(&urls, connections, seconds, Some(&viewer))?;
        for (name, r) in [
            ("anonymous (all)", anonymous),
            ("token support", with_support),
            ("token viewer", with_viewer),
        ] {
            println!(
                "{run:<4} {name:<18} {:>10.0} {:>9.3} {:>9} {:>7.2}",
                r.0,
                r.1,
                r.2,
                r.0 / anonymous.0
            );
        }
        ratios.push((with_support.0 / anonymous.0, with_viewer.0 / anonymous.0));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "tokens (this run): support {:.2}, viewer {:.2} of anonymous throughput (medians of {runs})",
        median(ratios.iter().map(|r| r.0).collect()),
        median(ratios.iter().map(|r| r.1).collect())
    );
    let _ = std::fs::remove_file(&urls);
    Ok(())
}
