//! The PID namespace of a pod whose containers share one
//! (`namespace_options.pid = POD`, given explicitly, as the kubelet does
//! for `shareProcessNamespace`): the sandbox image's process (pause) runs
//! as the pod's own task, containerd's way, in a PID namespace of its
//! own and the pod's network, UTS and IPC namespaces; the pod's containers
//! join its PID namespace by `/proc/PID/ns/pid`, and a container asking
//! for TARGET joins its target container's the same way. Like any task,
//! the holder survives berthd's restarts (berth-shim keeps it).

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::convert::{self, Namespaces, Ns, PodFiles, UserDb};
use super::helpers::fail;
use super::metadata::{PidHolder, SandboxMetadata};
use super::{Cri, NAMESPACE};
use crate::snapshots::NewSnapshot;
use crate::tasks::{CreateTask, Stop};

/// The holder's name in its spec and logs.
const HOLDER_NAME: &str = "POD";

/// Whether pod `c` asks for a shared PID namespace. Only an explicit POD
/// counts: a config without namespace options gets a PID namespace per
/// container, as the kubelet's own default is.
pub(super) fn wants_shared_pid(c: &cri::PodSandboxConfig) -> bool {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|o| o.pid == cri::NamespaceMode::Pod as i32)
}

/// `/proc/PID/ns/pid`.
fn pid_ns(pid: u32) -> Ns {
    Ns::Join(format!("/proc/{pid}/ns/pid").into())
}

impl Cri {
    /// The init pid of task `id` in `k8s.io`, if it runs.
    async fn running_pid(&self, id: &str) -> Option<u32> {
        let p = self.inner.deps.tasks.state(NAMESPACE, id, "").await.ok()?;
        (p.status == crate::tasks::Status::Running && p.pid > 0).then_some(p.pid)
    }

    /// The PID namespace a container of pod `pod` with namespace options
    /// `own` gets: the host's (NODE), the pod holder's (POD in a pod that
    /// has one), its target's (TARGET), else its own.
    pub(super) async fn container_pid_ns(
        &self,
        pod: &SandboxMetadata,
        own: &cri::NamespaceOption,
    ) -> Result<Ns, Status> {
        let mode = cri::NamespaceMode::try_from(own.pid).unwrap_or(cri::NamespaceMode::Pod);
        match mode {
            cri::NamespaceMode::Node => Ok(Ns::Host),
            cri::NamespaceMode::Target => {
                let target = self.get_container(&own.target_id)?;
                let pid = self.running_pid(&target.id).await.ok_or_else(|| {
                    fail(
                        ErrorKind::FailedPrecondition,
                        format!("namespace_options.target_id {}: not running", target.id),
                    )
                })?;
                Ok(pid_ns(pid))
            }
            cri::NamespaceMode::Pod => match &pod.pid_holder {
                PidHolder::Pause { task } => {
                    let pid = self.running_pid(task).await.ok_or_else(|| {
                        fail(
                            ErrorKind::FailedPrecondition,
                            format!(
                                "pod sandbox {}: its PID namespace holder is not running",
                                pod.id
                            ),
                        )
                    })?;
                    Ok(pid_ns(pid))
                }
                PidHolder::None => Ok(Ns::Private),
            },
            cri::NamespaceMode::Container => Ok(Ns::Private),
        }
    }

    /// The sandbox image, pulled if it is not there.
    async fn sandbox_image(&self) -> Result<super::image_resolve::Resolved, Status> {
        let name = self.config().sandbox_image.clone();
        if let Some(r) = self.resolve_image(&name).await? {
            return Ok(r);
        }
        self.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|e| Status::new(e.code(), format!("sandbox image: {}", e.message())))?;
        self.resolve_image(&name).await?.ok_or_else(|| {
            fail(
                ErrorKind::NotFound,
                format!("sandbox image {name:?} not found"),
            )
        })
    }

    /// The holder's rootfs (a snapshot keyed by the pod id, held by
    /// `lease` until the pod's record names it) and its OCI spec.
    pub(super) async fn holder_spec(
        &self,
        m: &SandboxMetadata,
        lease: &str,
    ) -> Result<(Vec<u8>, String), Status> {
        let image = self.sandbox_image().await?;
        // The default snapshotter, named: the Snapshots domain refuses an
        // empty name since issue 19.
        let snapshots = &self.inner.deps.snapshots;
        let (snapshotter, _) = snapshots
            .resolve(snapshots.default_name())
            .map_err(|e| fail(e.kind(), e))?;
        self.inner
            .deps
            .snapshots
            .prepare(
                NAMESPACE,
                Some(lease),
                NewSnapshot {
                    snapshotter: snapshotter.clone(),
                    key: m.id.clone(),
                    parent: image.chain_id.clone(),
                    labels: Default::default(),
                },
            )
            .await
            .map_err(|e| fail(e.kind(), format!("sandbox image rootfs: {e}")))?;
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: HOLDER_NAME.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.config().sandbox_image.clone(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    readonly_rootfs: true,
                    no_new_privs: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let join = |p: &str| {
            if p.is_empty() {
                Ns::Host
            } else {
                Ns::Join(p.into())
            }
        };
        let ns = Namespaces {
            network: join(&m.netns_path),
            ipc: join(&m.ipc_path),
            uts: join(&m.uts_path),
            pid: Ns::Private,
        };
        let dir = std::path::PathBuf::from(&m.state_dir);
        let pod_files = PodFiles {
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            shm: None,
        };
        let img = super::spec_inputs::image_config(&image.config);
        let host = super::spec_inputs::host_facts(self.config().restrict_oom_score_adj);
        let hostname = m.config.hostname.clone();
        let inputs = convert::ContainerInputs {
            id: &m.id,
            sandbox_id: &m.id,
            config: &config,
            sandbox: &m.config,
            image: &img,
            image_name: &self.config().sandbox_image,
            users: &UserDb::default(),
            namespaces: &ns,
            pod_files: &pod_files,
            hostname: &hostname,
            host: &host,
        };
        let mut spec = convert::container_spec(&inputs, &convert::RealFiles)
            .map_err(|e| fail(ErrorKind::InvalidArgument, e))?;
        let mut notes = spec.annotations().clone().unwrap_or_default();
        notes.insert(
            convert::annotations::CONTAINER_TYPE.into(),
            "sandbox".into(),
        );
        spec.set_annotations(Some(notes));
        let spec = serde_json::to_vec(&spec).map_err(|e| Status::internal(e.to_string()))?;
        Ok((spec, snapshotter))
    }

    /// Creates and starts the holder task of pod `m` (its record holds
    /// the holder's spec and rootfs by now).
    pub(super) async fn start_holder(
        &self,
        m: &SandboxMetadata,
        snapshotter: &str,
    ) -> Result<(), Status> {
        let tasks = &self.inner.deps.tasks;
        let rootfs = self
            .inner
            .deps
            .snapshots
            .mounts(NAMESPACE, snapshotter, &m.id)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        tasks
            .create(
                NAMESPACE,
                CreateTask {
                    container_id: m.id.clone(),
                    rootfs,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail(e.kind(), format!("PID namespace holder: {e}")))?;
        if let Err(e) = tasks.start(NAMESPACE, &m.id, "").await {
            self.remove_holder(&m.id).await;
            return Err(fail(e.kind(), format!("PID namespace holder: {e}")));
        }
        tracing::info!(id = m.id, "pod PID namespace holder started");
        Ok(())
    }

    /// Stops pod `id`'s holder (SIGKILL: it holds nothing but the
    /// namespace) and deletes its task. Idempotent.
    pub(super) async fn stop_holder(&self, id: &str) -> Result<(), Status> {
        let how = Stop {
            signal: 9,
            grace: std::time::Duration::ZERO,
            kill_wait: std::time::Duration::from_secs(10),
        };
        let tasks = &self.inner.deps.tasks;
        tasks
            .stop(NAMESPACE, id, how)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        if tasks.exists(NAMESPACE, id) {
            match tasks.delete(NAMESPACE, id).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e.kind(), e)),
            }
        }
        Ok(())
    }

    /// Stops the holder and removes its rootfs (failures logged).
    pub(super) async fn remove_holder(&self, id: &str) {
        if let Err(e) = self.stop_holder(id).await {
            tracing::warn!(id, error = %e, "stopping a pod's PID namespace holder");
        }
        let snapshots = &self.inner.deps.snapshots;
        if let Ok((snapshotter, _)) = snapshots.resolve(snapshots.default_name()) {
            match self
                .inner
                .deps
                .snapshots
                .remove(NAMESPACE, &snapshotter, id)
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(id, error = %e, "removing the holder's rootfs"),
            }
        }
    }
}
