//! `berthctl run IMAGE ID [CMD...]`: create a container from an image
//! (snapshot on the image's unpacked chain, OCI spec from its config and
//! the flags), start its task, and by default stay attached until it exits
//! with its exit status.

use std::collections::HashMap;
use std::process::ExitCode;

use berth_api::services::containers::v1 as cpb;
use berth_api::services::leases::v1 as lpb;
use berth_api::services::snapshots::v1 as spb;
use prost::Message;

use super::task_io::IoArgs;
use super::{parse_labels, wire_labels, Ctx};
use crate::error::{Error, Result, RpcContext};
use crate::oci::{self, Descriptor, Platform};
use crate::spec::{self, RunSpec, Users};

/// The runtime berthd maps to berth-shim.
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";

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
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = "overlayfs")]
    pub snapshotter: String,
    /// platform of the image to run (default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
    /// container labels, key=value (repeatable)
    #[arg(long = "label")]
    pub labels: Vec<String>,
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

/// Creates the container: snapshot on the image's chain, spec, record.
/// Everything it made is removed again when a later step fails.
pub async fn create(ctx: &Ctx, a: &RunArgs) -> Result<()> {
    create_with(ctx, a, false).await
}

async fn create_with(ctx: &Ctx, a: &RunArgs, tty: bool) -> Result<()> {
    berth_api::identifiers::validate("container id", &a.id)
        .map_err(|e| Error::Input(e.to_string()))?;
    let img = super::images::get(ctx, &a.image).await?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let target: Descriptor = img
        .target
        .as_ref()
        .map(Descriptor::from)
        .unwrap_or_default();
    let resolved = oci::resolve(&ctx.client, &target, &platform).await?;
    let chain = resolved
        .chain_id()
        .ok_or_else(|| Error::Input(format!("image {:?}: its config lists no layers", a.image)))?;
    let mut snaps = ctx.client.snapshots();
    snaps
        .stat(spb::StatSnapshotRequest {
            snapshotter: a.snapshotter.clone(),
            key: chain.clone(),
        })
        .await
        .with_context(|| {
            format!(
                "image {:?} is not unpacked in snapshotter {:?} (snapshot {chain})",
                a.image,
                if a.snapshotter.is_empty() {
                    "default"
                } else {
                    &a.snapshotter
                }
            )
        })?;
    let image_user = resolved.config.config.as_ref().and_then(|c| c.user.clone());
    let user = a.user.clone().or(image_user).filter(|u| !u.is_empty());
    let users = match user.as_deref() {
        Some(u) if spec::needs_users(u) => {
            let f = crate::rootfs::read_files(
                &ctx.client,
                &a.snapshotter,
                &chain,
                &["etc/passwd", "etc/group"],
            )
            .await?;
            Users::parse(&f[0], &f[1])
        }
        _ => Users::default(),
    };
    let run = RunSpec {
        id: a.id.clone(),
        namespace: ctx.client.namespace().to_string(),
        args: a.args.clone(),
        entrypoint: a.entrypoint.clone(),
        env: a.env.clone(),
        cwd: a.cwd.clone(),
        user: a.user.clone(),
        mounts: a.mounts.clone(),
        tty,
        memory_limit: a.memory_limit,
        cpus: a.cpus,
        net_host: a.net_host,
        privileged: a.privileged,
        read_only: a.read_only,
    };
    let exec = resolved.config.config.clone().unwrap_or_default();
    let spec = spec::build(&exec, &run, &users)?;
    let labels = parse_labels(&a.labels)?;

    ensure_namespace(ctx).await?;
    // The container's own lease holds its snapshot for the container's
    // lifetime (`containers rm` deletes it). containerd relies on the
    // container record alone to root the snapshot; the lease also keeps it
    // safe from a collector that runs between Prepare and Create.
    let mut leases = ctx.client.leases();
    let lease_id = container_lease(&a.id);
    let lease = leases
        .create(lpb::CreateRequest {
            id: lease_id.clone(),
            labels: HashMap::from([(LEASE_LABEL.to_string(), a.id.clone())]),
        })
        .await
        .with_context(|| format!("create lease {lease_id:?}"))?
        .into_inner()
        .lease
        .unwrap_or_default();
    let leased = ctx.client.with_lease(&lease.id)?;
    let result = async {
        leased
            .snapshots()
            .prepare(spb::PrepareSnapshotRequest {
                snapshotter: a.snapshotter.clone(),
                key: a.id.clone(),
                parent: chain.clone(),
                labels: HashMap::new(),
            })
            .await
            .with_context(|| format!("prepare snapshot {:?}", a.id))?;
        let options = a.runtime_binary.as_ref().map(|b| prost_types::Any {
            type_url: berth_api::type_urls::RUNC_OPTIONS.into(),
            value: berth_api::runc::v1::Options {
                binary_name: b.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
        });
        let created = leased
            .containers()
            .create(cpb::CreateContainerRequest {
                container: Some(cpb::Container {
                    id: a.id.clone(),
                    labels: wire_labels(&labels),
                    image: a.image.clone(),
                    runtime: Some(cpb::container::Runtime {
                        name: a.runtime.clone(),
                        options,
                    }),
                    spec: Some(spec::to_any(&spec)?),
                    snapshotter: a.snapshotter.clone(),
                    snapshot_key: a.id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("create container {:?}", a.id));
        if created.is_err() {
            let _ = snaps
                .remove(spb::RemoveSnapshotRequest {
                    snapshotter: a.snapshotter.clone(),
                    key: a.id.clone(),
                })
                .await;
        }
        created.map(|_| ())
    }
    .await;
    if result.is_err() {
        let _ = leases
            .delete(lpb::DeleteRequest {
                id: lease.id,
                sync: false,
            })
            .await;
    }
    result
}

/// Label naming the container a berthctl lease belongs to.
pub const LEASE_LABEL: &str = "berthctl/container";

/// The id of the lease that holds container `id`'s snapshot.
/// (Long ids are hashed so the lease id stays a valid identifier.)
pub fn container_lease(id: &str) -> String {
    let name = format!("berthctl.container.{id}");
    if name.len() <= berth_api::identifiers::MAX_LEN {
        return name;
    }
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    format!("berthctl.container.{}", &h[..32])
}

/// Makes sure the namespace has a record, as containerd creates one
/// implicitly for anything stored in it: berthd's garbage collector walks
/// namespace records to find the containers that root their snapshots.
async fn ensure_namespace(ctx: &Ctx) -> Result<()> {
    use berth_api::services::namespaces::v1 as npb;
    let name = ctx.client.namespace().to_string();
    let r = ctx
        .client
        .namespaces()
        .create(npb::CreateNamespaceRequest {
            namespace: Some(npb::Namespace {
                name: name.clone(),
                labels: HashMap::new(),
            }),
        })
        .await;
    match r {
        Err(s) if s.code() != tonic::Code::AlreadyExists => Err(Error::Rpc {
            what: format!("create namespace {name:?}"),
            status: s,
        }),
        _ => Ok(()),
    }
}

/// Runs `run`: create, start, attach (unless detached), clean up with `--rm`.
pub async fn run(ctx: &Ctx, cmd: RunCmd) -> Result<ExitCode> {
    create_with(ctx, &cmd.run, cmd.io.tty).await?;
    let outcome = super::tasks::start_task(ctx, &cmd.run.id, &cmd.io).await;
    if cmd.rm {
        let cleanup = super::containers::remove(ctx, &cmd.run.id, false).await;
        let code = outcome?;
        cleanup?;
        return Ok(code);
    }
    outcome
}
