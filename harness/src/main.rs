// TEMPORARY wiring (checker branch) so that `faultline check` can be tried end to end;
// the lead wires `check_cmd` into the real CLI.
mod check_cmd;

use clap::Parser as _;

#[derive(clap::Parser)]
#[command(name = "faultline")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Check a recorded history.
    Check(check_cmd::CheckArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Check(a) => check_cmd::run(&a)?,
    };
    std::process::exit(code)
}
