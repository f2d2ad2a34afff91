//! A Kubernetes CRI client for the end-to-end tests: the `k8s-cri` crate's
//! generated `runtime.v1` clients over berthd's unix socket, a berthd
//! started with a `[cri]` config of the test's choosing, and [`CriRig`]: such
//! a berthd with a bridge network of its own and busybox in `k8s.io`, which
//! removes its pods, network leftovers and bridge on drop (also when a test
//! fails) and can check that nothing of a pod is left.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::Berthd;

/// The two CRI services on one connection.
#[derive(Clone)]
pub struct CriClient {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub images: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI on `socket` (berthd's own socket).
    pub async fn connect(socket: &Path) -> Self {
        let channel = crate::grpc::channel(socket).await;
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }
}

/// A berthd with a config file holding the given `[cri]` table and
/// top-level keys, on temp dirs (removed with it).
pub struct CriDaemon {
    /// The daemon (dropped first: it stops and cleans up its dir).
    pub berthd: Berthd,
    /// Holds the config file and what the test puts beside it (CNI confs).
    pub dir: tempfile::TempDir,
}

impl CriDaemon {
    /// Starts berthd with `config` (TOML) as its config file. `config` may
    /// name `{dir}`, replaced by this daemon's config directory.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir()
            .expect("temp dir");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        let berthd = Berthd::start_with(&["--config", path.to_str().unwrap()]);
        Self { berthd, dir }
    }

    /// The config directory (for CNI confs and the like).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A CRI client on this daemon.
    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.berthd.address()).await
    }
}

/// A berthd with a bridge network of its own (`net-BRIDGE`, CNI bridge,
/// host-local leases in the config dir, portmap) and busybox in `k8s.io`.
pub struct CriRig {
    /// The daemon and its config dir.
    pub d: CriDaemon,
    /// The bridge's name.
    pub bridge: String,
    /// Dropped last: the host-wide rule for CNI's shared chains
    /// (see `cni_host`).
    _chains: crate::cni_host::SharedChains,
}

impl CriRig {
    /// A rig on bridge `bridge` with pods in `subnet`.
    pub fn new(bridge: &str, subnet: &str) -> Self {
        Self::with_config(bridge, subnet, "", "")
    }

    /// A rig whose config file also has `extra` (TOML, top-level keys) and
    /// `cri` (keys of the `[cri]` table).
    pub fn with_config(bridge: &str, subnet: &str, extra: &str, cri: &str) -> Self {
        let chains = crate::cni_host::SharedChains::guard();
        let d = CriDaemon::start(&format!(
            r#"{extra}
[cri]
cni_conf_dir = "{{dir}}/net.d"
cni_bin_dirs = ["/usr/lib/cni"]
restrict_oom_score_adj = true
{cri}
"#
        ));
        let dir = d.config_dir();
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("net-{bridge}"),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                          "dataDir": dir.join("ipam").display().to_string()}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ]
        });
        std::fs::write(dir.join("net.d/10-test.conflist"), conf.to_string()).unwrap();
        let tar = crate::images::busybox();
        d.berthd
            .ctr_ok(&["-n", "k8s.io", "images", "import", tar.to_str().unwrap()]);
        Self {
            d,
            bridge: bridge.to_string(),
            _chains: chains,
        }
    }

    /// A CRI client on the rig's berthd.
    pub async fn client(&self) -> CriClient {
        self.d.client().await
    }

    /// The CNI network's name.
    pub fn network(&self) -> String {
        format!("net-{}", self.bridge)
    }

    /// A log directory for pod `pod`.
    pub fn log_dir(&self, pod: &str) -> PathBuf {
        self.d.config_dir().join("logs").join(pod)
    }

    /// The host-local leases of the rig's network (the IPs handed out).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.d.config_dir().join("ipam").join(self.network()))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that nothing of the pods `pods` (removed by now) is left:
    /// no port on the bridge, no nat rule or chain, no lease, no mount,
    /// no record in `k8s.io`.
    pub fn assert_clean(&self, pods: &[&str]) {
        let veths = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
            "ports left on {}: {veths:?}",
            self.bridge
        );
        let nat = crate::cni_host::nat_table();
        for p in pods {
            assert!(!nat.contains(p), "nat rules of pod {p} left:\n{nat}");
        }
        let (chains, rules) = crate::cni_host::network_leftovers(&self.network());
        assert!(
            chains.is_empty() && rules.is_empty(),
            "{chains:?} {rules:?}"
        );
        let leases = self.leases();
        assert!(leases.is_empty(), "leases left: {leases:?}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        for p in pods {
            assert!(!mounts.contains(p), "mounts of pod {p} left:\n{mounts}");
        }
        let k8s = self
            .d
            .berthd
            .ctr_ok(&["-n", "k8s.io", "containers", "ls", "-q"]);
        assert!(k8s.trim().is_empty(), "records left: {k8s}");
    }
}

impl Drop for CriRig {
    fn drop(&mut self) {
        // Remove every pod through berthd (CNI DEL: veths, portmap rules,
        // leases), on a runtime of its own, since a test's runtime may be
        // the one dropping us; then whatever a dead berthd could not, and
        // the bridge.
        let socket = self.d.berthd.address();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let connect =
                    tokio::time::timeout(Duration::from_secs(5), CriClient::connect(&socket));
                let Ok(mut c) = connect.await else {
                    return;
                };
                let Ok(pods) = c
                    .runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await
                else {
                    return;
                };
                for p in pods.into_inner().items {
                    let _ = c
                        .runtime
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: p.id,
                        })
                        .await;
                }
            });
        })
        .join()
        .ok();
        crate::cni_host::remove_network_leftovers(&self.network());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// A pod config named `name`, logging to `log_dir`, mapping 127.0.0.1's
/// `host_port` (TCP) to its port 80, with DNS options and a hostname.
pub fn pod_config(name: &str, log_dir: &Path, host_port: u16) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        log_directory: log_dir.display().to_string(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.90.7.53".into()],
            searches: vec!["example.test".into()],
            options: vec!["ndots:3".into()],
        }),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: host_port as i32,
            host_ip: "127.0.0.1".into(),
        }],
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

/// A busybox container `name` running `cmd`, logging to `NAME.log`.
pub fn container_config(name: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: crate::images::BUSYBOX.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / from `addr`, retried until the answer holds "hello-berth" (20 s).
pub fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match got {
            Ok(body) if body.contains("hello-berth") => return body,
            other => assert!(
                Instant::now() < deadline,
                "no answer from {addr}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until true (30 s).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ExecSync of `cmd` in container `id`.
pub async fn exec(
    c: &mut CriClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

/// RunPodSandbox of `cfg`: the pod's id.
pub async fn run_pod(c: &mut CriClient, cfg: &cri::PodSandboxConfig) -> String {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id
}

/// StopPodSandbox of `pod` (its containers end, its network goes).
pub async fn stop_pod(c: &mut CriClient, pod: &str) {
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .expect("StopPodSandbox");
}

/// RemovePodSandbox of `pod`.
pub async fn remove_pod(c: &mut CriClient, pod: &str) {
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .expect("RemovePodSandbox");
}

/// The pod's status.
pub async fn pod_status(c: &mut CriClient, pod: &str) -> cri::PodSandboxStatus {
    c.runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .unwrap()
}

/// CreateContainer then StartContainer: the container's id.
pub async fn create_start(
    c: &mut CriClient,
    pod: &str,
    pod_cfg: &cri::PodSandboxConfig,
    cfg: cri::ContainerConfig,
) -> String {
    let id = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
    id
}

/// The container's status.
pub async fn container_status(c: &mut CriClient, id: &str) -> cri::ContainerStatus {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .unwrap()
}

/// The code of an answer (Ok for a success).
pub fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    }
}

/// Whether `l` is a line of the kubelet's CRI log format.
pub fn is_cri_line(l: &str) -> bool {
    let f: Vec<&str> = l.splitn(4, ' ').collect();
    f.len() == 4
        && f[0].contains('T')
        && (f[0].ends_with('Z') || f[0].contains('+'))
        && (f[1] == "stdout" || f[1] == "stderr")
        && (f[2] == "F" || f[2] == "P")
}

/// Polls the container's status until `f` holds (30 s); that status.
pub async fn wait_container(
    c: &mut CriClient,
    id: &str,
    what: &str,
    mut f: impl FnMut(&cri::ContainerStatus) -> bool,
) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = container_status(c, id).await;
        if f(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `events` until container `id`'s event of `kind` (30 s); that event.
pub async fn next_event(
    events: &mut tonic::Streaming<cri::ContainerEventResponse>,
    id: &str,
    kind: cri::ContainerEventType,
) -> cri::ContainerEventResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = tokio::time::timeout_at(deadline, events.message())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} event of {id}"))
            .expect("event stream")
            .expect("event stream open");
        if e.container_id == id && e.container_event_type == kind as i32 {
            return e;
        }
    }
}
