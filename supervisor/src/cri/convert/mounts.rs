//! A CRI container's mounts and devices: the default pseudo-filesystems,
//! the pod's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and
//! `/dev/shm`, then the request's bind mounts (which replace a default at
//! the same destination).

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use super::{Error, HostFiles};

/// The pod-level files and directories a container's spec binds in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// The pod's `/etc/hosts`.
    pub hosts: PathBuf,
    /// The pod's `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The pod's `/etc/hostname`.
    pub hostname: PathBuf,
    /// The pod's shared `/dev/shm` (a tmpfs of the pod), `None` for a
    /// container of its own (`tmpfs`) and for host IPC (the host's).
    pub shm: Option<PathBuf>,
}

/// Rootfs propagation implied by the mounts (`rshared` beats `rslave`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootfsPropagation {
    /// Nothing asked for.
    Private,
    /// Some mount is host-to-container.
    Slave,
    /// Some mount is bidirectional.
    Shared,
}

fn m(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": kind, "source": source, "options": options})
}

/// Every mount of the container, in order, and the rootfs propagation.
pub fn mounts(
    config: &cri::ContainerConfig,
    pod: &PodFiles,
    privileged: bool,
    host_ipc: bool,
    readonly_rootfs: bool,
    files: &dyn HostFiles,
) -> Result<(Vec<Value>, RootfsPropagation), Error> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut out = vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ];
    out.push(match (&pod.shm, host_ipc) {
        (_, true) => m(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "nosuid", "noexec", "nodev"],
        ),
        (Some(shm), false) => m(
            "/dev/shm",
            "bind",
            &shm.display().to_string(),
            &["rbind", "nosuid", "noexec", "nodev"],
        ),
        (None, false) => m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    });
    let file_mode = if readonly_rootfs { "ro" } else { "rw" };
    for (dest, src) in [
        ("/etc/hosts", &pod.hosts),
        ("/etc/resolv.conf", &pod.resolv_conf),
        ("/etc/hostname", &pod.hostname),
    ] {
        if !src.as_os_str().is_empty() {
            out.push(m(
                dest,
                "bind",
                &src.display().to_string(),
                &["rbind", "rprivate", file_mode],
            ));
        }
    }
    let mut propagation = RootfsPropagation::Private;
    for mount in &config.mounts {
        let (v, p) = cri_mount(mount, files)?;
        let dest = v["destination"].clone();
        out.retain(|x| x["destination"] != dest);
        out.push(v);
        propagation = propagation.max(p);
    }
    Ok((out, propagation))
}

/// One CRI bind mount: the host path with its symlinks resolved.
fn cri_mount(
    mount: &cri::Mount,
    files: &dyn HostFiles,
) -> Result<(Value, RootfsPropagation), Error> {
    use cri::MountPropagation as P;
    if !mount.container_path.starts_with('/') {
        return Err(Error::invalid(format!(
            "mount container_path {:?}: must be absolute",
            mount.container_path
        )));
    }
    if mount.host_path.is_empty() {
        return Err(Error::invalid(format!(
            "mount {}: host_path is empty",
            mount.container_path
        )));
    }
    if mount.recursive_read_only {
        return Err(Error::invalid(format!(
            "mount {}: recursive read-only mounts are not supported by this runtime",
            mount.container_path
        )));
    }
    if mount.image.is_some() {
        return Err(Error::invalid(format!(
            "mount {}: image volumes are not supported by this runtime",
            mount.container_path
        )));
    }
    if !mount.uid_mappings.is_empty() || !mount.gid_mappings.is_empty() {
        return Err(Error::invalid(format!(
            "mount {}: id-mapped mounts are not supported by this runtime",
            mount.container_path
        )));
    }
    let source = files
        .resolve(Path::new(&mount.host_path))
        .map_err(|e| Error::invalid(format!("mount host_path {}: {e}", mount.host_path)))?;
    let (prop, level) = match P::try_from(mount.propagation) {
        Ok(P::PropagationPrivate) => ("rprivate", RootfsPropagation::Private),
        Ok(P::PropagationHostToContainer) => ("rslave", RootfsPropagation::Slave),
        Ok(P::PropagationBidirectional) => ("rshared", RootfsPropagation::Shared),
        Err(_) => {
            return Err(Error::invalid(format!(
                "mount {}: unknown propagation {}",
                mount.container_path, mount.propagation
            )))
        }
    };
    let rw = if mount.readonly { "ro" } else { "rw" };
    Ok((
        m(
            &mount.container_path,
            "bind",
            &source.display().to_string(),
            &["rbind", prop, rw],
        ),
        level,
    ))
}

/// A host device node as the spec's device entry and cgroup rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// `c` or `b`.
    pub kind: char,
    /// major number
    pub major: i64,
    /// minor number
    pub minor: i64,
    /// file mode bits
    pub mode: u32,
    /// owner
    pub uid: u32,
    /// group
    pub gid: u32,
}

/// The request's devices: `linux.devices` entries and their cgroup rules.
pub fn devices(
    config: &cri::ContainerConfig,
    files: &dyn HostFiles,
) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in &config.devices {
        if !d.container_path.starts_with('/') {
            return Err(Error::invalid(format!(
                "device container_path {:?}: must be absolute",
                d.container_path
            )));
        }
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(Error::invalid(format!(
                "device {}: permissions {perms:?} must be made of r, w and m",
                d.host_path
            )));
        }
        let node = files
            .device(Path::new(&d.host_path))
            .map_err(|e| Error::invalid(format!("device {}: {e}", d.host_path)))?;
        nodes.push(json!({
            "path": d.container_path, "type": node.kind.to_string(), "major": node.major,
            "minor": node.minor, "fileMode": node.mode & 0o777, "uid": node.uid, "gid": node.gid,
        }));
        rules.push(json!({
            "allow": true, "type": node.kind.to_string(), "major": node.major,
            "minor": node.minor, "access": perms,
        }));
    }
    Ok((nodes, rules))
}

#[cfg(test)]
mod tests {
    use super::super::tests::FakeFiles;
    use super::*;

    fn pod() -> PodFiles {
        PodFiles {
            hosts: "/run/pod/hosts".into(),
            resolv_conf: "/run/pod/resolv.conf".into(),
            hostname: "/run/pod/hostname".into(),
            shm: Some("/run/pod/shm".into()),
        }
    }

    fn find<'a>(v: &'a [Value], dest: &str) -> &'a Value {
        v.iter()
            .find(|m| m["destination"] == dest)
            .unwrap_or_else(|| panic!("{dest} missing"))
    }

    #[test]
    fn defaults_pod_files_and_privileged_sys() {
        let (v, p) = mounts(
            &Default::default(),
            &pod(),
            false,
            false,
            true,
            &FakeFiles::default(),
        )
        .unwrap();
        assert_eq!(p, RootfsPropagation::Private);
        assert_eq!(find(&v, "/sys")["options"][3], "ro");
        assert_eq!(find(&v, "/dev/shm")["source"], "/run/pod/shm");
        assert_eq!(
            find(&v, "/etc/hosts")["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        let (v, _) = mounts(
            &Default::default(),
            &pod(),
            true,
            true,
            false,
            &FakeFiles::default(),
        )
        .unwrap();
        assert_eq!(find(&v, "/sys")["options"][3], "rw");
        assert_eq!(find(&v, "/dev/shm")["source"], "/dev/shm");
        assert_eq!(find(&v, "/etc/resolv.conf")["options"][2], "rw");
    }

    #[test]
    fn cri_mounts_resolve_symlinks_set_propagation_and_replace_defaults() {
        use cri::MountPropagation as P;
        let files = FakeFiles::default()
            .link("/data/link", "/data/real")
            .file("/s")
            .file("/k/hosts")
            .file("/b");
        let cfg = cri::ContainerConfig {
            mounts: vec![
                cri::Mount {
                    container_path: "/in".into(),
                    host_path: "/data/link".into(),
                    readonly: true,
                    ..Default::default()
                },
                cri::Mount {
                    container_path: "/slave".into(),
                    host_path: "/s".into(),
                    propagation: P::PropagationHostToContainer as i32,
                    ..Default::default()
                },
                cri::Mount {
                    container_path: "/etc/hosts".into(),
                    host_path: "/k/hosts".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (v, p) = mounts(&cfg, &pod(), false, false, false, &files).unwrap();
        assert_eq!(find(&v, "/in")["source"], "/data/real");
        assert_eq!(
            find(&v, "/in")["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(find(&v, "/slave")["options"][1], "rslave");
        assert_eq!(p, RootfsPropagation::Slave);
        assert_eq!(
            v.iter()
                .filter(|m| m["destination"] == "/etc/hosts")
                .count(),
            1
        );
        assert_eq!(find(&v, "/etc/hosts")["source"], "/k/hosts");
        let shared = cri::ContainerConfig {
            mounts: vec![cri::Mount {
                container_path: "/b".into(),
                host_path: "/b".into(),
                propagation: P::PropagationBidirectional as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            mounts(&shared, &pod(), false, false, false, &files)
                .unwrap()
                .1,
            RootfsPropagation::Shared
        );
    }

    #[test]
    fn bad_mounts_are_refused() {
        for mount in [
            cri::Mount {
                container_path: "rel".into(),
                host_path: "/x".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/x".into(),
                host_path: "".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/x".into(),
                host_path: "/x".into(),
                recursive_read_only: true,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/x".into(),
                host_path: "/missing".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/x".into(),
                host_path: "/x".into(),
                propagation: 9,
                ..Default::default()
            },
        ] {
            let cfg = cri::ContainerConfig {
                mounts: vec![mount.clone()],
                ..Default::default()
            };
            let files = FakeFiles::default().file("/x");
            assert!(
                mounts(&cfg, &pod(), false, false, false, &files).is_err(),
                "{mount:?}"
            );
        }
    }

    #[test]
    fn devices_become_nodes_and_cgroup_rules() {
        let files = FakeFiles::default().dev(
            "/dev/fuse",
            DeviceNode {
                kind: 'c',
                major: 10,
                minor: 229,
                mode: 0o20666,
                uid: 0,
                gid: 0,
            },
        );
        let cfg = cri::ContainerConfig {
            devices: vec![cri::Device {
                container_path: "/dev/f".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let (n, r) = devices(&cfg, &files).unwrap();
        assert_eq!(n[0]["path"], "/dev/f");
        assert_eq!(n[0]["fileMode"], 0o666);
        assert_eq!(
            r[0],
            json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"})
        );
        let bad = cri::ContainerConfig {
            devices: vec![cri::Device {
                container_path: "/dev/f".into(),
                host_path: "/dev/none".into(),
                permissions: "".into(),
            }],
            ..Default::default()
        };
        assert!(devices(&bad, &files).is_err());
    }
}
