//! Pod sandboxes through the CRI against a real berthd, real runc and
//! Debian's CNI plugins (bridge, host-local, portmap): a pod gets an IP on
//! its own bridge, a busybox httpd in it answers on that IP and on a mapped
//! 127.0.0.1 port, DNS and hostname land in the pod, ExecSync returns
//! output and exit codes and honours its timeout, logs are in the CRI
//! format and survive ReopenContainerLog, StopContainer escalates to
//! SIGKILL; shared and target PID namespaces (the pause holder). Stop and
//! remove leave no bridge port, netns, iptables rule or lease behind (also
//! when a test fails: the rig removes its pods, their nat chains and its
//! bridge on drop). The other CRI suites: cri_containers, cri_errors,
//! cri_images, cri_restart, cri_runtime_info, cri_streaming.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_tests::cri::{
    container_config, container_status, create_start, eventually, exec, free_port, http_get,
    is_cri_line, pod_config, remove_pod, run_pod, stop_pod, CriRig as Rig,
};
use k8s_cri::v1 as cri;

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
    rig.assert_clean(&[&pod]);
}

/// A pause stand-in made from the busybox test image with umoci: PID 1
/// that waits for ever and ends on SIGTERM. Imported into `k8s.io` as
/// `PAUSE`.
const PAUSE: &str = "docker.io/berthtest/pause:test";

fn run(cmd: &mut std::process::Command, what: &str) {
    berth_tests::check(cmd.output().unwrap(), what);
}

fn import_pause(rig: &Rig) {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(berth_tests::images::busybox())
            .arg("-C")
            .arg(&layout),
        "tar -x",
    );
    let image = format!("{}:oci-gzip", layout.display());
    run(
        std::process::Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--tag",
            "pause",
            "--config.entrypoint",
            "sh",
            "--config.entrypoint",
            "-c",
            "--config.entrypoint",
            "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done",
        ]),
        "umoci config",
    );
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "pause");
    manifests[0]["annotations"]["io.containerd.image.name"] = PAUSE.into();
    std::fs::write(&index_path, index.to_string()).unwrap();
    let tar = work.path().join("pause.tar");
    run(
        std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&layout)
            .arg("."),
        "tar -c",
    );
    rig.d
        .berthd
        .ctr_ok(&["-n", "k8s.io", "images", "import", tar.to_str().unwrap()]);
}

fn with_pid(mode: cri::NamespaceMode, target: &str) -> cri::NamespaceOption {
    cri::NamespaceOption {
        pid: mode as i32,
        target_id: target.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn shared_and_target_pid_namespaces() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "umoci", "tar"]);
    let mut rig = Rig::with_config(
        "bcri11",
        "10.90.11.0/24",
        "",
        &format!("sandbox_image = {PAUSE:?}"),
    );
    import_pause(&rig);
    let mut c = rig.client().await;

    // POD: the holder is PID 1, and each container sees the other's.
    let mut cfg = pod_config("shared", &rig.log_dir("shared"), 0);
    cfg.port_mappings.clear();
    cfg.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(with_pid(cri::NamespaceMode::Pod, "")),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run_pod(&mut c, &cfg).await;
    let a = create_start(
        &mut c,
        &pod,
        &cfg,
        container_config("a", &["sleep", "1111"]),
    )
    .await;
    let b = create_start(
        &mut c,
        &pod,
        &cfg,
        container_config("b", &["sleep", "2222"]),
    )
    .await;
    let r = exec(&mut c, &a, &["cat", "/proc/1/cmdline"], 10)
        .await
        .unwrap();
    let init = String::from_utf8_lossy(&r.stdout).replace('\0', " ");
    assert!(init.contains("trap"), "PID 1 is the holder: {init:?}");
    let r = exec(&mut c, &b, &["ps", "-o", "args"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&r.stdout);
    assert!(
        ps.contains("sleep 1111") && ps.contains("sleep 2222"),
        "{ps}"
    );
    // The holder outlives a kill -9 of berthd: a container made after the
    // restart joins the same PID namespace.
    rig.d.berthd.kill9();
    rig.d.berthd.restart();
    let mut c = rig.client().await;
    let late = create_start(
        &mut c,
        &pod,
        &cfg,
        container_config("late", &["sleep", "5555"]),
    )
    .await;
    let r = exec(&mut c, &late, &["ps", "-o", "args"], 10)
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.stdout);
    assert!(
        ps.contains("sleep 1111") && ps.contains("sleep 5555"),
        "{ps}"
    );

    // TARGET: a container in another pod's container's PID namespace
    // (here a pod of its own PID per container).
    let mut cfg2 = pod_config("target", &rig.log_dir("target"), 0);
    cfg2.port_mappings.clear();
    let pod2 = run_pod(&mut c, &cfg2).await;
    let t1 = create_start(
        &mut c,
        &pod2,
        &cfg2,
        container_config("t1", &["sleep", "3333"]),
    )
    .await;
    let mut t2cfg = container_config("t2", &["sleep", "4444"]);
    t2cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(with_pid(cri::NamespaceMode::Target, &t1)),
            ..Default::default()
        }),
        ..Default::default()
    });
    let t2 = create_start(&mut c, &pod2, &cfg2, t2cfg).await;
    let r = exec(&mut c, &t2, &["ps", "-o", "args"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&r.stdout);
    assert!(
        ps.contains("sleep 3333") && ps.contains("sleep 4444"),
        "{ps}"
    );
    // Without namespace options, a container's processes are its own.
    let r = exec(&mut c, &t1, &["cat", "/proc/1/cmdline"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "sleep\x003333\x00");

    for p in [&pod, &pod2] {
        stop_pod(&mut c, p).await;
    }
    assert_eq!(
        container_status(&mut c, &a).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    for p in [&pod, &pod2] {
        remove_pod(&mut c, p).await;
    }
    let tasks = rig.d.berthd.ctr_ok(&["-n", "k8s.io", "tasks", "ls", "-q"]);
    assert!(tasks.trim().is_empty(), "{tasks}");
    let snaps = rig.d.berthd.ctr_ok(&["-n", "k8s.io", "snapshots", "ls"]);
    assert!(!snaps.contains("Active"), "{snaps}");
    rig.assert_clean(&[&pod, &pod2]);
}
