//! The `faultfs` binary: parses arguments and calls [`faultfs::run`], [`faultfs::serve`] or
//! [`faultfs::send`]. See the library docs (`src/lib.rs`) for the layout and `README.md` for use.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The storage-fault filesystem: keeps writes until fsync, drops them on command, stalls fsync.
#[derive(Parser)]
#[command(name = "faultfs", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount, run CMD as a child (signals forwarded), unmount when it exits; exit with its code.
    Run {
        #[command(flatten)]
        fs: FsArgs,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Mount in the foreground until SIGTERM, SIGINT, SIGHUP or SIGQUIT, then unmount.
    Mount {
        #[command(flatten)]
        fs: FsArgs,
    },
    /// Send one command to a running faultfs and print the answer.
    ///
    /// Commands: drop (alias clear-cache), stall MS, unstall, status. Exit status: 0 on an `ok`
    /// answer, 1 on an `error` answer, 2 if faultfs cannot be reached.
    Ctl {
        /// The control socket.
        #[arg(long, env = "FAULTFS_CONTROL", value_name = "SOCK")]
        control: PathBuf,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// The command and its arguments, e.g. `stall 1500`.
        #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Args)]
struct FsArgs {
    /// Directory holding the durable (fsynced) data; created if missing.
    #[arg(long, value_name = "DIR")]
    backing: PathBuf,
    /// Mount point; created if missing. May be the backing directory itself.
    #[arg(long, value_name = "DIR")]
    mount: PathBuf,
    /// Control socket path; a stale socket file is replaced.
    #[arg(long, env = "FAULTFS_CONTROL", value_name = "SOCK")]
    control: PathBuf,
    /// Open files with FOPEN_DIRECT_IO (no kernel page cache; mmap needs a 6.6+ kernel).
    #[arg(long)]
    direct_io: bool,
    /// FUSE request threads.
    #[arg(long, default_value_t = 4, value_name = "N")]
    threads: usize,
}

impl FsArgs {
    fn options(self) -> faultfs::Options {
        faultfs::Options {
            backing: self.backing,
            mount: self.mount,
            control: self.control,
            direct_io: self.direct_io,
            threads: self.threads,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { fs, command } => faultfs::run(&fs.options(), &command),
        Cmd::Mount { fs } => faultfs::serve(&fs.options()),
        Cmd::Ctl {
            control,
            timeout,
            command,
        } => {
            return match faultfs::send(&control, &command.join(" "), Duration::from_secs(timeout)) {
                Ok(answer) => {
                    println!("{answer}");
                    if answer == "ok" || answer.starts_with("ok ") {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("faultfs ctl: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("faultfs: {e}");
            ExitCode::from(if matches!(e, faultfs::Error::Spawn { .. }) {
                127
            } else {
                1
            })
        }
    }
}
