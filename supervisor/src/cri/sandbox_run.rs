//! RunPodSandbox: the pod's namespaces (network, UTS with the hostname,
//! IPC) held by bind mounts under the state dir, its files (hostname,
//! resolv.conf, hosts), its CNI attachment with port mappings, and its
//! record in `k8s.io`. On any failure everything made so far is undone,
//! in reverse.

use std::path::PathBuf;

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::convert::pod_files;
use super::helpers::{fail, new_id, now_ns};
use super::metadata::{self, PidHolder, SandboxMetadata};
use super::{Cri, NAMESPACE};
use crate::network::{self, AttachRequest, PodRef, PortMapping, Protocol};
use crate::podns::{self, Kinds, PodNamespaces};

/// The interface a pod gets in its network namespace.
pub(super) const POD_IFNAME: &str = "eth0";

/// The namespace options of a pod (defaults: POD for everything).
pub(super) fn ns_options(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn port_mappings(c: &cri::PodSandboxConfig) -> Result<Vec<PortMapping>, Status> {
    let mut out = Vec::new();
    for p in &c.port_mappings {
        if p.host_port <= 0 {
            continue; // not published on the host
        }
        let port = |v: i32, what: &str| {
            u16::try_from(v).map_err(|_| {
                Status::invalid_argument(format!("port_mappings: {what} {v} is out of range"))
            })
        };
        let protocol = match cri::Protocol::try_from(p.protocol) {
            Ok(cri::Protocol::Udp) => Protocol::Udp,
            Ok(cri::Protocol::Sctp) => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let host_ip = match p.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => None,
            ip => Some(ip.parse().map_err(|_| {
                Status::invalid_argument(format!("port_mappings: host_ip {ip:?} is not an address"))
            })?),
        };
        out.push(PortMapping {
            host_port: port(p.host_port, "host_port")?,
            container_port: port(p.container_port, "container_port")?,
            protocol,
            host_ip,
        });
    }
    Ok(out)
}

/// What a run made, to undo on failure (or on stop/remove).
#[derive(Default)]
struct Made {
    state_dir: Option<PathBuf>,
    netns: Option<PathBuf>,
    podns: PodNamespaces,
    network: Option<String>,
    /// the PID namespace holder's rootfs (and maybe task)
    holder: bool,
    /// the pod's record
    record: bool,
}

impl Cri {
    /// The dir of pod network namespaces.
    pub(super) fn netns_dir(&self) -> PathBuf {
        self.state_dir().join("netns")
    }

    /// The dir of pod UTS and IPC namespaces.
    pub(super) fn podns_dir(&self) -> PathBuf {
        self.state_dir().join("podns")
    }

    /// The pod's own dir (its files).
    pub(super) fn pod_dir(&self, id: &str) -> PathBuf {
        self.state_dir().join("pods").join(id)
    }

    pub(super) async fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> Result<cri::RunPodSandboxResponse, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config: required"))?;
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("config.metadata: required"))?;
        if md.name.is_empty() || md.namespace.is_empty() || md.uid.is_empty() {
            return Err(Status::invalid_argument(
                "config.metadata: name, namespace and uid are required",
            ));
        }
        let ports = port_mappings(&config)?;
        let opts = ns_options(&config);
        if opts.pid == cri::NamespaceMode::Target as i32 {
            return Err(Status::invalid_argument(
                "namespace_options.pid: TARGET applies to containers, not pods",
            ));
        }
        let id = new_id();
        let name = metadata::sandbox_name(&md);
        let stores = &self.inner.stores;
        stores
            .sandboxes
            .reserve(&name, &id)
            .map_err(|e| Status::already_exists(e.to_string()))?;
        let mut made = Made::default();
        match self
            .run_inner(&id, &name, config, req.runtime_handler, ports, &mut made)
            .await
        {
            Ok(meta) => {
                stores.sandboxes.put(&id, meta);
                tracing::info!(id, name, "pod sandbox ready");
                Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
            }
            Err(e) => {
                self.undo(&id, made).await;
                stores.sandboxes.release(&name, &id);
                Err(e)
            }
        }
    }

    async fn run_inner(
        &self,
        id: &str,
        name: &str,
        config: cri::PodSandboxConfig,
        runtime_handler: String,
        ports: Vec<PortMapping>,
        made: &mut Made,
    ) -> Result<SandboxMetadata, Status> {
        if !runtime_handler.is_empty() && runtime_handler != "runc" {
            return Err(Status::not_found(format!(
                "runtime_handler {runtime_handler:?}: berthd has only the default handler"
            )));
        }
        let opts = ns_options(&config);
        let host_net = opts.network == cri::NamespaceMode::Node as i32;
        let host_ipc = opts.ipc == cri::NamespaceMode::Node as i32;
        let hostname = if config.hostname.is_empty() || host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };

        // Files first: nothing to unmount if they fail.
        let dir = self.pod_dir(id);
        made.state_dir = Some(dir.clone());
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let files = [
            ("hostname", pod_files::hostname(&hostname)),
            (
                "resolv.conf",
                pod_files::resolv_conf(config.dns_config.as_ref(), &host_resolv),
            ),
            ("hosts", pod_files::hosts(host_net, &host_hosts, &hostname)),
        ];
        {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&d)?;
                for (f, text) in files {
                    std::fs::write(d.join(f), text)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("pod files in {}: {e}", dir.display())))?;
        }

        // Namespaces held by bind mounts.
        let kinds = Kinds {
            uts: !host_net,
            ipc: !host_ipc,
        };
        let (podns_dir, pid, host) = (self.podns_dir(), id.to_string(), hostname.clone());
        made.podns =
            tokio::task::spawn_blocking(move || podns::create(&podns_dir, &pid, kinds, &host))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| fail(e.kind(), e))?;
        let mut ips = Vec::new();
        let mut network_name = String::new();
        if !host_net {
            let (dir, nsname) = (self.netns_dir(), format!("cri-{id}"));
            let ns = tokio::task::spawn_blocking(move || network::netns::create(&dir, &nsname))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| fail(e.kind(), e))?;
            made.netns = Some(ns.path().to_path_buf());
            let net = self
                .inner
                .networks
                .default_network()
                .await
                .map_err(|e| fail(e.kind(), format!("pod network: {e}")))?;
            made.network = Some(net.name().to_string());
            let att = net
                .attach(&AttachRequest {
                    container_id: id.to_string(),
                    netns: ns.path().to_path_buf(),
                    ifname: POD_IFNAME.into(),
                    pod: Some(PodRef {
                        namespace: config
                            .metadata
                            .as_ref()
                            .map(|m| m.namespace.clone())
                            .unwrap_or_default(),
                        name: config
                            .metadata
                            .as_ref()
                            .map(|m| m.name.clone())
                            .unwrap_or_default(),
                        uid: config.metadata.as_ref().map(|m| m.uid.clone()),
                    }),
                    port_mappings: ports,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(e.kind(), format!("pod network {}: {e}", net.name())))?;
            network_name = net.name().to_string();
            ips = att.ips().iter().map(|i| i.to_string()).collect();
        }
        let path_str = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let shared_pid = super::pid_holder::wants_shared_pid(&config);
        let mut meta = SandboxMetadata {
            id: id.to_string(),
            name: name.to_string(),
            config,
            runtime_handler,
            netns_path: path_str(&made.netns),
            uts_path: path_str(&made.podns.uts),
            ipc_path: path_str(&made.podns.ipc),
            state_dir: dir.display().to_string(),
            ips,
            pid_holder: PidHolder::None,
            created_at: now_ns(),
            network: network_name,
            ready: true,
        };
        let image = self.config().sandbox_image.clone();
        if !shared_pid {
            let spec = sandbox_spec(&meta);
            self.inner
                .deps
                .containers
                .create(NAMESPACE, metadata::sandbox_record(&meta, spec, &image))
                .await
                .map_err(|e| fail(e.kind(), e))?;
            return Ok(meta);
        }
        // A shared PID namespace: the sandbox image's process holds it,
        // as the pod's own task; its rootfs is held by a lease until the
        // record names it.
        meta.pid_holder = PidHolder::Pause {
            task: id.to_string(),
        };
        let leases = &self.inner.deps.leases;
        let lease = format!("{}{id}", super::CREATE_LEASE_PREFIX);
        leases
            .create(NAMESPACE, &lease, Default::default())
            .await
            .map_err(|e| fail(e.kind(), e))?;
        made.holder = true;
        let recorded = async {
            let (spec, snapshotter) = self.holder_spec(&meta, &lease).await?;
            let mut rec = metadata::sandbox_record(&meta, spec, &image);
            rec.snapshotter = snapshotter.clone();
            rec.snapshot_key = id.to_string();
            self.inner
                .deps
                .containers
                .create(NAMESPACE, rec)
                .await
                .map_err(|e| fail(e.kind(), e))?;
            Ok::<_, Status>(snapshotter)
        }
        .await;
        if let Err(e) = leases.delete(NAMESPACE, &lease, false).await {
            tracing::warn!(id, error = %e, "dropping the holder's create lease");
        }
        let snapshotter = recorded?;
        made.record = true;
        self.start_holder(&meta, &snapshotter).await?;
        Ok(meta)
    }

    /// Undoes what a run made (network, namespaces, files), in reverse.
    /// Each step is idempotent and logged on failure.
    async fn undo(&self, id: &str, made: Made) {
        if made.holder {
            self.remove_holder(id).await;
        }
        if made.record {
            if let Err(e) = self.inner.deps.containers.delete(NAMESPACE, id).await {
                tracing::warn!(id, error = %e, "removing the record of a failed pod");
            }
        }
        if let Some(net) = &made.network {
            self.detach_pod(id, net, made.netns.clone()).await.ok();
        }
        let Made {
            state_dir,
            netns,
            podns,
            ..
        } = made;
        tokio::task::spawn_blocking(move || {
            if let Some(p) = netns {
                if let Err(e) = network::netns::remove(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "removing a pod netns");
                }
            }
            podns::remove(&podns);
            if let Some(d) = state_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        })
        .await
        .ok();
    }

    /// CNI DEL of the pod's attachment (idempotent).
    pub(super) async fn detach_pod(
        &self,
        id: &str,
        network: &str,
        netns: Option<PathBuf>,
    ) -> Result<(), Status> {
        self.inner
            .networks
            .detach(&network::DetachRequest {
                network: network.to_string(),
                container_id: id.to_string(),
                ifname: POD_IFNAME.into(),
                netns,
                pod: None,
            })
            .await
            .map_err(|e| fail(e.kind(), format!("pod network {network}: {e}")))
    }

    /// Removes the pod's netns, UTS/IPC namespaces (when `all`) and files.
    pub(super) async fn release_pod(&self, m: &SandboxMetadata, all: bool) {
        let m = m.clone();
        tokio::task::spawn_blocking(move || {
            if !m.netns_path.is_empty() {
                if let Err(e) = network::netns::remove(std::path::Path::new(&m.netns_path)) {
                    tracing::warn!(path = m.netns_path, error = %e, "removing a pod netns");
                }
            }
            if all {
                let opt = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
                podns::remove(&PodNamespaces {
                    uts: opt(&m.uts_path),
                    ipc: opt(&m.ipc_path),
                });
                if !m.state_dir.is_empty() {
                    let _ = std::fs::remove_dir_all(&m.state_dir);
                }
            }
        })
        .await
        .ok();
    }
}

/// The pod-level OCI spec kept in the sandbox record: the namespaces its
/// containers join, the hostname and the cgroup parent.
fn sandbox_spec(m: &SandboxMetadata) -> Vec<u8> {
    let mut namespaces = Vec::new();
    for (kind, path) in [
        ("network", &m.netns_path),
        ("uts", &m.uts_path),
        ("ipc", &m.ipc_path),
    ] {
        if !path.is_empty() {
            namespaces.push(serde_json::json!({"type": kind, "path": path}));
        }
    }
    let parent = m
        .config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "hostname": m.config.hostname,
        "annotations": {
            super::convert::annotations::CONTAINER_TYPE: "sandbox",
            super::convert::annotations::SANDBOX_ID: m.id,
        },
        "linux": {"namespaces": namespaces, "cgroupsPath": parent},
    });
    serde_json::to_vec(&spec).expect("spec serialises")
}

/// The kind of error a missing pod is, for callers that must say so.
pub(super) fn pod_not_found(id: &str) -> Status {
    fail(ErrorKind::NotFound, format!("pod sandbox {id:?} not found"))
}
