//! Composition roots: one per subcommand, each wiring adapters to the domain and running.

pub mod audit;
pub mod generate;
pub mod healthcheck;
pub mod keys;
pub mod migrate;
pub mod produce;
pub mod redrive;
pub mod serve;

use anyhow::Context;

use crate::settings::Settings;

/// Runs one subcommand to completion.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    match settings {
        // Generating is CPU and file work only: no runtime needed.
        Settings::Generate(s) => generate::run(s),
        Settings::Migrate(s) => runtime()?.block_on(migrate::run(s)),
        Settings::Serve(s) => runtime()?.block_on(serve::run(s)),
        Settings::Produce(s) => runtime()?.block_on(produce::run(s)),
        Settings::Redrive(s) => runtime()?.block_on(redrive::run(s)),
        Settings::Healthcheck(s) => runtime()?.block_on(healthcheck::run(s)),
        Settings::Keys(s) => runtime()?.block_on(keys::run(s)),
        Settings::Audit(s) => runtime()?.block_on(audit::run(s)),
        Settings::Show(text) => {
            print!("{text}");
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
