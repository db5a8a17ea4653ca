use std::process::ExitCode;

use order_svc::settings::{self, Invocation, ParseError};
use order_svc::{app, telemetry};

fn main() -> ExitCode {
    // A .env file is optional; one that exists but cannot be read is a setting error.
    // Only the working directory's .env: dotenvy::dotenv() would also search parent folders.
    if let Err(e) = dotenvy::from_path(".env")
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {}", settings::dotenv_error(&e));
        return ExitCode::from(2);
    }
    // Every setting from every source, checked before any work starts: a bad one exits 2.
    let invocation = match settings::parse(std::env::args_os().collect()).map(Invocation::new) {
        Ok(Ok(invocation)) => invocation,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Settings(e)) | Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Held to the end: dropping it exports the spans still buffered.
    let _telemetry = match telemetry::init(invocation.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match app::run(invocation.settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
