//! CreateContainer: the image resolved in `k8s.io`, a writable snapshot on
//! its top chain, the OCI spec from `convert` (the image config merged
//! with the CRI config, the pod's namespaces joined by path), and the
//! container's record. The task is created at StartContainer, as
//! containerd does. On failure nothing is left (snapshot, record, name).

use std::path::{Path, PathBuf};

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::convert::{self, Namespaces, Ns, PodFiles, UserDb};
use super::helpers::{fail, new_id, now_ns};
use super::metadata::{self, ContainerMetadata, SandboxMetadata};
use super::sandbox_run::ns_options;
use super::spec_inputs::{host_facts, image_config};
use super::{Cri, NAMESPACE};
use crate::snapshots::NewSnapshot;

/// Leases that hold a CRI container's rootfs while it is created; any left
/// by a crash are dropped at start-up.
pub const CREATE_LEASE_PREFIX: &str = "berth-cri-create-";

/// The image's `/etc/passwd` and `/etc/group`, read from the rootfs
/// mounted at a scratch dir (and unmounted again). Blocking.
fn read_user_db(mounts: &[berth_snapshotter::Mount], scratch: &Path) -> UserDb {
    if std::fs::create_dir_all(scratch).is_err() {
        return UserDb::default();
    }
    let db = match berth_snapshotter::mount::mount_all(mounts, scratch) {
        Ok(()) => {
            let read = |f: &str| std::fs::read_to_string(scratch.join(f)).unwrap_or_default();
            let db = UserDb::parse(&read("etc/passwd"), &read("etc/group"));
            let _ = nix::mount::umount2(scratch, nix::mount::MntFlags::MNT_DETACH);
            db
        }
        Err(e) => {
            tracing::warn!(error = %e, "mounting a rootfs to read its users");
            UserDb::default()
        }
    };
    let _ = std::fs::remove_dir(scratch);
    db
}

/// The namespace options of container `c` of pod `m` (the pod's unless it
/// gives its own).
fn own_ns_options(m: &SandboxMetadata, c: &cri::ContainerConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_else(|| ns_options(&m.config))
}

/// How a container of pod `m` gets its namespaces: the pod's network, IPC
/// and UTS, and `pid` (see [`Cri::container_pid_ns`]).
fn namespaces(m: &SandboxMetadata, pid: Ns) -> Namespaces {
    let join = |p: &str| {
        if p.is_empty() {
            Ns::Host
        } else {
            Ns::Join(PathBuf::from(p))
        }
    };
    Namespaces {
        network: join(&m.netns_path),
        ipc: join(&m.ipc_path),
        uts: join(&m.uts_path),
        pid,
    }
}

/// What a CreateContainer has settled before it makes anything.
#[derive(Clone, Copy)]
struct NewContainer<'a> {
    /// the new id
    id: &'a str,
    /// the reserved unique name
    name: &'a str,
    /// its pod
    pod: &'a SandboxMetadata,
    /// the image, resolved in `k8s.io`
    image: &'a super::image_resolve::Resolved,
    /// the image as the kubelet named it
    image_name: &'a str,
    /// the snapshotter of its rootfs
    snapshotter: &'a str,
    /// its PID namespace
    pid: &'a Ns,
}

impl Cri {
    pub(super) async fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<cri::CreateContainerResponse, Status> {
        let pod = self
            .inner
            .stores
            .sandboxes
            .get(&req.pod_sandbox_id)
            .map_err(|e| fail(ErrorKind::NotFound, e))?;
        if !pod.ready {
            return Err(fail(
                ErrorKind::FailedPrecondition,
                format!("pod sandbox {} is not ready (stopped)", pod.id),
            ));
        }
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config: required"))?;
        let cmd = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("config.metadata: required"))?;
        if cmd.name.is_empty() {
            return Err(Status::invalid_argument("config.metadata.name: required"));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self.resolve_image(&image_name).await?.ok_or_else(|| {
            fail(
                ErrorKind::NotFound,
                format!("image {image_name:?} not found"),
            )
        })?;
        let pid = self
            .container_pid_ns(&pod, &own_ns_options(&pod, &config))
            .await?;
        let pod_md = pod.config.metadata.clone().unwrap_or_default();
        let id = new_id();
        let name = metadata::container_name(&cmd, &pod_md);
        let stores = &self.inner.stores;
        stores
            .containers
            .reserve(&name, &id)
            .map_err(|e| Status::already_exists(e.to_string()))?;
        let snapshots = &self.inner.deps.snapshots;
        let snapshotter = match snapshots.resolve(snapshots.default_name()) {
            Ok((s, _)) => s,
            Err(e) => {
                stores.containers.release(&name, &id);
                return Err(fail(e.kind(), e));
            }
        };
        // A lease holds the rootfs from prepare until the record names it:
        // a GC run between the two would take an unreferenced snapshot
        // (containerd's clients hold one the same way).
        let leases = &self.inner.deps.leases;
        let lease = format!("{CREATE_LEASE_PREFIX}{id}");
        if let Err(e) = leases.create(NAMESPACE, &lease, Default::default()).await {
            stores.containers.release(&name, &id);
            return Err(fail(e.kind(), e));
        }
        let new = NewContainer {
            pid: &pid,
            id: &id,
            name: &name,
            pod: &pod,
            image: &image,
            image_name: &image_name,
            snapshotter: &snapshotter,
        };
        let made = self.create_leased(&new, config, &lease).await;
        if let Err(e) = leases.delete(NAMESPACE, &lease, false).await {
            tracing::warn!(id, error = %e, "dropping the create lease");
        }
        made
    }

    /// CreateContainer's part under its lease.
    async fn create_leased(
        &self,
        new: &NewContainer<'_>,
        config: cri::ContainerConfig,
        lease: &str,
    ) -> Result<cri::CreateContainerResponse, Status> {
        let (id, name, snapshotter) = (
            new.id.to_string(),
            new.name.to_string(),
            new.snapshotter.to_string(),
        );
        let (image, image_name) = (new.image, new.image_name);
        let stores = &self.inner.stores;
        let snaps = &self.inner.deps.snapshots;
        let mounts = match snaps
            .prepare(
                NAMESPACE,
                Some(lease),
                NewSnapshot {
                    snapshotter: snapshotter.clone(),
                    key: id.clone(),
                    parent: image.chain_id.clone(),
                    labels: Default::default(),
                },
            )
            .await
        {
            Ok(m) => m,
            Err(e) => {
                stores.containers.release(&name, &id);
                return Err(fail(
                    e.kind(),
                    format!("rootfs of image {image_name} (is it unpacked?): {e}"),
                ));
            }
        };
        match self.create_record(new, config, mounts).await {
            Ok(meta) => {
                let meta = stores.containers.put(&id, meta);
                tracing::info!(id, name, pod = new.pod.id, "container created");
                self.emit(&meta, cri::ContainerEventType::ContainerCreatedEvent);
                Ok(cri::CreateContainerResponse { container_id: id })
            }
            Err(e) => {
                if let Err(e) = snaps.remove(NAMESPACE, &snapshotter, &id).await {
                    tracing::warn!(id, error = %e, "removing the snapshot of a failed create");
                }
                stores.containers.release(&name, &id);
                Err(e)
            }
        }
    }

    /// The spec and record of a container whose rootfs is `mounts`.
    async fn create_record(
        &self,
        new: &NewContainer<'_>,
        config: cri::ContainerConfig,
        mounts: Vec<berth_snapshotter::Mount>,
    ) -> Result<ContainerMetadata, Status> {
        let NewContainer {
            id,
            name,
            pod,
            image,
            image_name,
            snapshotter,
            pid,
        } = *new;
        let scratch = self.state_dir().join("tmp").join(id);
        let users = tokio::task::spawn_blocking(move || read_user_db(&mounts, &scratch))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let img = image_config(&image.config);
        let ns = namespaces(pod, pid.clone());
        let dir = PathBuf::from(&pod.state_dir);
        let pod_files = PodFiles {
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            shm: None,
        };
        let hostname = std::fs::read_to_string(&pod_files.hostname)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let host = host_facts(self.config().restrict_oom_score_adj);
        let inputs = convert::ContainerInputs {
            id,
            sandbox_id: &pod.id,
            config: &config,
            sandbox: &pod.config,
            image: &img,
            image_name,
            users: &users,
            namespaces: &ns,
            pod_files: &pod_files,
            hostname: &hostname,
            host: &host,
        };
        let spec = convert::container_spec(&inputs, &convert::RealFiles).map_err(|e| {
            let kind = match e.kind() {
                convert::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                convert::ErrorKind::FailedPrecondition => ErrorKind::FailedPrecondition,
            };
            fail(kind, e)
        })?;
        let spec = serde_json::to_vec(&spec).map_err(|e| Status::internal(e.to_string()))?;
        let log_path = if pod.config.log_directory.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            Path::new(&pod.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        let image_ref = image
            .records
            .iter()
            .find(|r| r.name.contains('@'))
            .or(image.records.first())
            .map(|r| r.name.clone())
            .unwrap_or_else(|| image.id.clone());
        let meta = ContainerMetadata {
            id: id.to_string(),
            name: name.to_string(),
            sandbox_id: pod.id.clone(),
            config,
            image_id: image.id.clone(),
            image_ref,
            log_path,
            created_at: now_ns(),
            snapshotter: snapshotter.to_string(),
            started_at: 0,
            oom_killed: false,
        };
        self.inner
            .deps
            .containers
            .create(
                NAMESPACE,
                metadata::container_record(&meta, spec, snapshotter),
            )
            .await
            .map_err(|e| fail(e.kind(), e))?;
        Ok(meta)
    }
}
