//! Bad input through the CRI, and its idempotent verbs (real berthd, runc
//! and CNI plugins, as root): unknown pod and container IDs are NotFound
//! except for stop and remove, which succeed; a pod name used twice, an
//! image that does not exist and run_as_group without run_as_user are
//! refused with a clear error and leave no record or snapshot; run_as_user
//! is honoured; removing a ready pod removes its containers.

use berth_tests::cri::{
    code, container_config, create_start, eventually, free_port, pod_config, CriRig as Rig,
};
use k8s_cri::v1 as cri;

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
