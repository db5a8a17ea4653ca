//! Composition roots: one per subcommand, each wiring adapters to the domain and running.

pub mod generate;
pub mod migrate;
pub mod produce;
pub mod serve;

use crate::cli::Command;

/// Runs one subcommand to completion.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // Generating is CPU and file work only: no runtime needed.
        Command::Generate(args) => generate::run(args),
        Command::Migrate(args) => runtime()?.block_on(migrate::run(args)),
        Command::Serve(args) => runtime()?.block_on(serve::run(args)),
        Command::Produce(args) => runtime()?.block_on(produce::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
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
