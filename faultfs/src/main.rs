//! The `faultfs` binary: parses arguments and calls [`faultfs::run`], [`faultfs::serve`],
//! [`faultfs::send`] or [`faultfs::corrupt`]. See the library docs (`src/lib.rs`) for the layout
//! and `README.md` for use.
//!
//! - `run`, `mount`: the FUSE layer (keep writes until fsync, drop them, stall fsync).
//! - `ctl`: one command to a running faultfs over its control socket.
//! - `corrupt`: no mount; damages plain files of a stopped node's data directory, as Jepsen does:
//!
//!   ```text
//!   faultfs corrupt --root DIR --glob PATTERN [--glob PATTERN...] --seed N
//!                   (--bitflip-prob P | --bitflips K | --truncate-max BYTES) [--files F]
//!   ```
//!
//!   Among the non-empty regular files under `--root` whose relative path matches a `--glob`
//!   (`*` within a component, `**` across components; symlinks not followed), sorted by path,
//!   the seed (ChaCha8) picks F and flips K distinct bits in each, flips each bit with
//!   probability P (geometric gaps; at least one flip), or cuts a log-uniform tail of
//!   1..=min(BYTES, size) bytes. The files are written in place and fsynced. It prints one line:
//!   `{"root":"/data","matched":2,"files":[{"path":"wal/0.wal","size":4096,"bitflips":[[17,3]]}]}`
//!   (a truncation reports `"truncated_to"` and `"cut"` instead of `"bitflips"`; nothing matched:
//!   `"matched":0,"files":[]`). Exit 0 on success or no match, 1 on an I/O error (the message
//!   names the file), 2 on bad arguments.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

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
    /// Damage plain files of a stopped node's data directory: seeded bit flips or a cut tail.
    ///
    /// Prints one line of JSON: {"root", "matched", "files": [{"path", "size", "bitflips":
    /// [[offset, bit], ...]} or {"path", "size", "truncated_to", "cut"}]}. Exit status: 0 (also when
    /// nothing matched), 1 on an I/O error, 2 on bad arguments.
    Corrupt(CorruptArgs),
}

#[derive(Args)]
#[command(group(
    ArgGroup::new("damage")
        .required(true)
        .args(["bitflip_prob", "bitflips", "truncate_max"])
))]
struct CorruptArgs {
    /// The data directory; file paths are matched and reported relative to it.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Files to choose from, relative to --root: `*` within a component, `**` across components,
    /// `?`, `[a-z]`. Repeatable.
    #[arg(long = "glob", value_name = "PATTERN", required = true)]
    globs: Vec<faultfs::Pattern>,
    /// Seed for every random choice (ChaCha8): the same seed on the same files does the same damage.
    #[arg(long, value_name = "N")]
    seed: u64,
    /// Flip each bit with probability P, 0 < P <= 1 (at least one bit per file).
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    bitflip_prob: Option<f64>,
    /// Flip K distinct random bits in each file (every bit if the file has fewer).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    bitflips: Option<u64>,
    /// Cut a random tail of 1..=min(BYTES, size) bytes, log-uniformly (small cuts more likely).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    truncate_max: Option<u64>,
    /// How many of the matching non-empty files to damage.
    #[arg(long, default_value_t = 1, value_name = "F", value_parser = clap::value_parser!(u64).range(1..))]
    files: u64,
}

impl CorruptArgs {
    fn damage(&self) -> faultfs::Damage {
        match (self.bitflip_prob, self.bitflips, self.truncate_max) {
            (Some(p), _, _) => faultfs::Damage::BitflipProb(p),
            (_, Some(k), _) => faultfs::Damage::Bitflips(k),
            (_, _, Some(max)) => faultfs::Damage::TruncateMax(max),
            (None, None, None) => unreachable!("clap requires one of the damage flags"),
        }
    }
}

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err(format!("{s} is not a probability in (0, 1]"))
    }
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
        Cmd::Corrupt(args) => {
            let files = usize::try_from(args.files).unwrap_or(usize::MAX);
            return match faultfs::corrupt(&args.root, &args.globs, args.seed, args.damage(), files)
            {
                Ok(report) => {
                    let line = serde_json::to_string(&report).expect("a report serializes");
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("faultfs corrupt: {e}");
                    ExitCode::from(1)
                }
            };
        }
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
