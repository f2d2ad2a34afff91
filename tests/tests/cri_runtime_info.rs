//! CRI Version, Status, RuntimeConfig and UpdateRuntimeConfig through the
//! `k8s-cri` client against a real berthd, plus the answers of calls that
//! are not served yet.

use berth_tests::cri::CriDaemon;
use k8s_cri::v1 as cri;

const CONFIG: &str = r#"
registry_config_path = "{dir}/certs.d"
[cri]
cni_conf_dir = "{dir}/net.d"
restrict_oom_score_adj = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_status_and_runtime_config() {
    let d = CriDaemon::start(CONFIG);
    let mut c = d.client().await;

    let v = c
        .runtime
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(v.runtime_version.starts_with('v'), "{v:?}");
    assert_eq!(v.version, "0.1.0");

    // No CNI config yet: the runtime is ready, the network is not, and
    // the condition says why.
    let conditions = |s: cri::StatusResponse| s.status.expect("status").conditions;
    let st = conditions(
        c.runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .expect("Status")
            .into_inner(),
    );
    let find = |cs: &[cri::RuntimeCondition], t: &str| {
        cs.iter()
            .find(|c| c.r#type == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} condition in {cs:?}"))
    };
    assert!(find(&st, "RuntimeReady").status);
    let net = find(&st, "NetworkReady");
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(net.message.contains("net.d"), "{net:?}");

    // A conflist appears: the network turns ready without a restart.
    let net_d = d.config_dir().join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    std::fs::write(
        net_d.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let full = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("Status verbose")
        .into_inner();
    let config = full.info.get("config").expect("verbose info has config");
    assert!(
        config.contains("\"restrict_oom_score_adj\":true"),
        "{config}"
    );
    assert!(find(&conditions(full), "NetworkReady").status);

    let rc = c
        .runtime
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner();
    assert_eq!(
        rc.linux.expect("linux").cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );

    c.runtime
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "10.90.0.0/24".into(),
                }),
            }),
        })
        .await
        .expect("UpdateRuntimeConfig");
    assert!(
        d.berthd.log().contains("pod CIDR updated"),
        "{}",
        d.berthd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_check_their_request() {
    let d = CriDaemon::start(CONFIG);
    let mut c = d.client().await;
    let e = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: "x".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        })
        .await
        .expect_err("Exec without a stream");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: "x".into(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("Exec in an unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c
        .runtime
        .port_forward(cri::PortForwardRequest::default())
        .await
        .expect_err("PortForward of an unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: "x".into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("Attach to an unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
}
