//! `bitcloud`: parse arguments, set up logging, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let spec = std::env::var("BITCLOUD_LOG").unwrap_or_else(|_| "info".into());
    // sqlx logs every statement at debug: keep it quiet unless asked for by name.
    let spec = if spec.contains("sqlx") {
        spec
    } else {
        format!("{spec},sqlx=warn")
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(spec))
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
