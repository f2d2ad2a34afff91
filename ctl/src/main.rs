//! `berthctl`: parse the command line, run it, turn failures into one line
//! on stderr and a non-zero exit. A command line that does not parse gets
//! clap's whole message (with its "similar subcommand" tips and the usage)
//! and exit status 2; `--help` and `--version` print to stdout, exit 0.

use std::process::ExitCode;

use berthctl::{Cli, EXIT_FAILURE};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthctl: start async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(berthctl::run(cli)) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthctl: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
