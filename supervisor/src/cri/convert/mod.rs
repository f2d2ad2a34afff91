//! CRI configs to an OCI runtime spec, without touching the system: every
//! fact about the host (symlinks, device nodes, profile files) comes
//! through [`HostFiles`], every fact about the pod through the inputs, so
//! the whole conversion is unit-tested with fakes.
//!
//! containerd's CRI behaviour is the reference: the command is the CRI
//! command (else the image's entrypoint) followed by the CRI args (else,
//! with no command, the image's cmd); the image env comes first and the
//! CRI env overrides it by name; `HOSTNAME` is set; masked paths, seccomp
//! and capabilities as in [`security`]; mounts as in [`mounts`];
//! resources as in [`resources`]; the pod's namespaces joined by path.

pub mod mounts;
pub mod pod_files;
pub mod resources;
pub mod security;
pub mod user;

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

pub use mounts::{DeviceNode, PodFiles};
pub use user::UserDb;

/// Annotation keys containerd's CRI puts on every spec (runtimes, hooks
/// and tools such as `crictl inspect` read them).
pub mod annotations {
    /// `sandbox` or `container`.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The pod's sandbox id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's Kubernetes namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's UID.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The pod's log directory.
    pub const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
    /// The container's name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image the container was created from, as the kubelet named it.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// PATH for images that set none.
use berth_api::oci::merge_env;
pub use berth_api::oci::DEFAULT_PATH;

/// What kind of failure a conversion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request asks for something invalid or unsupported.
    InvalidArgument,
    /// The request conflicts with the pod (e.g. privileged in a
    /// non-privileged pod).
    FailedPrecondition,
}

/// Why a CRI config cannot become a spec. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// a field is invalid or unsupported
    #[error("{0}")]
    Invalid(String),
    /// the request conflicts with its pod
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    fn invalid(msg: String) -> Self {
        Self::Invalid(msg)
    }

    /// The error's kind, for the one status map.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::InvalidArgument,
            Self::Conflict(_) => ErrorKind::FailedPrecondition,
        }
    }
}

/// The host, as far as the conversion needs to see it.
pub trait HostFiles {
    /// `path` with every symlink resolved (it must exist).
    fn resolve(&self, path: &Path) -> std::io::Result<PathBuf>;
    /// The device node at `path`.
    fn device(&self, path: &Path) -> std::io::Result<DeviceNode>;
    /// A text file (seccomp profiles).
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// [`HostFiles`] on the real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFiles;

impl HostFiles for RealFiles {
    fn resolve(&self, path: &Path) -> std::io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn device(&self, path: &Path) -> std::io::Result<DeviceNode> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(path)?;
        let kind = if md.file_type().is_char_device() {
            'c'
        } else if md.file_type().is_block_device() {
            'b'
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a device node",
            ));
        };
        let rdev = md.rdev();
        Ok(DeviceNode {
            kind,
            major: i64::from(nix::sys::stat::major(rdev) as u32),
            minor: i64::from(nix::sys::stat::minor(rdev) as u32),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
        })
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The parts of the image config a container spec needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// ENTRYPOINT
    pub entrypoint: Vec<String>,
    /// CMD
    pub cmd: Vec<String>,
    /// ENV (`KEY=value`)
    pub env: Vec<String>,
    /// WORKDIR
    pub working_dir: String,
    /// USER
    pub user: String,
}

/// How a container gets one kind of namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    /// The host's (no entry in the spec).
    Host,
    /// A new one of its own.
    Private,
    /// The pod's (or a target container's), joined by path.
    Join(PathBuf),
}

/// The namespaces of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// network
    pub network: Ns,
    /// IPC
    pub ipc: Ns,
    /// UTS (hostname)
    pub uts: Ns,
    /// PID
    pub pid: Ns,
}

/// Facts about the host and berthd's config.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Capabilities in the host's bounding set (`CapBnd`).
    pub bounding_caps: Vec<String>,
    /// `Some(berthd's own oom_score_adj)` with `restrict_oom_score_adj`.
    pub oom_score_adj_floor: Option<i64>,
    /// Every device node of the host (for privileged containers), by path.
    pub host_devices: Vec<(String, DeviceNode)>,
}

/// Everything a container's spec is made from.
pub struct ContainerInputs<'a> {
    /// The container id.
    pub id: &'a str,
    /// Its pod's id.
    pub sandbox_id: &'a str,
    /// The CRI container config.
    pub config: &'a cri::ContainerConfig,
    /// The pod's CRI config.
    pub sandbox: &'a cri::PodSandboxConfig,
    /// The image config.
    pub image: &'a ImageConfig,
    /// The image as the kubelet named it.
    pub image_name: &'a str,
    /// The image's users and groups.
    pub users: &'a UserDb,
    /// The container's namespaces.
    pub namespaces: &'a Namespaces,
    /// The pod's files.
    pub pod_files: &'a PodFiles,
    /// The pod's hostname (the host's for host-network pods).
    pub hostname: &'a str,
    /// The host.
    pub host: &'a HostFacts,
}

/// The cgroups path of a pod's container: under the pod's cgroup parent,
/// else under `/k8s.io`.
pub fn cgroups_path(sandbox: &cri::PodSandboxConfig, id: &str) -> String {
    let parent = sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.trim_end_matches('/'))
        .unwrap_or("");
    if parent.is_empty() {
        format!("/k8s.io/{id}")
    } else {
        format!("{parent}/{id}")
    }
}

/// The process arguments: containerd's (and Docker's) merge of the CRI
/// command/args with the image's entrypoint/cmd.
pub fn process_args(
    config: &cri::ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, Error> {
    let (command, args) = if config.command.is_empty() {
        let args = if config.args.is_empty() {
            &image.cmd
        } else {
            &config.args
        };
        (&image.entrypoint, args)
    } else {
        (&config.command, &config.args)
    };
    let all: Vec<String> = command.iter().chain(args.iter()).cloned().collect();
    if all.is_empty() {
        return Err(Error::invalid(
            "no command: the container config and the image name none".into(),
        ));
    }
    Ok(all)
}

/// The environment: `HOSTNAME`, the image's, then the CRI's, each later
/// value replacing an earlier one of the same name; PATH defaulted.
pub fn process_env(hostname: &str, image: &[String], cri_env: &[cri::KeyValue]) -> Vec<String> {
    let first: Vec<String> = if hostname.is_empty() {
        Vec::new()
    } else {
        vec![format!("HOSTNAME={hostname}")]
    };
    let cri: Vec<String> = cri_env
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    let mut env = merge_env(&merge_env(&first, image), &cri);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

fn ns_entries(ns: &Namespaces) -> Vec<Value> {
    let mut out = vec![json!({"type": "mount"})];
    for (kind, mode) in [
        ("network", &ns.network),
        ("ipc", &ns.ipc),
        ("uts", &ns.uts),
        ("pid", &ns.pid),
    ] {
        match mode {
            Ns::Host => {}
            Ns::Private => out.push(json!({"type": kind})),
            Ns::Join(p) => out.push(json!({"type": kind, "path": p})),
        }
    }
    out
}

/// The OCI runtime spec of a CRI container (rootfs path `rootfs`).
pub fn container_spec(i: &ContainerInputs<'_>, files: &dyn HostFiles) -> Result<Spec, Error> {
    let c = i.config;
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let pod_sc = i
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    if privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(Error::Conflict(
            "privileged container in a pod that is not privileged".into(),
        ));
    }
    let args = process_args(c, i.image)?;
    let user = user::resolve(sc, &i.image.user, i.users)?;
    let (caps, ambient) = security::capabilities(
        privileged,
        sc.and_then(|s| s.capabilities.as_ref()),
        &i.host.bounding_caps,
    )?;
    let (masked, readonly) = security::masked_and_readonly(privileged, sc);
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);
    let host_ipc = i.namespaces.ipc == Ns::Host;
    let (mut mounts, propagation) =
        mounts::mounts(c, i.pod_files, privileged, host_ipc, readonly_rootfs, files)?;
    let (mut devices, mut device_rules) = mounts::devices(c, files)?;
    if privileged {
        device_rules = vec![json!({"allow": true, "access": "rwm"})];
        for (path, d) in &i.host.host_devices {
            if !devices.iter().any(|x| x["path"] == path.as_str()) {
                devices.push(
                    json!({"path": path, "type": d.kind.to_string(), "major": d.major,
                    "minor": d.minor, "fileMode": d.mode & 0o777, "uid": d.uid, "gid": d.gid}),
                );
            }
        }
    } else {
        device_rules.insert(0, json!({"allow": false, "access": "rwm"}));
    }
    let resources_req = linux.and_then(|l| l.resources.clone()).unwrap_or_default();
    let mut resources = resources::linux_resources(&resources_req)?;
    resources.insert("devices".into(), Value::Array(device_rules));
    let oom = resources::oom_score_adj(resources_req.oom_score_adj, i.host.oom_score_adj_floor)?;

    let meta = i.sandbox.metadata.clone().unwrap_or_default();
    let name = c
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let mut env = process_env(i.hostname, &i.image.env, &c.envs);
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = [c.working_dir.as_str(), i.image.working_dir.as_str()]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(Error::invalid(format!(
            "working_dir {cwd:?}: must be absolute"
        )));
    }
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.is_some_and(|s| s.no_new_privs),
        "oomScoreAdj": oom,
    });
    if !ambient.is_empty() {
        process["capabilities"]["ambient"] = json!(ambient);
        process["capabilities"]["inheritable"] = json!(ambient);
    }
    let mut linux_v = json!({
        "cgroupsPath": cgroups_path(i.sandbox, i.id),
        "resources": Value::Object(resources),
        "namespaces": ns_entries(i.namespaces),
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "devices": devices,
    });
    let sysctls = i
        .sandbox
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    if !sysctls.is_empty() {
        linux_v["sysctl"] = json!(sysctls);
    }
    match propagation {
        mounts::RootfsPropagation::Private => {}
        mounts::RootfsPropagation::Slave => linux_v["rootfsPropagation"] = json!("rslave"),
        mounts::RootfsPropagation::Shared => linux_v["rootfsPropagation"] = json!("rshared"),
    }
    // Older kubelets still send the deprecated path string.
    #[allow(deprecated)]
    let legacy_seccomp = sc.map(|s| s.seccomp_profile_path.as_str()).unwrap_or("");
    match security::seccomp_choice(
        privileged,
        sc.and_then(|s| s.seccomp.as_ref()),
        legacy_seccomp,
    )? {
        security::Seccomp::Unconfined => {}
        security::Seccomp::RuntimeDefault => linux_v["seccomp"] = security::default_profile(&caps),
        security::Seccomp::Localhost(path) => {
            let text = files
                .read(Path::new(&path))
                .map_err(|e| Error::invalid(format!("seccomp profile {path}: {e}")))?;
            linux_v["seccomp"] = security::localhost_profile(&path, &text)?;
        }
    }
    use annotations as a;
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": readonly_rootfs},
        "process": process,
        "mounts": std::mem::take(&mut mounts),
        "linux": linux_v,
        "annotations": {
            a::CONTAINER_TYPE: "container",
            a::CONTAINER_NAME: name,
            a::SANDBOX_ID: i.sandbox_id,
            a::SANDBOX_NAME: meta.name,
            a::SANDBOX_NAMESPACE: meta.namespace,
            a::SANDBOX_UID: meta.uid,
            a::IMAGE_NAME: i.image_name,
        },
    });
    if i.namespaces.uts != Ns::Host && !i.hostname.is_empty() {
        spec["hostname"] = json!(i.hostname);
    }
    serde_json::from_value(spec)
        .map_err(|e| Error::invalid(format!("resulting spec is not valid: {e}")))
}

#[cfg(test)]
pub(crate) mod tests;
