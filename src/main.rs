//! `bitcloud`: parse arguments, set up logging, run the command.

use clap::Parser;

/// `bitcloud up`: the daemon, on a single-threaded runtime (the node is one state machine).
fn run_daemon(config: &std::path::Path) -> anyhow::Result<()> {
    let cfg = bitcloud::config::Config::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bitcloud::daemon::run(cfg))
}

fn main() -> std::process::ExitCode {
    let spec = std::env::var("BITCLOUD_LOG").unwrap_or_else(|_| "info".into());
    // sqlx logs every statement and ureq every RPC request at debug: keep them quiet unless
    // asked for by name.
    let mut spec = spec;
    for noisy in ["sqlx", "ureq", "ureq_proto", "rustls"] {
        if !spec.contains(noisy) {
            spec = format!("{spec},{noisy}=warn");
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(spec))
        .with_writer(std::io::stderr)
        .init();
    let cli = bitcloud::cli::Cli::parse();
    let result = match cli.cmd {
        bitcloud::cli::Cmd::Up => run_daemon(&cli.config),
        _ => bitcloud::cli::run(cli),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bitcloud: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
