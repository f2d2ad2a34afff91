//! Pods through a kill -9 of berthd (real runc and CNI plugins, as root):
//! their containers keep running and their network, the restarted berthd
//! lists and serves them, two pods reach each other, and stop/remove then
//! clean everything, the network included.

use berth_tests::cri::{
    container_config, container_status, create_start, eventually, exec, free_port, http_get,
    pod_config, pod_status, remove_pod, run_pod, stop_pod, wait_container, CriClient,
    CriRig as Rig,
};
use k8s_cri::v1 as cri;

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
        stop_pod(&mut c, p).await;
        remove_pod(&mut c, p).await;
    }
    rig.assert_clean(&[&a, &b]);
}
