//! The `faultline` command line: argument types (clap derive) and one function per subcommand.
//!
//! Exit codes follow the checker's verdicts: 0 valid, 1 invalid, 2 unknown, 3 harness error
//! (bad input, Docker refused, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::control::{self, Images, NodeBinary};

/// Exit code for an error of the harness itself (not a verdict).
pub const EXIT_HARNESS_ERROR: u8 = 3;

/// Faultline: fault-injection testing for replicated databases.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for the harness's own logs (tracing's env-filter syntax).
    #[arg(long, global = true, default_value = "warn", env = "FAULTLINE_LOG")]
    pub log: String,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show Faultline's Docker images, building the missing ones (base and raftkv).
    Images(ImagesArgs),
    /// Remove containers, volumes and networks left behind by a harness that was killed.
    Clean,
}

/// Which images to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rebuild {
    /// Only the base image (debootstrap).
    Base,
    /// Only the raftkv node image.
    Raftkv,
    /// Both.
    All,
}

/// Arguments of `faultline images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Rebuild even when an image with the same content tag exists.
    #[arg(long, value_enum)]
    pub rebuild: Option<Rebuild>,
    /// Put this raftkv binary into the node image instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Only list what exists; build nothing.
    #[arg(long)]
    pub list: bool,
}

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Images(args) => images(args).await,
        Command::Clean => clean().await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_HARNESS_ERROR)
        }
    }
}

async fn images(args: ImagesArgs) -> anyhow::Result<u8> {
    let docker = control::connect().await?;
    let images = Images::new(docker, true);
    if !args.list {
        let rebuild = args.rebuild;
        images
            .ensure_base(matches!(rebuild, Some(Rebuild::Base | Rebuild::All)))
            .await?;
        let binary = match &args.node_bin {
            Some(p) => NodeBinary::from_path(p, &format!("--node-bin {}", p.display()))?,
            None => NodeBinary::workspace_raftkv(&crate::workspace::root()).await?,
        };
        images
            .ensure_node(
                &binary,
                matches!(rebuild, Some(Rebuild::Raftkv | Rebuild::All)),
            )
            .await?;
    }
    let rows = images.list().await.context("listing images")?;
    println!("{:<40} {:<14} {:>9}  created", "image", "id", "size");
    for r in rows {
        let id = r.id.trim_start_matches("sha256:");
        let created = chrono::DateTime::from_timestamp(r.created, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        println!(
            "{:<40} {:<14} {:>7.1}MB  {}",
            r.name,
            &id[..id.len().min(12)],
            r.size as f64 / 1e6,
            created.unwrap_or_default()
        );
    }
    Ok(0)
}

async fn clean() -> anyhow::Result<u8> {
    let docker = control::connect().await?;
    let gone = control::clean(&docker, None).await?;
    if gone.is_empty() {
        println!(
            "nothing to clean: no container, volume or network carries the {} label",
            control::RUN_LABEL
        );
    } else {
        println!(
            "removed {} containers, {} volumes, {} networks",
            gone.containers.len(),
            gone.volumes.len(),
            gone.networks.len()
        );
        for name in gone
            .containers
            .iter()
            .chain(&gone.volumes)
            .chain(&gone.networks)
        {
            println!("  {name}");
        }
    }
    Ok(0)
}
