//! The `faultline` binary: parses the command line and hands it to [`faultline::cli::main_sync`]
//! or, for the commands that need it, [`faultline::cli::main_async`] on tokio's runtime.
//! Commands that do no I/O with Docker or the network (`check`, `report`, `compare`, `list`)
//! run without starting tokio's runtime, which would spawn a worker thread per core first.

use std::process::ExitCode;

use clap::Parser;
use faultline::cli::{Cli, main_async, main_sync};

fn main() -> ExitCode {
    faultline::cli::mark_start();
    faultline_checker::tune_allocator();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let cli = match main_sync(cli) {
        Ok(code) => return code,
        Err(cli) => *cli,
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(main_async(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(faultline::cli::EXIT_HARNESS_ERROR)
        }
    }
}
