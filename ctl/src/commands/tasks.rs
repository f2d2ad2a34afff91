//! `berthctl tasks ls|start|kill|exec|ps|metrics|pause|resume|attach|rm`.

use std::process::ExitCode;

use berth_api::services::tasks::v1 as pb;
use berth_api::task_types::Status;
use serde::Serialize;

use super::process::{report, IoArgs};
use super::{for_each, Ctx, Done};
use crate::error::{Error, Result, RpcContext};
use crate::output::Row;
use crate::workflows::{attach, exec, tasks};

/// Task commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List tasks
    #[command(visible_alias = "list")]
    Ls {
        /// print ids only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filter, e.g. `pid==42`
        #[arg(default_value = "")]
        filter: String,
    },
    /// Start a container's task (attached unless -d)
    Start {
        /// container id
        id: String,
        /// stdio
        #[command(flatten)]
        io: IoArgs,
    },
    /// Signal a task or one of its processes
    Kill {
        /// container id
        id: String,
        /// signal: name (SIGTERM, TERM) or number
        #[arg(short, long, default_value = "SIGTERM")]
        signal: String,
        /// signal every process of the task
        #[arg(short, long)]
        all: bool,
        /// signal this exec'd process instead of the init process
        #[arg(long)]
        exec_id: Option<String>,
    },
    /// Run an extra process in a running task
    Exec {
        /// process id within the task (default: generated)
        #[arg(long)]
        exec_id: Option<String>,
        /// working directory
        #[arg(long)]
        cwd: Option<String>,
        /// environment variable KEY=value (repeatable)
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// stdio
        #[command(flatten)]
        io: IoArgs,
        /// container id
        id: String,
        /// command and arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List a task's processes
    Ps {
        /// container id
        id: String,
    },
    /// Show a task's cgroup metrics
    #[command(visible_alias = "stats")]
    Metrics {
        /// container id
        id: String,
    },
    /// Freeze a task
    Pause {
        /// container id
        id: String,
    },
    /// Thaw a task
    Resume {
        /// container id
        id: String,
    },
    /// Reattach to a task's stdio until it exits
    Attach {
        /// container id
        id: String,
    },
    /// Delete stopped tasks
    #[command(visible_aliases = ["remove", "delete", "del"])]
    Rm {
        /// container ids
        #[arg(required = true)]
        ids: Vec<String>,
        /// kill a running task first (SIGKILL)
        #[arg(short, long)]
        force: bool,
    },
}

/// One task, as listed.
#[derive(Debug, Serialize)]
pub struct TaskRow {
    /// container id
    pub id: String,
    /// init process pid
    pub pid: u32,
    /// CREATED, RUNNING, STOPPED, PAUSED, ...
    pub status: String,
    /// exit status, once stopped
    pub exit_status: Option<u32>,
}

impl Row for TaskRow {
    fn headers() -> &'static [&'static str] {
        &["TASK", "PID", "STATUS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.id.clone(), self.pid.to_string(), self.status.clone()]
    }
}

/// A wire status as containerd's upper-case word.
pub fn status_name(s: i32) -> String {
    Status::try_from(s)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| "UNKNOWN".into())
}

/// Parses a signal: `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Input(format!("signal {s:?}: out of range")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32 as u32)
        .map_err(|_| Error::Input(format!("signal {s:?}: unknown")))
}

/// Runs a task command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<ExitCode> {
    let mut t = ctx.client.tasks();
    match cmd {
        Cmd::Ls { quiet, filter } => {
            let list = t
                .list(pb::ListTasksRequest { filter })
                .await
                .context("list tasks")?
                .into_inner()
                .tasks;
            let mut rows: Vec<TaskRow> = list
                .into_iter()
                .map(|p| {
                    let stopped = p.status == Status::Stopped as i32;
                    TaskRow {
                        id: p.container_id,
                        pid: p.pid,
                        status: status_name(p.status),
                        exit_status: stopped.then_some(p.exit_status),
                    }
                })
                .collect();
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            if quiet && !ctx.out.json() {
                ctx.out.lines(rows.iter().map(|r| &r.id))?;
            } else {
                ctx.out.list(&rows)?;
            }
        }
        Cmd::Start { id, io } => {
            let outcome = tasks::start(&ctx.client, &id, &io.options()).await?;
            return report(ctx, &id, None, outcome);
        }
        Cmd::Kill {
            id,
            signal,
            all,
            exec_id,
        } => {
            let signal = parse_signal(&signal)?;
            t.kill(pb::KillRequest {
                container_id: id.clone(),
                exec_id: exec_id.unwrap_or_default(),
                signal,
                all,
            })
            .await
            .with_context(|| format!("kill task {id:?}"))?;
        }
        Cmd::Exec {
            exec_id,
            cwd,
            env,
            io,
            id,
            args,
        } => {
            let o = exec::ExecOptions {
                exec_id: exec_id.unwrap_or_else(exec::default_exec_id),
                cwd,
                env,
                args,
            };
            let outcome = exec::exec(&ctx.client, &id, &o, &io.options()).await?;
            return report(ctx, &id, Some(&o.exec_id), outcome);
        }
        Cmd::Ps { id } => {
            let procs = t
                .list_pids(pb::ListPidsRequest {
                    container_id: id.clone(),
                })
                .await
                .with_context(|| format!("list processes of task {id:?}"))?
                .into_inner()
                .processes;
            #[derive(Serialize)]
            struct P {
                pid: u32,
            }
            impl Row for P {
                fn headers() -> &'static [&'static str] {
                    &["PID"]
                }
                fn cells(&self) -> Vec<String> {
                    vec![self.pid.to_string()]
                }
            }
            let rows: Vec<P> = procs.into_iter().map(|p| P { pid: p.pid }).collect();
            ctx.out.list(&rows)?;
        }
        Cmd::Metrics { id } => super::metrics::show(ctx, &id).await?,
        Cmd::Pause { id } => {
            t.pause(pb::PauseTaskRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("pause task {id:?}"))?;
        }
        Cmd::Resume { id } => {
            t.resume(pb::ResumeTaskRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("resume task {id:?}"))?;
        }
        Cmd::Attach { id } => {
            let status = attach::attach(&ctx.client, &id).await?;
            return report(ctx, &id, None, attach::Outcome::Exited(status));
        }
        Cmd::Rm { ids, force } => {
            for_each(ctx, &ids, |id| {
                let id = id.clone();
                async move {
                    let r = tasks::delete(&ctx.client, &id, force).await?;
                    Ok(Done {
                        json: serde_json::json!({
                            "id": id, "pid": r.pid, "exit_status": r.exit_status
                        }),
                        line: id,
                    })
                }
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
