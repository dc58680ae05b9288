//! The `faultline` binary: parses the command line and hands it to [`faultline::cli::main`].

use std::process::ExitCode;

use clap::Parser;
use faultline::cli::{Cli, main as cli_main};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    cli_main(cli).await
}
