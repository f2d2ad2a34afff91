//! The one CRI client both daemons are driven through: the `k8s-cri`
//! crate's `runtime.v1` clients over the daemon's unix socket (as the
//! kubelet talks to either), and the pod and container configs the CRI
//! workloads use.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::side::SideError;

/// `runtime.v1.RuntimeService` on one connection (cheap to clone: clones
/// share the connection).
#[derive(Clone)]
pub(crate) struct Cri {
    pub(crate) runtime: RuntimeServiceClient<Channel>,
}

/// A failed call: Unimplemented means the daemon lacks it (skipped).
pub(crate) fn status_err(what: &str, s: tonic::Status) -> SideError {
    let msg = format!("{what}: {} ({:?})", s.message(), s.code());
    if s.code() == tonic::Code::Unimplemented {
        SideError::Skipped(msg)
    } else {
        SideError::Failed(msg)
    }
}

impl Cri {
    /// Connect to the CRI on `sock`.
    pub(crate) async fn connect(sock: &Path) -> Result<Cri, SideError> {
        let p = sock.to_path_buf();
        let channel = Endpoint::from_static("http://[::]:0")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = p.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }))
            .await
            .map_err(|e| SideError::Failed(format!("connect to {}: {e}", sock.display())))?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel),
        })
    }

    /// Poll `Status` until RuntimeReady and NetworkReady (60 s).
    pub(crate) async fn wait_ready(&mut self) -> Result<(), SideError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .runtime
                .status(api::StatusRequest { verbose: false })
                .await;
            let last = match answer {
                Ok(r) => {
                    let conds = r.into_inner().status.map(|s| s.conditions);
                    let conds = conds.unwrap_or_default();
                    let ready = |t: &str| conds.iter().any(|c| c.r#type == t && c.status);
                    if ready("RuntimeReady") && ready("NetworkReady") {
                        return Ok(());
                    }
                    format!("not ready: {conds:?}")
                }
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    return Err(status_err("Status", s))
                }
                Err(s) => format!("Status: {s}"),
            };
            if Instant::now() > deadline {
                return Err(SideError::Failed(format!(
                    "CRI not ready after 60 s: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// RunPodSandbox: the pod's id.
    pub(crate) async fn run_pod(
        &mut self,
        cfg: &api::PodSandboxConfig,
    ) -> Result<String, SideError> {
        Ok(self
            .runtime
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|s| status_err("RunPodSandbox", s))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// RunPodSandbox, CreateContainer and StartContainer of `image` running
    /// `sleep`: the pod's and the container's ids.
    pub(crate) async fn start_pod(
        &mut self,
        cfg: &api::PodSandboxConfig,
        image: &str,
    ) -> Result<(String, String), SideError> {
        let pod = self.run_pod(cfg).await?;
        let id = self
            .runtime
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container_config(image, cfg)),
                sandbox_config: Some(cfg.clone()),
            })
            .await
            .map_err(|s| status_err("CreateContainer", s))?
            .into_inner()
            .container_id;
        self.runtime
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(|s| status_err("StartContainer", s))?;
        Ok((pod, id))
    }

    /// StopPodSandbox then RemovePodSandbox (which removes its containers).
    pub(crate) async fn remove_pod(&mut self, pod: &str) -> Result<(), SideError> {
        self.runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .map_err(|s| status_err("StopPodSandbox", s))?;
        self.runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .map_err(|s| status_err("RemovePodSandbox", s))?;
        Ok(())
    }

    /// Ids of every pod the daemon has.
    pub(crate) async fn pods(&mut self) -> Result<Vec<String>, SideError> {
        Ok(self
            .runtime
            .list_pod_sandbox(api::ListPodSandboxRequest::default())
            .await
            .map_err(|s| status_err("ListPodSandbox", s))?
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect())
    }

    /// Remove every pod, eight at a time; how many there were.
    pub(crate) async fn remove_all_pods(&mut self) -> Result<usize, SideError> {
        let pods = self.pods().await?;
        let n = pods.len();
        let mut first_err = None;
        for chunk in pods.chunks(8) {
            let mut set = tokio::task::JoinSet::new();
            for p in chunk {
                let (mut c, p) = (self.clone(), p.clone());
                set.spawn(async move { c.remove_pod(&p).await });
            }
            while let Some(r) = set.join_next().await {
                if let Ok(Err(e)) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

/// Which PID namespace a pod's containers get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PidMode {
    /// One per container (the kubelet's default).
    Container,
    /// One per pod (`shareProcessNamespace: true`).
    Pod,
}

fn namespaces(pid: PidMode) -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: match pid {
            PidMode::Container => api::NamespaceMode::Container as i32,
            PidMode::Pod => api::NamespaceMode::Pod as i32,
        },
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A pod config as the kubelet sends one (metadata, hostname, log
/// directory, cgroup parent, namespace options; no port mappings).
pub(crate) fn pod_config(
    name: &str,
    log_dir: &Path,
    cgroup_parent: &str,
    pid: PidMode,
) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "berth-bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("{cgroup_parent}/{name}"),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pid)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container of a pod: `image` running `sleep`, logging to `c.log`.
pub(crate) fn container_config(image: &str, pod: &api::PodSandboxConfig) -> api::ContainerConfig {
    let pid = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "1000000".into()],
        log_path: "c.log".into(),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: pid,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_go_below_the_parent_in_their_pid_mode() {
        let c = pod_config("p1", Path::new("/l/p1"), "/bb-1", PidMode::Container);
        let l = c.linux.as_ref().unwrap();
        assert_eq!(l.cgroup_parent, "/bb-1/p1");
        let ns = l
            .security_context
            .as_ref()
            .unwrap()
            .namespace_options
            .as_ref()
            .unwrap();
        assert_eq!(ns.pid, api::NamespaceMode::Container as i32);
        let p = pod_config("p2", Path::new("/l/p2"), "/bb-1", PidMode::Pod);
        let cc = container_config("img", &p);
        let ns = cc
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, api::NamespaceMode::Pod as i32);
    }
}
