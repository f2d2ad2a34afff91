//! Pods and containers through the CRI against a real berthd, real runc
//! and Debian's CNI plugins (bridge, host-local, portmap): a pod gets an
//! IP on its own bridge, a busybox httpd in it answers on that IP and on a
//! mapped 127.0.0.1 port, DNS and hostname land in the pod, ExecSync
//! returns output and exit codes and honours its timeout, logs are in the
//! CRI format and survive ReopenContainerLog, StopContainer escalates to
//! SIGKILL, bad input gets clear errors, and stop/remove leave no bridge
//! port, netns, iptables rule or lease behind (also when a test fails:
//! the rig removes its pods and bridge on drop).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::cri::{CriClient, CriDaemon};
use k8s_cri::v1 as cri;

/// A berthd with a bridge network of its own and busybox in `k8s.io`.
struct Rig {
    d: CriDaemon,
    bridge: String,
}

impl Rig {
    fn new(bridge: &str, subnet: &str) -> Self {
        let d = CriDaemon::start(
            r#"
[cri]
cni_conf_dir = "{dir}/net.d"
cni_bin_dirs = ["/usr/lib/cni"]
restrict_oom_score_adj = true
"#,
        );
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
        let tar = berth_tests::images::busybox();
        d.berthd
            .ctr_ok(&["-n", "k8s.io", "images", "import", tar.to_str().unwrap()]);
        Self {
            d,
            bridge: bridge.to_string(),
        }
    }

    async fn client(&self) -> CriClient {
        self.d.client().await
    }

    fn log_dir(&self, pod: &str) -> PathBuf {
        self.d.config_dir().join("logs").join(pod)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Remove every pod through berthd (CNI DEL: veths, portmap rules,
        // leases), then the bridge; on a separate runtime, since a test's
        // runtime may be the one dropping us.
        let socket = self.d.berthd.address();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = CriClient::connect(&socket).await;
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
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn pod_config(name: &str, log_dir: &Path, host_port: u16) -> cri::PodSandboxConfig {
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

fn container_config(name: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: berth_tests::images::BUSYBOX.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / from `addr`, retried until it answers (20 s).
fn http_get(addr: &str) -> String {
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

/// Polls `f` until true (20 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn exec(
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

async fn create_start(
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

/// The code of an answer (Ok for a success).
fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    }
}

fn is_cri_line(l: &str) -> bool {
    let f: Vec<&str> = l.splitn(4, ' ').collect();
    f.len() == 4
        && f[0].contains('T')
        && (f[0].ends_with('Z') || f[0].contains('+'))
        && (f[1] == "stdout" || f[1] == "stderr")
        && (f[2] == "F" || f[2] == "P")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn pod_network_httpd_exec_logs_and_stop() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::new("bcri7", "10.90.7.0/24");
    let mut c = rig.client().await;
    let port = free_port();
    let logs = rig.log_dir("web");
    let pod_cfg = pod_config("web", &logs, port);
    let pod = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;

    let st = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let status = st.status.clone().unwrap();
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = status.network.clone().unwrap().ip;
    assert!(ip.starts_with("10.90.7."), "pod ip {ip:?}");
    let info = st.info.get("info").expect("verbose info");
    let netns: serde_json::Value = serde_json::from_str(info).unwrap();
    let netns = PathBuf::from(netns["netNamespacePath"].as_str().unwrap());
    assert!(netns.exists(), "{netns:?}");

    // httpd, serving on the pod IP and on the mapped host port.
    let httpd = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "httpd",
            &["sh", "-c", "mkdir -p /www && echo hello-berth > /www/index.html && echo started && echo oops >&2 && exec httpd -f -p 80 -h /www"],
        ),
    )
    .await;
    http_get(&format!("{ip}:80"));
    http_get(&format!("127.0.0.1:{port}"));

    // DNS config, hostname.
    let r = exec(&mut c, &httpd, &["cat", "/etc/resolv.conf"], 10)
        .await
        .unwrap();
    let resolv = String::from_utf8_lossy(&r.stdout);
    assert!(resolv.contains("nameserver 10.90.7.53"), "{resolv}");
    assert!(resolv.contains("search example.test"), "{resolv}");
    assert!(resolv.contains("options ndots:3"), "{resolv}");
    let r = exec(&mut c, &httpd, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "web-host");

    // ExecSync: both streams, the exit code, the timeout.
    let r = exec(
        &mut c,
        &httpd,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.exit_code, 3);
    let t0 = Instant::now();
    let e = exec(&mut c, &httpd, &["sleep", "30"], 1)
        .await
        .expect_err("timeout");
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // CRI-format logs.
    let log = logs.join("httpd.log");
    eventually("httpd's log lines", || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("stdout F started") && t.contains("stderr F oops")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(is_cri_line), "{text}");

    // A container ignoring SIGTERM, writing on: its log is reopened after
    // a rotation, and StopContainer ends it with SIGKILL after the timeout.
    let ticker = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "ticker",
            &[
                "sh",
                "-c",
                "trap '' TERM; while true; do echo tick; sleep 0.1; done",
            ],
        ),
    )
    .await;
    let tlog = logs.join("ticker.log");
    eventually("ticks", || {
        std::fs::read_to_string(&tlog).is_ok_and(|t| t.contains("stdout F tick"))
    });
    std::fs::rename(&tlog, logs.join("ticker.log.1")).unwrap();
    c.runtime
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .expect("ReopenContainerLog");
    eventually("ticks in the reopened log", || {
        std::fs::read_to_string(&tlog).is_ok_and(|t| t.contains("stdout F tick"))
    });

    let list = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|c| c.state == cri::ContainerState::ContainerRunning as i32));

    let t0 = Instant::now();
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: ticker.clone(),
            timeout: 2,
        })
        .await
        .expect("StopContainer");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let st = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: ticker.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);
    assert_eq!(st.reason, "Error");
    assert!(st.finished_at >= st.started_at && st.started_at > 0);
    // Stopping again is fine.
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: ticker.clone(),
            timeout: 2,
        })
        .await
        .expect("second StopContainer");

    // The pod stops: containers end, the network goes.
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
    let st = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    assert!(!netns.exists(), "netns left after stop");
    let e = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("late", &["true"])),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect_err("a container in a stopped pod");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    let pods = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    let ctrs = c
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(ctrs.is_empty(), "{ctrs:?}");
    // Nothing of the pod is left on the host.
    let veths = Command::new("ip")
        .args(["-o", "link", "show", "master", &rig.bridge])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
        "{veths:?}"
    );
    let nat = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains(&pod),
        "portmap rules left"
    );
    let leases = rig
        .d
        .config_dir()
        .join("ipam")
        .join(format!("net-{}", rig.bridge));
    let left: Vec<_> = std::fs::read_dir(&leases)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10.90."))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "leases left: {left:?}");
    let k8s = rig
        .d
        .berthd
        .ctr_ok(&["-n", "k8s.io", "containers", "ls", "-q"]);
    assert!(k8s.trim().is_empty(), "{k8s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn bad_input_and_idempotence() {
    berth_tests::requires_root(&["runc", "ctr", "ip"]);
    let rig = Rig::new("bcri8", "10.90.8.0/24");
    let mut c = rig.client().await;
    // Unknown ids: NotFound, except stop/remove, which succeed.
    assert_eq!(
        code(
            c.runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: "nope".into(),
                    verbose: false
                })
                .await
        ),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(
            c.runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: "nope".into(),
                    verbose: false
                })
                .await
        ),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(
            c.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: "nope".into()
                })
                .await
        ),
        tonic::Code::Ok
    );
    assert_eq!(
        code(
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: "nope".into()
                })
                .await
        ),
        tonic::Code::Ok
    );
    assert_eq!(
        code(
            c.runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: "nope".into(),
                    timeout: 1
                })
                .await
        ),
        tonic::Code::Ok
    );
    assert_eq!(
        code(
            c.runtime
                .remove_container(cri::RemoveContainerRequest {
                    container_id: "nope".into()
                })
                .await
        ),
        tonic::Code::Ok
    );
    assert_eq!(
        code(
            c.runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest::default())
                .await
        ),
        tonic::Code::InvalidArgument
    );

    let logs = rig.log_dir("bad");
    let pod_cfg = pod_config("bad", &logs, free_port());
    let pod = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    // The same pod name twice is refused.
    assert_eq!(
        code(
            c.runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(pod_cfg.clone()),
                    runtime_handler: String::new()
                })
                .await
        ),
        tonic::Code::AlreadyExists
    );
    // An image that does not exist.
    let mut cfg = container_config("noimg", &["true"]);
    cfg.image = Some(cri::ImageSpec {
        image: "docker.io/library/does-not-exist:1".into(),
        ..Default::default()
    });
    let e = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect_err("missing image");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("does-not-exist"), "{e:?}");
    // run_as_group without run_as_user.
    let mut cfg = container_config("grp", &["true"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_group: Some(cri::Int64Value { value: 10 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect_err("run_as_group alone");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("run_as_group"), "{e:?}");
    // Failed creates left no container record or snapshot.
    let k8s = rig
        .d
        .berthd
        .ctr_ok(&["-n", "k8s.io", "containers", "ls", "-q"]);
    assert_eq!(k8s.trim(), pod, "only the pod's record");
    let snaps = rig.d.berthd.ctr_ok(&["-n", "k8s.io", "snapshots", "ls"]);
    assert!(!snaps.contains("Active"), "{snaps}");

    // A container whose process runs numerically as the image's user.
    let mut cfg = container_config("uid", &["id", "-u"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1234 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create_start(&mut c, &pod, &pod_cfg, cfg).await;
    let log = logs.join("uid.log");
    eventually("id's output", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("stdout F 1234"))
    });
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox of a ready pod");
    assert_eq!(
        code(
            c.runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: false
                })
                .await
        ),
        tonic::Code::NotFound
    );
}
