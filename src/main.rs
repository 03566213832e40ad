//! `bitcloud`: parse arguments, set up logging, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BITCLOUD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match bitcloud::cli::run(bitcloud::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bitcloud: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
