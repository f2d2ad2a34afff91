//! Pods and containers through the CRI against a real berthd, real runc
//! and Debian's CNI plugins (bridge, host-local, portmap): a pod gets an
//! IP on its own bridge, a busybox httpd in it answers on that IP and on a
//! mapped 127.0.0.1 port, DNS and hostname land in the pod, ExecSync
//! returns output and exit codes and honours its timeout, logs are in the
//! CRI format and survive ReopenContainerLog, StopContainer escalates to
//! SIGKILL, a container over its memory limit is OOMKilled, events,
//! stats, resource updates and the CRI gauges follow the containers, pods
//! survive a kill -9 of berthd and reach each other, bad input gets clear
//! errors, and stop/remove leave no bridge port, netns, iptables rule or
//! lease behind (also when a test fails: the rig removes its pods, their
//! nat chains and its bridge on drop).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_tests::cri::{
    code, container_config, container_status, create_start, eventually, exec, free_port, http_get,
    is_cri_line, next_event, pod_config, pod_status, run_pod, wait_container, CriClient,
    CriRig as Rig,
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

/// The metrics endpoint's text (berthd started with `metrics_address`).
fn metrics(rig: &Rig) -> String {
    const LINE: &str = "metrics and health endpoint listening";
    let mut addr = None;
    eventually("the metrics endpoint", || {
        let log = rig.d.berthd.log();
        addr = log
            .lines()
            .rev()
            .find(|l| l.contains(LINE))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
            })
            .map(|a| a.trim_matches('"').to_string());
        addr.is_some()
    });
    let addr = addr.unwrap();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /v1/metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of gauge line `series` (e.g. `berth_cri_pods{state="ready"}`).
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn oom_events_stats_update_and_metrics() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let rig = Rig::with_config(
        "bcri10",
        "10.90.10.0/24",
        r#"metrics_address = "127.0.0.1:0""#,
        "",
    );
    let mut c = rig.client().await;
    let mut events = c
        .runtime
        .get_container_events(cri::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    let logs = rig.log_dir("hog");
    let pod_cfg = pod_config("hog", &logs, free_port());
    let pod = run_pod(&mut c, &pod_cfg).await;

    // A container over its 32 MiB limit (no swap here): OOM-killed.
    let mut cfg = container_config("hog", &["tail", "/dev/zero"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = create_start(&mut c, &pod, &pod_cfg, cfg).await;
    let st = wait_container(&mut c, &hog, "the hog's exit", |s| {
        s.state == cri::ContainerState::ContainerExited as i32
    })
    .await;
    assert_eq!(st.exit_code, 137, "{st:?}");
    assert_eq!(st.reason, "OOMKilled", "{st:?}");

    // Its events, in order, each with the pod's status.
    use cri::ContainerEventType as E;
    let e = next_event(&mut events, &hog, E::ContainerCreatedEvent).await;
    assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod);
    next_event(&mut events, &hog, E::ContainerStartedEvent).await;
    let e = next_event(&mut events, &hog, E::ContainerStoppedEvent).await;
    let mine = e
        .containers_statuses
        .iter()
        .find(|s| s.id == hog)
        .expect("the hog's status in its stopped event");
    assert_eq!(mine.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(
        e.pod_sandbox_status.unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );

    // A container writing 5 MB to its writable layer, then idling.
    let idler = create_start(
        &mut c,
        &pod,
        &pod_cfg,
        container_config(
            "idler",
            &[
                "sh",
                "-c",
                "head -c 5000000 /dev/urandom > /big; echo written; while true; do sleep 1; done",
            ],
        ),
    )
    .await;
    let log = logs.join("idler.log");
    eventually("the write", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("stdout F written"))
    });
    let s = c
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: idler.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(s.attributes.as_ref().unwrap().id, idler);
    let cpu = s.cpu.expect("cpu");
    assert!(cpu.usage_core_nano_seconds.unwrap().value > 0, "{cpu:?}");
    let mem = s.memory.expect("memory");
    assert!(mem.working_set_bytes.unwrap().value > 0, "{mem:?}");
    let layer = s.writable_layer.expect("writable layer");
    assert!(layer.used_bytes.unwrap().value >= 5_000_000, "{layer:?}");
    // A second sample gives a CPU rate.
    let list = c
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats;
    assert_eq!(list.len(), 2, "{list:?}");
    let again = list
        .iter()
        .find(|s| s.attributes.as_ref().unwrap().id == idler)
        .unwrap();
    assert!(again.cpu.as_ref().unwrap().usage_nano_cores.is_some());
    let ps = c
        .runtime
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .unwrap();
    let linux = ps.linux.unwrap();
    assert_eq!(linux.containers.len(), 2);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    let all = c
        .runtime
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);

    // New resources reach the running container's cgroup and its status.
    c.runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: idler.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");
    let r = exec(
        &mut c,
        &idler,
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "67108864");
    let st = container_status(&mut c, &idler).await;
    let res = st.resources.unwrap().linux.unwrap();
    assert_eq!(res.memory_limit_in_bytes, 64 << 20);
    assert_eq!(
        code(
            c.runtime
                .update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: "nope".into(),
                    ..Default::default()
                })
                .await
        ),
        tonic::Code::NotFound
    );

    // The CRI gauges follow.
    let m = metrics(&rig);
    assert_eq!(
        gauge(&m, r#"berth_cri_pods{state="ready"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        gauge(&m, r#"berth_cri_containers{state="running"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        gauge(&m, r#"berth_cri_containers{state="exited"}"#),
        Some(1.0),
        "{m}"
    );
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
    next_event(&mut events, &idler, E::ContainerStoppedEvent).await;
    let m = metrics(&rig);
    assert_eq!(
        gauge(&m, r#"berth_cri_pods{state="notready"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        gauge(&m, r#"berth_cri_containers{state="exited"}"#),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        gauge(&m, r#"berth_cri_containers{state="running"}"#),
        None,
        "{m}"
    );

    c.runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: idler.clone(),
        })
        .await
        .expect("RemoveContainer");
    let e = next_event(&mut events, &idler, E::ContainerDeletedEvent).await;
    assert!(e.containers_statuses.iter().all(|s| s.id != idler));
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    next_event(&mut events, &hog, E::ContainerDeletedEvent).await;
    rig.assert_clean(&[&pod]);
}

/// GET / of `ip`:80 from inside container `id` (busybox nc: its wget
/// crashes on this machine's kernel).
async fn get_from(c: &mut CriClient, id: &str, ip: &str) -> String {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80");
    let r = exec(c, id, &["sh", "-c", &script], 20)
        .await
        .expect("ExecSync nc");
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn pods_survive_kill9_of_berthd_and_reach_each_other() {
    berth_tests::requires_root(&["runc", "ctr", "ip", "iptables-save"]);
    let mut rig = Rig::new("bcri9", "10.90.9.0/24");
    let mut c = rig.client().await;
    let signal = tempfile::tempdir().unwrap();
    let port = free_port();
    let (logs_a, logs_b) = (rig.log_dir("alpha"), rig.log_dir("beta"));
    let cfg_a = pod_config("alpha", &logs_a, port);
    let mut cfg_b = pod_config("beta", &logs_b, 0);
    cfg_b.port_mappings.clear();
    let a = run_pod(&mut c, &cfg_a).await;
    let b = run_pod(&mut c, &cfg_b).await;
    let ip_a = pod_status(&mut c, &a).await.network.unwrap().ip;

    let web = create_start(
        &mut c,
        &a,
        &cfg_a,
        container_config(
            "web",
            &["sh", "-c", "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www"],
        ),
    )
    .await;
    // Exits with 7 once the host says so (while berthd is down).
    let mut cfg = container_config(
        "quitter",
        &[
            "sh",
            "-c",
            "while [ ! -e /signal/go ]; do sleep 0.1; done; exit 7",
        ],
    );
    cfg.mounts = vec![cri::Mount {
        container_path: "/signal".into(),
        host_path: signal.path().display().to_string(),
        ..Default::default()
    }];
    let quitter = create_start(&mut c, &a, &cfg_a, cfg).await;
    let client = create_start(
        &mut c,
        &b,
        &cfg_b,
        container_config("client", &["sleep", "3600"]),
    )
    .await;
    http_get(&format!("{ip_a}:80"));
    assert!(get_from(&mut c, &client, &ip_a)
        .await
        .contains("hello-berth"));

    let info = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: quitter.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let quitter_pid = info["pid"].as_i64().unwrap() as i32;
    assert!(quitter_pid > 0);

    // berthd dies; the pods run on and answer; the quitter exits.
    rig.d.berthd.kill9();
    http_get(&format!("{ip_a}:80"));
    http_get(&format!("127.0.0.1:{port}"));
    std::fs::write(signal.path().join("go"), "").unwrap();
    eventually("the quitter's exit during the downtime", || {
        !berth_tests::process::alive(quitter_pid)
    });
    rig.d.berthd.restart();
    let mut c = rig.client().await;

    let pods = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods
        .iter()
        .all(|p| p.state == cri::PodSandboxState::SandboxReady as i32));
    let st = wait_container(&mut c, &quitter, "the quitter's exit", |s| {
        s.state == cri::ContainerState::ContainerExited as i32
    })
    .await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"), "{st:?}");
    assert!(st.finished_at > st.started_at, "{st:?}");
    for id in [&web, &client] {
        let st = container_status(&mut c, id).await;
        assert_eq!(
            st.state,
            cri::ContainerState::ContainerRunning as i32,
            "{st:?}"
        );
    }
    let list = c
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(list.len(), 3);
    assert_eq!(pod_status(&mut c, &a).await.network.unwrap().ip, ip_a);
    // A container made after the restart joins the pod's namespaces and
    // files, which the restart left alone.
    let late = create_start(
        &mut c,
        &b,
        &cfg_b,
        container_config("late", &["sleep", "3600"]),
    )
    .await;
    assert!(get_from(&mut c, &late, &ip_a).await.contains("hello-berth"));
    let r = exec(&mut c, &late, &["cat", "/etc/resolv.conf"], 10)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("nameserver 10.90.7.53"),
        "{r:?}"
    );
    let log = rig.d.berthd.log();
    assert!(
        !log.contains("orphan bundle") && !log.contains("orphan mount"),
        "the restart took CRI files for orphans:\n{log}"
    );
    http_get(&format!("127.0.0.1:{port}"));
    assert!(get_from(&mut c, &client, &ip_a)
        .await
        .contains("hello-berth"));

    // Stop and remove clean everything, the network included.
    for p in [&a, &b] {
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.to_string(),
            })
            .await
            .expect("StopPodSandbox");
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.to_string(),
            })
            .await
            .expect("RemovePodSandbox");
    }
    rig.assert_clean(&[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn hosts_toml_maps_a_registry_for_berthctl_and_cri_pulls() {
    berth_tests::requires_root(&["docker-registry", "skopeo"]);
    let reg = berth_tests::registry::Registry::start();
    reg.push_test_image("busybox", "oci-gzip");
    let d = berth_tests::cri::CriDaemon::start(
        r#"registry_config_path = "{dir}/certs.d"
[cri]
cni_conf_dir = "{dir}/net.d"
"#,
    );
    // mirror.test exists nowhere: only its hosts.toml leads to the registry.
    let host_dir = d.config_dir().join("certs.d").join("mirror.test");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://mirror.test\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let pulled = d
        .berthd
        .json(&["images", "pull", "mirror.test/busybox:oci-gzip"]);
    assert_eq!(pulled["name"], "mirror.test/busybox:oci-gzip", "{pulled}");
    let ls = d.berthd.berthctl_ok(&["images", "ls", "-q"]);
    assert!(
        ls.lines().any(|l| l == "mirror.test/busybox:oci-gzip"),
        "{ls}"
    );

    let mut c = d.client().await;
    let r = c
        .images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "mirror.test/busybox:oci-gzip".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("CRI PullImage through hosts.toml")
        .into_inner();
    assert!(r.image_ref.starts_with("sha256:"), "{r:?}");
    let st = c
        .images
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: "mirror.test/busybox:oci-gzip".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let img = st.image.expect("the pulled image");
    assert!(img
        .repo_tags
        .iter()
        .any(|t| t == "mirror.test/busybox:oci-gzip"));
    // A hosts.toml with no host fit to pull from: a clear refusal, and
    // no lookup of the name anywhere.
    let push_only = d.config_dir().join("certs.d").join("pushonly.test");
    std::fs::create_dir_all(&push_only).unwrap();
    std::fs::write(
        push_only.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\ncapabilities = [\"push\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let e = d
        .berthd
        .berthctl_fails(&["images", "pull", "pushonly.test/busybox:oci-gzip"]);
    assert!(e.contains("pushonly.test") && e.contains("pull"), "{e}");
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
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.to_string(),
            })
            .await
            .expect("StopPodSandbox");
    }
    assert_eq!(
        container_status(&mut c, &a).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    for p in [&pod, &pod2] {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.to_string(),
            })
            .await
            .expect("RemovePodSandbox");
    }
    let tasks = rig.d.berthd.ctr_ok(&["-n", "k8s.io", "tasks", "ls", "-q"]);
    assert!(tasks.trim().is_empty(), "{tasks}");
    let snaps = rig.d.berthd.ctr_ok(&["-n", "k8s.io", "snapshots", "ls"]);
    assert!(!snaps.contains("Active"), "{snaps}");
    rig.assert_clean(&[&pod, &pod2]);
}
