use std::process::ExitCode;

use clap::Parser;
use order_svc::{app, cli::Cli, telemetry};

fn main() -> ExitCode {
    // A .env file is optional; one that exists but cannot be read is a setting error.
    // Only the working directory's .env: dotenvy::dotenv() would also search parent folders.
    if let Err(e) = dotenvy::from_path(".env")
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(cli.log_format) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match app::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
