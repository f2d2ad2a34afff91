//! Containers through the CRI (real berthd, runc, CNI plugins, as root): a
//! container over its memory limit ends OOMKilled with exit 137; events,
//! stats, resource updates and the CRI gauges follow the containers.

use std::io::{Read, Write};
use std::net::TcpStream;

use berth_tests::cri::{
    code, container_config, container_status, create_start, eventually, exec, free_port,
    next_event, pod_config, run_pod, wait_container, CriRig as Rig,
};
use k8s_cri::v1 as cri;

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
