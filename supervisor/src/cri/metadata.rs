//! CRI metadata kept in containerd container records of the `k8s.io`
//! namespace, as containerd's CRI plugin does: a pod sandbox and each CRI
//! container is one record, marked by the label [`KIND_LABEL`], carrying
//! the CRI labels as its labels and the CRI metadata (the configs, the
//! network namespace, the log path, ...) as JSON in an extension. So
//! `ctr -n k8s.io containers ls` shows them, garbage collection sees their
//! snapshots, and berthd rebuilds its in-memory stores from them at start.

use std::time::SystemTime;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::store::containers::{AnyRec, Container, Runtime};

/// Label telling sandbox records from container records (containerd's key).
pub const KIND_LABEL: &str = "io.cri-containerd.kind";
/// [`KIND_LABEL`] value of a pod sandbox.
pub const KIND_SANDBOX: &str = "sandbox";
/// [`KIND_LABEL`] value of a container.
pub const KIND_CONTAINER: &str = "container";
/// Extension holding [`SandboxMetadata`].
pub const SANDBOX_EXTENSION: &str = "io.cri-containerd.sandbox.metadata";
/// Extension holding [`ContainerMetadata`].
pub const CONTAINER_EXTENSION: &str = "io.cri-containerd.container.metadata";
/// Type URL of Berth's sandbox metadata JSON.
pub const SANDBOX_TYPE_URL: &str = "berth.dev/cri/v1/SandboxMetadata";
/// Type URL of Berth's container metadata JSON.
pub const CONTAINER_TYPE_URL: &str = "berth.dev/cri/v1/ContainerMetadata";
/// The runtime name of CRI records (berth-shim with runc).
pub const RUNTIME_NAME: &str = "io.containerd.runc.v2";

/// Why a record cannot be read back as CRI metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the record is not a CRI record of this kind
    #[error("record {id}: not a CRI {kind} (no {extension} extension)")]
    NotCri {
        /// record id
        id: String,
        /// sandbox or container
        kind: &'static str,
        /// the extension looked for
        extension: &'static str,
    },
    /// the metadata JSON does not decode
    #[error("record {id}: CRI metadata: {source}")]
    Decode {
        /// record id
        id: String,
        /// the cause
        source: serde_json::Error,
    },
}

/// Whether the pod's PID namespace is held by a process of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PidHolder {
    /// No holder: containers get their own PID namespace or the host's.
    None,
    /// The sandbox image's pause process runs as this task (id), so the
    /// pod's containers share its PID namespace.
    Pause {
        /// the task id (the sandbox id)
        task: String,
    },
}

/// What a pod sandbox is made of, persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxMetadata {
    /// The sandbox id.
    pub id: String,
    /// The unique name (`name_namespace_uid_attempt`), reserved while the
    /// sandbox exists.
    pub name: String,
    /// The kubelet's config, as given.
    pub config: cri::PodSandboxConfig,
    /// The runtime handler asked for.
    pub runtime_handler: String,
    /// The network namespace bind mount (empty for host network).
    pub netns_path: String,
    /// The UTS namespace bind mount (empty for host network).
    pub uts_path: String,
    /// The IPC namespace bind mount (empty for host IPC).
    pub ipc_path: String,
    /// The pod's directory under berthd's state dir (hosts, resolv.conf, shm).
    pub state_dir: String,
    /// Pod IP and additional IPs from CNI.
    pub ips: Vec<String>,
    /// The PID namespace holder.
    pub pid_holder: PidHolder,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// The CNI network the pod was attached to (empty: none).
    #[serde(default)]
    pub network: String,
    /// Whether the pod is ready (false once stopped).
    #[serde(default)]
    pub ready: bool,
}

/// What a CRI container is made of, persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    /// The container id.
    pub id: String,
    /// The unique name (`name_podname_namespace_uid_attempt`).
    pub name: String,
    /// Its pod's id.
    pub sandbox_id: String,
    /// The kubelet's config, as given.
    pub config: cri::ContainerConfig,
    /// The image id (config digest) it was created from.
    pub image_id: String,
    /// The image reference resolved at creation (repo digest or tag).
    pub image_ref: String,
    /// Absolute log path (pod log directory + config log path), or empty.
    pub log_path: String,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// The snapshotter holding its rootfs (snapshot key = its id).
    #[serde(default)]
    pub snapshotter: String,
    /// Start time, ns since the epoch (0: never started).
    #[serde(default)]
    pub started_at: i64,
    /// Whether the kernel's OOM killer struck in its cgroup (the shim's
    /// OOM event): an exit that is not 0 is then `OOMKilled`.
    #[serde(default)]
    pub oom_killed: bool,
}

/// containerd's unique sandbox name.
pub fn sandbox_name(m: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// containerd's unique container name.
pub fn container_name(c: &cri::ContainerMetadata, pod: &cri::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, pod.name, pod.namespace, pod.uid, c.attempt
    )
}

fn any<T: Serialize>(type_url: &str, v: &T) -> AnyRec {
    AnyRec {
        type_url: type_url.into(),
        value: serde_json::to_vec(v).expect("metadata serialises"),
    }
}

fn labels(
    cri_labels: &std::collections::HashMap<String, String>,
    kind: &str,
) -> crate::store::labels::Labels {
    let mut l: crate::store::labels::Labels = cri_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(KIND_LABEL.into(), kind.into());
    l
}

/// The record of a sandbox; `spec` is its OCI spec JSON (the pause
/// process's, or the pod-level spec when no process holds the pod).
pub fn sandbox_record(m: &SandboxMetadata, spec: Vec<u8>, image: &str) -> Container {
    let mut extensions = std::collections::BTreeMap::new();
    extensions.insert(SANDBOX_EXTENSION.to_string(), any(SANDBOX_TYPE_URL, m));
    Container {
        id: m.id.clone(),
        labels: labels(&m.config.labels, KIND_SANDBOX),
        image: image.into(),
        runtime: Runtime {
            name: RUNTIME_NAME.into(),
            options: None,
        },
        spec: Some(AnyRec {
            type_url: berth_api::type_urls::OCI_SPEC.into(),
            value: spec,
        }),
        snapshotter: String::new(),
        snapshot_key: String::new(),
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
        extensions,
        sandbox: String::new(),
    }
}

/// The record of a container with its rootfs snapshot.
pub fn container_record(m: &ContainerMetadata, spec: Vec<u8>, snapshotter: &str) -> Container {
    let mut extensions = std::collections::BTreeMap::new();
    extensions.insert(CONTAINER_EXTENSION.to_string(), any(CONTAINER_TYPE_URL, m));
    Container {
        id: m.id.clone(),
        labels: labels(&m.config.labels, KIND_CONTAINER),
        image: m.image_ref.clone(),
        runtime: Runtime {
            name: RUNTIME_NAME.into(),
            options: None,
        },
        spec: Some(AnyRec {
            type_url: berth_api::type_urls::OCI_SPEC.into(),
            value: spec,
        }),
        snapshotter: snapshotter.into(),
        snapshot_key: m.id.clone(),
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
        extensions,
        sandbox: m.sandbox_id.clone(),
    }
}

/// What a `k8s.io` record is, read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A pod sandbox.
    Sandbox(SandboxMetadata),
    /// A CRI container.
    Container(ContainerMetadata),
    /// Not a CRI record (made by `ctr -n k8s.io` or similar): left alone.
    Other,
}

/// Reads a record of the `k8s.io` namespace.
pub fn decode(c: &Container) -> Result<Record, Error> {
    let get = |ext: &'static str, kind: &'static str| {
        c.extensions.get(ext).ok_or_else(|| Error::NotCri {
            id: c.id.clone(),
            kind,
            extension: ext,
        })
    };
    let decode_err = |source| Error::Decode {
        id: c.id.clone(),
        source,
    };
    match c.labels.get(KIND_LABEL).map(String::as_str) {
        Some(KIND_SANDBOX) => serde_json::from_slice(&get(SANDBOX_EXTENSION, "sandbox")?.value)
            .map(Record::Sandbox)
            .map_err(decode_err),
        Some(KIND_CONTAINER) => {
            serde_json::from_slice(&get(CONTAINER_EXTENSION, "container")?.value)
                .map(Record::Container)
                .map_err(decode_err)
        }
        _ => Ok(Record::Other),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sandbox_meta(id: &str, name: &str) -> SandboxMetadata {
        let md = cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 1,
        };
        SandboxMetadata {
            id: id.into(),
            name: sandbox_name(&md),
            config: cri::PodSandboxConfig {
                metadata: Some(md),
                labels: [("app".to_string(), "web".to_string())].into(),
                hostname: "h".into(),
                ..Default::default()
            },
            runtime_handler: String::new(),
            netns_path: "/run/berth/netns/x".into(),
            uts_path: String::new(),
            ipc_path: String::new(),
            state_dir: "/run/berth/pods/x".into(),
            ips: vec!["10.90.0.5".into()],
            pid_holder: PidHolder::None,
            created_at: 42,
            network: "t".into(),
            ready: true,
        }
    }

    #[test]
    fn names_follow_containerd() {
        let pod = cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "ns".into(),
            attempt: 2,
        };
        assert_eq!(sandbox_name(&pod), "web_ns_u1_2");
        let c = cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        };
        assert_eq!(container_name(&c, &pod), "app_web_ns_u1_0");
    }

    #[test]
    fn records_round_trip_and_validate() {
        let m = sandbox_meta("abc", "web");
        let rec = sandbox_record(&m, b"{}".to_vec(), "registry.k8s.io/pause:3.10");
        crate::store::containers::validate(&rec).expect("a valid containerd record");
        assert_eq!(rec.labels.get(KIND_LABEL).unwrap(), KIND_SANDBOX);
        assert_eq!(rec.labels.get("app").unwrap(), "web");
        assert_eq!(decode(&rec).unwrap(), Record::Sandbox(m.clone()));

        let cm = ContainerMetadata {
            id: "c1".into(),
            name: "app_web_default_uid-web_0".into(),
            sandbox_id: "abc".into(),
            config: cri::ContainerConfig {
                command: vec!["sleep".into()],
                ..Default::default()
            },
            image_id: "sha256:1".into(),
            image_ref: "busybox:1".into(),
            log_path: "/var/log/pods/x/app/0.log".into(),
            created_at: 7,
            snapshotter: "overlayfs".into(),
            started_at: 0,
            oom_killed: false,
        };
        let rec = container_record(&cm, b"{}".to_vec(), "overlayfs");
        crate::store::containers::validate(&rec).expect("a valid containerd record");
        assert_eq!(rec.snapshot_key, "c1");
        assert_eq!(rec.sandbox, "abc");
        assert_eq!(decode(&rec).unwrap(), Record::Container(cm));
    }

    #[test]
    fn foreign_and_broken_records() {
        let mut rec = sandbox_record(&sandbox_meta("abc", "web"), b"{}".to_vec(), "i");
        rec.labels.remove(KIND_LABEL);
        assert_eq!(decode(&rec).unwrap(), Record::Other);
        rec.labels.insert(KIND_LABEL.into(), KIND_SANDBOX.into());
        rec.extensions.get_mut(SANDBOX_EXTENSION).unwrap().value = b"nope".to_vec();
        assert!(matches!(decode(&rec), Err(Error::Decode { .. })));
        rec.extensions.clear();
        assert!(matches!(decode(&rec), Err(Error::NotCri { .. })));
    }
}
