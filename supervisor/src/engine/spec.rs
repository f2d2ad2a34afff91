//! A container's OCI runtime spec, from its image's config and what it
//! was asked to be, with Docker's defaults: the usual pseudo-filesystems,
//! 14 capabilities, masked and read-only /proc paths, new
//! pid/ipc/uts/mount namespaces, its network namespace (berthd's, or the
//! host's), `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` from its
//! directory, a cgroupfs path `/<namespace>/<id>`, a seccomp profile.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_api::oci::ExecConfig;
use serde_json::{json, Value};

use super::model::{ContainerConfig, DeviceSpec, MountSpec};
use super::users::SpecUser;
use super::{security, Error, Result};

/// CFS period used for `--cpus`.
const CPU_PERIOD: u64 = 100_000;
/// The least memory limit runc can start a container under (Docker's).
pub(super) const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Everything the spec is made from.
pub(super) struct SpecInputs<'a> {
    pub(super) namespace: &'a str,
    pub(super) id: &'a str,
    pub(super) hostname: &'a str,
    pub(super) image: &'a ExecConfig,
    pub(super) config: &'a ContainerConfig,
    pub(super) user: SpecUser,
    /// The container's network namespace; None: the host's.
    pub(super) netns: Option<&'a Path>,
    /// The container's directory (hosts, resolv.conf, hostname).
    pub(super) dir: &'a Path,
    /// The host's bounding set.
    pub(super) host_caps: &'a [String],
}

/// The process arguments: ENTRYPOINT + CMD, where the config's cmd
/// replaces CMD and its entrypoint replaces ENTRYPOINT (dropping CMD).
pub(super) fn args(image: &ExecConfig, c: &ContainerConfig) -> Vec<String> {
    image.process_args(c.entrypoint.as_deref(), &c.cmd)
}

fn rlimit_name(name: &str) -> Result<String> {
    const KNOWN: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    let n = name.to_ascii_lowercase();
    if !KNOWN.contains(&n.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "ulimit {name:?}: unknown (one of {})",
            KNOWN.join(", ")
        )));
    }
    Ok(format!("RLIMIT_{}", n.to_ascii_uppercase()))
}

fn mount_json(m: &MountSpec) -> Result<Value> {
    if !m.target.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "mount target {:?}: must be an absolute path",
            m.target
        )));
    }
    match m.kind.as_str() {
        "bind" => {
            if !Path::new(&m.source).is_absolute() {
                return Err(Error::InvalidArgument(format!(
                    "bind mount source {:?}: must be an absolute path on the host",
                    m.source
                )));
            }
            if !Path::new(&m.source).exists() {
                return Err(Error::InvalidArgument(format!(
                    "bind mount source {:?}: does not exist on the host",
                    m.source
                )));
            }
            let mut opts = vec!["rbind".to_string()];
            opts.push(if m.readonly { "ro" } else { "rw" }.into());
            opts.extend(m.options.iter().cloned());
            Ok(
                json!({"destination": m.target, "type": "bind", "source": m.source, "options": opts}),
            )
        }
        "tmpfs" => {
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
            if m.readonly {
                opts.push("ro".into());
            }
            opts.extend(m.options.iter().cloned());
            Ok(
                json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": opts}),
            )
        }
        other => Err(Error::InvalidArgument(format!(
            "mount type {other:?}: bind or tmpfs"
        ))),
    }
}

/// A host device node as a spec device and its cgroup rule (blocking).
fn device(d: &DeviceSpec) -> Result<(Value, Value)> {
    let meta = std::fs::metadata(&d.host_path)
        .map_err(|e| Error::InvalidArgument(format!("device {:?}: {e}", d.host_path)))?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(Error::InvalidArgument(format!(
            "device {:?}: not a character or block device",
            d.host_path
        )));
    };
    let perms = if d.permissions.is_empty() {
        "rwm"
    } else {
        &d.permissions
    };
    if perms.chars().any(|c| !"rwm".contains(c)) {
        return Err(Error::InvalidArgument(format!(
            "device {:?}: permissions {perms:?} are not a subset of rwm",
            d.host_path
        )));
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    let path = if d.container_path.is_empty() {
        &d.host_path
    } else {
        &d.container_path
    };
    Ok((
        json!({"path": path, "type": kind, "major": major, "minor": minor,
               "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid()}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    ))
}

/// Builds the spec (blocking: devices are looked up on the host).
pub(super) fn build(i: &SpecInputs<'_>) -> Result<Value> {
    let c = i.config;
    let args = args(i.image, c);
    if args.is_empty() {
        return Err(Error::InvalidArgument(
            "no command: the image has no ENTRYPOINT or CMD; give one after the image".into(),
        ));
    }
    let mut env = i.image.process_env(&c.env);
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", i.hostname));
    }
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        i.image
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "working directory {cwd:?}: must be an absolute path"
        )));
    }
    let caps = security::capabilities(&c.cap_add, &c.cap_drop, c.privileged, i.host_caps)?;
    // containerd's default: hosts where root may not raise nofile past
    // its own hard limit still start containers (`--ulimit` raises it).
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64})];
    for u in &c.ulimits {
        let name = rlimit_name(&u.name)?;
        if u.soft > u.hard || u.soft < 0 {
            return Err(Error::InvalidArgument(format!(
                "ulimit {}: soft {} must be between 0 and hard {}",
                u.name, u.soft, u.hard
            )));
        }
        rlimits.retain(|r| r["type"] != name.as_str());
        rlimits.push(json!({"type": name, "soft": u.soft, "hard": u.hard}));
    }
    let mut user = json!({"uid": i.user.uid, "gid": i.user.gid});
    if !i.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(i.user.additional_gids);
    }
    let mut process = json!({
        "terminal": c.tty,
        "user": user,
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "permitted": caps, "effective": caps},
        "rlimits": rlimits,
        "noNewPrivileges": c.no_new_privileges,
    });
    if let (true, Some((w, h))) = (c.tty, c.tty_size) {
        process["consoleSize"] = json!({"width": w, "height": h});
    }

    let sys_opts = if c.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        // The container's own cgroups, read-only (writable when privileged).
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", if c.privileged { "rw" } else { "ro" }]}),
    ];
    for f in ["hosts", "resolv.conf", "hostname"] {
        mounts.push(json!({
            "destination": format!("/etc/{f}"),
            "type": "bind",
            "source": i.dir.join(f).display().to_string(),
            "options": ["rbind", "rprivate", if c.read_only { "ro" } else { "rw" }],
        }));
    }
    for m in &c.mounts {
        let j = mount_json(m)?;
        mounts.retain(|x| x["destination"] != j["destination"]);
        mounts.push(j);
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(p) = i.netns {
        namespaces.push(json!({"type": "network", "path": p.display().to_string()}));
    }

    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let mut devices = Vec::new();
    if c.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    for d in &c.devices {
        let (dev, rule) = device(d)?;
        devices.push(dev);
        if let Some(list) = resources["devices"].as_array_mut() {
            list.push(rule);
        }
    }
    if let Some(limit) = c.memory {
        if limit < MIN_MEMORY {
            return Err(Error::InvalidArgument(format!(
                "memory {limit}: the minimum memory limit is 6MB"
            )));
        }
        resources["memory"] = json!({"limit": limit});
    }
    if let Some(cpus) = c.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "cpus {cpus}: must be a positive number"
            )));
        }
        let quota = (cpus * CPU_PERIOD as f64).round() as i64;
        resources["cpu"] = json!({"period": CPU_PERIOD, "quota": quota.max(1000)});
    }
    if let Some(p) = c.pids_limit {
        if p > 0 {
            resources["pids"] = json!({"limit": p});
        }
    }

    let mut linux = json!({
        "cgroupsPath": format!("/{}/{}", i.namespace, i.id),
        "resources": resources,
        "namespaces": namespaces,
    });
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if !c.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    if !c.privileged && !c.seccomp_unconfined {
        linux["seccomp"] = match &c.seccomp_profile {
            Some(text) => security::client_profile(text)?,
            None => security::default_profile(&caps),
        };
    }

    let mut annotations = serde_json::Map::new();
    annotations.insert("berth.container.name".into(), json!(c.name));
    Ok(json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": c.read_only},
        "hostname": i.hostname,
        "process": process,
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Ulimit;

    fn image() -> ExecConfig {
        ExecConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["a".into(), "b".into()]),
            env: Some(vec!["PATH=/bin".into(), "X=1".into()]),
            working_dir: Some("/w".into()),
            ..Default::default()
        }
    }

    fn build_with(c: &ContainerConfig, netns: Option<&Path>) -> Result<Value> {
        let host: Vec<String> = berth_api::caps::ALL.iter().map(|s| s.to_string()).collect();
        build(&SpecInputs {
            namespace: "default",
            id: "abc",
            hostname: "abc",
            image: &image(),
            config: c,
            user: SpecUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![],
            },
            netns,
            dir: Path::new("/var/lib/berth/containers/abc"),
            host_caps: &host,
        })
    }

    #[test]
    fn image_and_flags_make_the_process() {
        let c = ContainerConfig {
            name: "web".into(),
            cmd: vec!["x".into()],
            env: vec!["X=2".into(), "Y=3".into()],
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(10),
            tty: true,
            read_only: true,
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200,
            }],
            ..Default::default()
        };
        let s = build_with(&c, Some(Path::new("/run/berth/netns/abc"))).unwrap();
        assert_eq!(s["process"]["args"], json!(["/entry", "x"]));
        assert_eq!(
            s["process"]["env"],
            json!(["PATH=/bin", "X=2", "Y=3", "HOSTNAME=abc", "TERM=xterm"])
        );
        assert_eq!(s["process"]["cwd"], "/w");
        assert_eq!(s["process"]["user"]["uid"], 1000);
        assert_eq!(
            s["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}])
        );
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 10);
        assert_eq!(s["linux"]["cgroupsPath"], "/default/abc");
        assert_eq!(s["root"]["readonly"], true);
        assert!(s["linux"]["seccomp"].is_object());
        let net = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert_eq!(net["path"], "/run/berth/netns/abc");
        let hosts = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["source"], "/var/lib/berth/containers/abc/hosts");
    }

    #[test]
    fn host_network_privileged_and_unconfined() {
        let c = ContainerConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            privileged: true,
            ..Default::default()
        };
        let s = build_with(&c, None).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/sh"]));
        assert!(!s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(s["linux"].get("seccomp").is_none());
        assert!(s["linux"].get("maskedPaths").is_none());
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            41
        );
        let c = ContainerConfig {
            cmd: vec!["x".into()],
            seccomp_unconfined: true,
            ..Default::default()
        };
        assert!(build_with(&c, None).unwrap()["linux"]
            .get("seccomp")
            .is_none());
    }

    #[test]
    fn bad_input_names_the_field() {
        let bad = [
            ContainerConfig {
                memory: Some(1000),
                ..Default::default()
            },
            ContainerConfig {
                cpus: Some(-1.0),
                ..Default::default()
            },
            ContainerConfig {
                working_dir: "rel".into(),
                ..Default::default()
            },
            ContainerConfig {
                cap_add: vec!["BOGUS".into()],
                ..Default::default()
            },
            ContainerConfig {
                ulimits: vec![Ulimit {
                    name: "nope".into(),
                    soft: 1,
                    hard: 1,
                }],
                ..Default::default()
            },
            ContainerConfig {
                mounts: vec![MountSpec {
                    kind: "bind".into(),
                    source: "relative".into(),
                    target: "/x".into(),
                    readonly: false,
                    options: vec![],
                }],
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(build_with(&c, None).is_err(), "{c:?}");
        }
    }
}
