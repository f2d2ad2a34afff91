//! What the commands that start a process share (`run`, `tasks start`,
//! `tasks exec`, `tasks attach`): the stdio flags and how the outcome is
//! reported.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Ctx;
use crate::error::Result;
use crate::workflows::attach::{IoOptions, Outcome};

/// How a new process's stdio is wired (`run`, `tasks start`, `tasks exec`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IoArgs {
    /// allocate a terminal (stdin must be one for an interactive session)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// return once the process started (it keeps running)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// connect the process's stdio to /dev/null
    #[arg(long, conflicts_with = "log_file")]
    pub null_io: bool,
    /// append the process's stdout and stderr to this file
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

impl IoArgs {
    /// The workflow's options.
    pub fn options(&self) -> IoOptions {
        IoOptions {
            tty: self.tty,
            detach: self.detach,
            null_io: self.null_io,
            log_file: self.log_file.clone(),
        }
    }
}

/// Reports how a started process ended up: a detached one's id and pid
/// (JSON only; a table prints nothing, as before), an attached one's exit
/// status as ours.
pub fn report(ctx: &Ctx, id: &str, exec_id: Option<&str>, outcome: Outcome) -> Result<ExitCode> {
    match outcome {
        Outcome::Detached { pid } => {
            if ctx.out.json() {
                let mut v = serde_json::json!({"id": id, "pid": pid});
                if let Some(e) = exec_id {
                    v["exec_id"] = e.into();
                }
                ctx.out.json_value(&v)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Exited(status) => Ok(ExitCode::from(exit_code(status))),
    }
}

/// An exit status as a process exit code (255 at most).
pub fn exit_code(status: u32) -> u8 {
    status.min(255) as u8
}
