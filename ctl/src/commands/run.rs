//! `berthctl run IMAGE ID [CMD...]` and `containers create`: the flags;
//! the work is `workflows::run` (create a container from an image, start
//! its task, by default stay attached until it exits, with its exit
//! status).

use std::process::ExitCode;

use super::process::{report, IoArgs};
use super::Ctx;
use crate::error::Result;
use crate::labels::{parse_labels, wire_labels};
use crate::spec::RunSpec;
use crate::workflows::create::{CreateOptions, DEFAULT_RUNTIME, DEFAULT_SNAPSHOTTER};

/// `run` and `containers create` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// image name (as `images ls` shows it)
    pub image: String,
    /// container id
    pub id: String,
    /// command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// environment variable KEY=value (repeatable)
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// mount: type=bind,src=/host,dst=/ctr,options=rbind:ro (repeatable)
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// working directory
    #[arg(long)]
    pub cwd: Option<String>,
    /// user: uid[:gid] or name[:group] from the image
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// replace the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// memory limit in bytes
    #[arg(long)]
    pub memory_limit: Option<i64>,
    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long)]
    pub cpus: Option<f64>,
    /// use the host's network namespace
    #[arg(long)]
    pub net_host: bool,
    /// all capabilities and devices
    #[arg(long)]
    pub privileged: bool,
    /// read-only root filesystem
    #[arg(long)]
    pub read_only: bool,
    /// OCI runtime binary for this container: runc, crun or a path
    #[arg(long)]
    pub runtime_binary: Option<String>,
    /// runtime name
    #[arg(long, default_value = DEFAULT_RUNTIME)]
    pub runtime: String,
    /// snapshotter: overlayfs or native
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    pub snapshotter: String,
    /// platform of the image to run (default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
    /// container labels, key=value (repeatable)
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

impl RunArgs {
    /// The workflow's options; `tty` when the process gets a terminal.
    pub fn options(&self, tty: bool) -> Result<CreateOptions> {
        Ok(CreateOptions {
            image: self.image.clone(),
            spec: RunSpec {
                id: self.id.clone(),
                namespace: String::new(),
                args: self.args.clone(),
                entrypoint: self.entrypoint.clone(),
                env: self.env.clone(),
                cwd: self.cwd.clone(),
                user: self.user.clone(),
                mounts: self.mounts.clone(),
                tty,
                memory_limit: self.memory_limit,
                cpus: self.cpus,
                net_host: self.net_host,
                privileged: self.privileged,
                read_only: self.read_only,
            },
            runtime: self.runtime.clone(),
            runtime_binary: self.runtime_binary.clone(),
            snapshotter: self.snapshotter.clone(),
            platform: self.platform.clone(),
            labels: wire_labels(&parse_labels(&self.labels)?),
        })
    }
}

/// `run` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunCmd {
    /// remove the task, container and snapshot once it exits
    #[arg(long, conflicts_with = "detach")]
    pub rm: bool,
    /// stdio
    #[command(flatten)]
    pub io: IoArgs,
    /// what to run
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `run`: create, start, attach (unless detached), clean up with `--rm`.
pub async fn run(ctx: &Ctx, cmd: RunCmd) -> Result<ExitCode> {
    let options = cmd.run.options(cmd.io.tty)?;
    let outcome =
        crate::workflows::run::run(&ctx.client, &options, &cmd.io.options(), cmd.rm).await?;
    report(ctx, &cmd.run.id, None, outcome)
}
