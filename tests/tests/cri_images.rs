//! Images through the CRI and berthctl with a registry reached only
//! through its hosts.toml (real berthd and docker-registry, as root).

use k8s_cri::v1 as cri;

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
