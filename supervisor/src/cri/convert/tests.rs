//! The whole conversion against fakes: a typical kubelet request, then
//! the rules one at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use super::*;

/// A fake host: known paths, symlinks, device nodes and file texts.
#[derive(Debug, Default, Clone)]
pub(crate) struct FakeFiles {
    paths: BTreeMap<PathBuf, PathBuf>,
    devs: BTreeMap<PathBuf, DeviceNode>,
    texts: BTreeMap<PathBuf, String>,
}

impl FakeFiles {
    pub(crate) fn file(mut self, p: &str) -> Self {
        self.paths.insert(p.into(), p.into());
        self
    }
    pub(crate) fn link(mut self, from: &str, to: &str) -> Self {
        self.paths.insert(from.into(), to.into());
        self
    }
    pub(crate) fn dev(mut self, p: &str, d: DeviceNode) -> Self {
        self.devs.insert(p.into(), d);
        self
    }
    pub(crate) fn text(mut self, p: &str, t: &str) -> Self {
        self.texts.insert(p.into(), t.into());
        self
    }
}

fn not_found() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotFound)
}

impl HostFiles for FakeFiles {
    fn resolve(&self, path: &Path) -> std::io::Result<PathBuf> {
        self.paths.get(path).cloned().ok_or_else(not_found)
    }
    fn device(&self, path: &Path) -> std::io::Result<DeviceNode> {
        self.devs.get(path).cloned().ok_or_else(not_found)
    }
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.texts.get(path).cloned().ok_or_else(not_found)
    }
}

fn pod_config(privileged: bool) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/burstable/poduid-1".into(),
            sysctls: [(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
            .into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Fixture {
    config: cri::ContainerConfig,
    sandbox: cri::PodSandboxConfig,
    image: ImageConfig,
    users: UserDb,
    ns: Namespaces,
    files: PodFiles,
    host: HostFacts,
}

impl Fixture {
    fn new() -> Self {
        Self {
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox:1".into(),
                    ..Default::default()
                }),
                envs: vec![cri::KeyValue {
                    key: "A".into(),
                    value: "cri".into(),
                }],
                ..Default::default()
            },
            sandbox: pod_config(false),
            image: ImageConfig {
                entrypoint: vec!["/bin/entry".into()],
                cmd: vec!["serve".into()],
                env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()],
                working_dir: "/srv".into(),
                user: "".into(),
            },
            users: UserDb::parse("root:x:0:0::/:/bin/sh\n", "root:x:0:\n"),
            ns: Namespaces {
                network: Ns::Join("/run/berth/netns/p1".into()),
                ipc: Ns::Join("/run/berth/pods/p1/ipc".into()),
                uts: Ns::Join("/run/berth/pods/p1/uts".into()),
                pid: Ns::Private,
            },
            files: PodFiles {
                hosts: "/run/p1/hosts".into(),
                resolv_conf: "/run/p1/resolv.conf".into(),
                hostname: "/run/p1/hostname".into(),
                shm: Some("/run/p1/shm".into()),
            },
            host: HostFacts {
                bounding_caps: berth_api::caps::ALL.iter().map(|c| c.to_string()).collect(),
                oom_score_adj_floor: None,
                host_devices: vec![],
            },
        }
    }

    fn spec(&self) -> Result<Value, Error> {
        self.spec_with(&FakeFiles::default())
    }

    fn spec_with(&self, files: &FakeFiles) -> Result<Value, Error> {
        let i = ContainerInputs {
            id: "c1",
            sandbox_id: "p1",
            config: &self.config,
            sandbox: &self.sandbox,
            image: &self.image,
            image_name: "busybox:1",
            users: &self.users,
            namespaces: &self.ns,
            pod_files: &self.files,
            hostname: "web-0",
            host: &self.host,
        };
        container_spec(&i, files).map(|s| serde_json::to_value(s).unwrap())
    }

    fn sc(&mut self) -> &mut cri::LinuxContainerSecurityContext {
        self.config
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }
}

#[test]
fn a_typical_container() {
    let s = Fixture::new().spec().unwrap();
    assert_eq!(s["process"]["args"], json!(["/bin/entry", "serve"]));
    assert_eq!(
        s["process"]["env"],
        json!(["HOSTNAME=web-0", "PATH=/bin", "A=cri", "B=image"])
    );
    assert_eq!(s["process"]["cwd"], "/srv");
    assert_eq!(
        s["process"]["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(s["hostname"], "web-0");
    assert_eq!(s["root"], json!({"path": "rootfs", "readonly": false}));
    assert_eq!(s["linux"]["cgroupsPath"], "/kubepods/burstable/poduid-1/c1");
    assert_eq!(
        s["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
        "0"
    );
    assert_eq!(
        s["linux"]["namespaces"],
        json!([{"type": "mount"}, {"type": "network", "path": "/run/berth/netns/p1"},
               {"type": "ipc", "path": "/run/berth/pods/p1/ipc"},
               {"type": "uts", "path": "/run/berth/pods/p1/uts"}, {"type": "pid"}])
    );
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}])
    );
    assert!(
        s["linux"].get("seccomp").is_none(),
        "no profile asked: unconfined"
    );
    assert_eq!(
        s["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    assert!(s["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/kcore")));
    let a = &s["annotations"];
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "p1");
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default");
    assert_eq!(a["io.kubernetes.cri.container-name"], "app");
    assert_eq!(a["io.kubernetes.cri.image-name"], "busybox:1");
}

#[test]
fn command_and_args_rules() {
    let mut f = Fixture::new();
    f.config.args = vec!["--port".into(), "80".into()];
    assert_eq!(
        Fixture::spec(&f).unwrap()["process"]["args"],
        json!(["/bin/entry", "--port", "80"])
    );
    f.config.command = vec!["/bin/sh".into(), "-c".into()];
    f.config.args = vec!["echo hi".into()];
    assert_eq!(
        f.spec().unwrap()["process"]["args"],
        json!(["/bin/sh", "-c", "echo hi"])
    );
    f.config.args.clear();
    assert_eq!(
        f.spec().unwrap()["process"]["args"],
        json!(["/bin/sh", "-c"]),
        "a command drops the image cmd"
    );
    let mut f = Fixture::new();
    f.image.entrypoint.clear();
    f.image.cmd.clear();
    assert!(f.spec().unwrap_err().to_string().contains("no command"));
}

#[test]
fn env_path_default_tty_and_working_dir() {
    let mut f = Fixture::new();
    f.image.env.clear();
    f.config.tty = true;
    f.config.working_dir = "/work".into();
    let s = f.spec().unwrap();
    assert_eq!(s["process"]["env"][0], DEFAULT_PATH);
    assert!(s["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!("TERM=xterm")));
    assert_eq!(s["process"]["terminal"], true);
    assert_eq!(s["process"]["cwd"], "/work");
    f.config.working_dir = "rel".into();
    assert!(f.spec().is_err());
}

#[test]
fn user_from_the_security_context() {
    let mut f = Fixture::new();
    f.sc().run_as_user = Some(cri::Int64Value { value: 1000 });
    f.sc().run_as_group = Some(cri::Int64Value { value: 2000 });
    f.sc().supplemental_groups = vec![1234, 5678];
    let s = f.spec().unwrap();
    assert_eq!(
        s["process"]["user"],
        json!({"uid": 1000, "gid": 2000, "additionalGids": [2000, 1234, 5678]})
    );
    let mut f = Fixture::new();
    f.sc().run_as_group = Some(cri::Int64Value { value: 2000 });
    let e = f.spec().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn privileged_needs_a_privileged_pod_and_gets_the_host_caps_and_devices() {
    let mut f = Fixture::new();
    f.sc().privileged = true;
    assert_eq!(f.spec().unwrap_err().kind(), ErrorKind::FailedPrecondition);
    f.sandbox = pod_config(true);
    f.host.bounding_caps.retain(|c| c != "CAP_SYS_RESOURCE");
    f.host.host_devices = vec![(
        "/dev/null".into(),
        DeviceNode {
            kind: 'c',
            major: 1,
            minor: 3,
            mode: 0o20666,
            uid: 0,
            gid: 0,
        },
    )];
    f.sc().seccomp = Some(cri::SecurityProfile {
        profile_type: 0,
        localhost_ref: String::new(),
    });
    let s = f.spec().unwrap();
    let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(caps.len(), 40);
    assert!(!caps.contains(&json!("CAP_SYS_RESOURCE")));
    assert!(s["linux"].get("seccomp").is_none());
    assert_eq!(s["linux"]["maskedPaths"], json!([]));
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    assert_eq!(s["linux"]["devices"][0]["path"], "/dev/null");
}

#[test]
fn seccomp_profiles_reach_the_spec() {
    let mut f = Fixture::new();
    f.sc().seccomp = Some(cri::SecurityProfile {
        profile_type: 0,
        localhost_ref: String::new(),
    });
    let s = f.spec().unwrap();
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    f.sc().seccomp = Some(cri::SecurityProfile {
        profile_type: 2,
        localhost_ref: "/prof.json".into(),
    });
    let files = FakeFiles::default().text("/prof.json", r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#);
    let s = f.spec_with(&files).unwrap();
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(
        f.spec().unwrap_err().to_string().contains("/prof.json"),
        "a missing profile names the file"
    );
}

#[test]
fn readonly_rootfs_no_new_privs_resources_and_oom() {
    let mut f = Fixture::new();
    f.sc().readonly_rootfs = true;
    f.sc().no_new_privs = true;
    f.host.oom_score_adj_floor = Some(0);
    f.config.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        cpu_quota: 20000,
        cpu_period: 100000,
        oom_score_adj: -997,
        ..Default::default()
    });
    let s = f.spec().unwrap();
    assert_eq!(s["root"]["readonly"], true);
    assert_eq!(s["process"]["noNewPrivileges"], true);
    assert_eq!(s["process"]["oomScoreAdj"], 0, "clamped to berthd's own");
    assert_eq!(s["linux"]["resources"]["memory"]["limit"], 32 << 20);
    assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 20000);
    let hosts = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts["options"][2], "ro");
}

#[test]
fn host_namespaces_and_pod_pid() {
    let mut f = Fixture::new();
    f.ns = Namespaces {
        network: Ns::Host,
        ipc: Ns::Host,
        uts: Ns::Host,
        pid: Ns::Join("/proc/42/ns/pid".into()),
    };
    let s = f.spec().unwrap();
    assert_eq!(
        s["linux"]["namespaces"],
        json!([{"type": "mount"}, {"type": "pid", "path": "/proc/42/ns/pid"}])
    );
    assert!(
        s.get("hostname").is_none(),
        "no hostname without a UTS namespace of the pod"
    );
    let shm = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/dev/shm");
}

#[test]
fn cgroups_path_without_a_parent() {
    let mut p = pod_config(false);
    p.linux.as_mut().unwrap().cgroup_parent.clear();
    assert_eq!(cgroups_path(&p, "c9"), "/k8s.io/c9");
    assert_eq!(
        cgroups_path(&cri::PodSandboxConfig::default(), "c9"),
        "/k8s.io/c9"
    );
}
