//! Building a container's OCI runtime spec from an image config and the
//! `run` flags, with containerd's defaults: the usual pseudo-filesystems,
//! 14 default capabilities, masked and read-only /proc paths, new
//! pid/ipc/uts/mount/network namespaces, a cgroupfs path `/<ns>/<id>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, Spec, User,
};
use serde_json::json;

use crate::error::{Error, Result};
use berth_api::oci::ExecConfig;

/// PATH for images that set none.
pub use berth_api::oci::{merge_env, DEFAULT_PATH};
/// CFS period used for `--cpus`.
const CPU_PERIOD: u64 = 100_000;

/// What the command line asks for, on top of the image.
#[derive(Debug, Default, Clone)]
pub struct RunSpec {
    /// container id (hostname, cgroup path)
    pub id: String,
    /// namespace (cgroup path)
    pub namespace: String,
    /// replaces the image's CMD (and its ENTRYPOINT when `entrypoint` set)
    pub args: Vec<String>,
    /// replaces the image's ENTRYPOINT
    pub entrypoint: Option<String>,
    /// `KEY=value`, added after (and overriding) the image's
    pub env: Vec<String>,
    /// working directory override
    pub cwd: Option<String>,
    /// user override: `uid[:gid]` (names need `users`)
    pub user: Option<String>,
    /// extra mounts in ctr's `type=bind,src=...,dst=...,options=a:b` form
    pub mounts: Vec<String>,
    /// allocate a terminal
    pub tty: bool,
    /// memory limit in bytes
    pub memory_limit: Option<i64>,
    /// CPU limit in CPUs (fractions allowed)
    pub cpus: Option<f64>,
    /// share the host's network namespace (and its hosts/resolv.conf)
    pub net_host: bool,
    /// all capabilities, all devices, no masked paths
    pub privileged: bool,
    /// read-only root filesystem
    pub read_only: bool,
}

/// Users and groups of the image's rootfs (`/etc/passwd`, `/etc/group`),
/// for resolving a user name.
#[derive(Debug, Default, Clone)]
pub struct Users {
    /// name → (uid, gid)
    pub passwd: BTreeMap<String, (u32, u32)>,
    /// name → gid
    pub groups: BTreeMap<String, u32>,
    /// uid → supplementary gids (from the group file's member lists)
    pub members: BTreeMap<String, Vec<u32>>,
}

impl Users {
    /// Parses passwd and group file contents.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let mut u = Self::default();
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    u.passwd.insert(f[0].to_string(), (uid, gid));
                }
            }
        }
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 {
                if let Ok(gid) = f[2].parse::<u32>() {
                    u.groups.insert(f[0].to_string(), gid);
                    for m in f.get(3).unwrap_or(&"").split(',').filter(|m| !m.is_empty()) {
                        u.members.entry(m.to_string()).or_default().push(gid);
                    }
                }
            }
        }
        u
    }
}

/// The base spec every container starts from.
fn base(id: &str, namespace: &str) -> Result<Spec> {
    let caps = berth_api::caps::DEFAULTS;
    let v = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "hostname": id,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [],
            "cwd": "/",
            "capabilities": {"bounding": caps, "permitted": caps, "effective": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {
            "cgroupsPath": format!("/{namespace}/{id}"),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    serde_json::from_value(v).map_err(|e| Error::Protocol(format!("default spec: {e}")))
}

/// Does the user string need the image's passwd/group files?
pub fn needs_users(user: &str) -> bool {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    u.parse::<u32>().is_err() || (!g.is_empty() && g.parse::<u32>().is_err())
}

/// Resolves `user[:group]` (names or numbers) to a spec user.
pub fn resolve_user(user: &str, users: &Users) -> Result<User> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let (uid, mut gid, name) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = users
                .passwd
                .values()
                .find(|(x, _)| *x == uid)
                .map(|(_, g)| *g)
                .unwrap_or(0);
            (uid, gid, None)
        }
        Err(_) if u.is_empty() => (0, 0, None),
        Err(_) => {
            let (uid, gid) = users
                .passwd
                .get(u)
                .copied()
                .or((u == "root").then_some((0, 0)))
                .ok_or_else(|| {
                    Error::Input(format!("user {u:?}: not found in the image's /etc/passwd"))
                })?;
            (uid, gid, Some(u.to_string()))
        }
    };
    if !g.is_empty() {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => *users.groups.get(g).ok_or_else(|| {
                Error::Input(format!("group {g:?}: not found in the image's /etc/group"))
            })?,
        };
    }
    let mut out = User::default();
    out.set_uid(uid);
    out.set_gid(gid);
    if let Some(n) = name {
        if let Some(extra) = users.members.get(&n) {
            out.set_additional_gids(Some(extra.clone()));
        }
    }
    Ok(out)
}

/// Parses ctr's `--mount` syntax: `type=bind,src=/a,dst=/b,options=rbind:ro`.
pub fn parse_mount(s: &str) -> Result<Mount> {
    let mut kind = None;
    let mut src = None;
    let mut dst = None;
    let mut options = Vec::new();
    for kv in s.split(',') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("--mount {s:?}: {kv:?} is not key=value")))?;
        match k {
            "type" => kind = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "dst" | "destination" | "target" => dst = Some(v.to_string()),
            "options" => options.extend(v.split(':').filter(|o| !o.is_empty()).map(str::to_string)),
            _ => return Err(Error::Input(format!("--mount {s:?}: unknown key {k:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| Error::Input(format!("--mount {s:?}: dst is required")))?;
    if !dst.starts_with('/') {
        return Err(Error::Input(format!(
            "--mount {s:?}: dst must be an absolute path"
        )));
    }
    let kind = kind.unwrap_or_else(|| "bind".into());
    if kind == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
        options.push("rbind".into());
    }
    let mut b = MountBuilder::default()
        .destination(PathBuf::from(dst))
        .typ(kind);
    if let Some(src) = src {
        b = b.source(PathBuf::from(src));
    }
    if !options.is_empty() {
        b = b.options(options);
    }
    b.build()
        .map_err(|e| Error::Input(format!("--mount {s:?}: {e}")))
}

/// The process arguments: ENTRYPOINT + CMD, where the command line's args
/// replace CMD and `--entrypoint` replaces ENTRYPOINT (dropping CMD;
/// `--entrypoint ""` leaves none).
pub fn args(image: &ExecConfig, run: &RunSpec) -> Vec<String> {
    let entrypoint: Option<Vec<String>> = run.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    image.process_args(entrypoint.as_deref(), &run.args)
}

/// Builds the spec for `run` from the image config.
pub fn build(image: &ExecConfig, run: &RunSpec, users: &Users) -> Result<Spec> {
    let mut spec = base(&run.id, &run.namespace)?;
    let args = args(image, run);
    if args.is_empty() {
        return Err(Error::Input(
            "no command: the image has no ENTRYPOINT or CMD, give one after the container id"
                .into(),
        ));
    }
    let mut env = image.process_env(&run.env);
    if run.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = run
        .cwd
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let user = run
        .user
        .clone()
        .or_else(|| image.user.clone().filter(|u| !u.is_empty()));
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| Error::Protocol("default spec has no process".into()))?;
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_terminal(Some(run.tty));
    if let Some(u) = user {
        process.set_user(resolve_user(&u, users)?);
    }
    if run.privileged {
        // every capability the host has: asking for one outside its
        // bounding set would fail in the runtime
        let all = berth_api::caps::resolve(true, &[], &[], &berth_api::caps::host_bounding_set())
            .map_err(|e| Error::Input(e.to_string()))?;
        let v = json!({"bounding": all, "permitted": all, "effective": all});
        process.set_capabilities(Some(
            serde_json::from_value(v).map_err(|e| Error::Protocol(format!("capabilities: {e}")))?,
        ));
    }

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if run.net_host {
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            mounts.push(
                MountBuilder::default()
                    .destination(f)
                    .typ("bind")
                    .source(f)
                    .options(vec!["rbind".to_string(), "ro".to_string()])
                    .build()
                    .map_err(|e| Error::Protocol(format!("mount {f}: {e}")))?,
            );
        }
    }
    for m in &run.mounts {
        mounts.push(parse_mount(m)?);
    }
    spec.set_mounts(Some(mounts));
    if let Some(root) = spec.root_mut().as_mut() {
        root.set_readonly(Some(run.read_only));
    }

    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| Error::Protocol("default spec has no linux section".into()))?;
    if run.net_host {
        let kept: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        linux.set_namespaces(Some(kept));
    }
    if run.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    let mut resources = LinuxResourcesBuilder::default();
    let devices = linux.resources().as_ref().and_then(|r| r.devices().clone());
    if run.privileged {
        let allow_all = serde_json::from_value(json!([{"allow": true, "access": "rwm"}]))
            .map_err(|e| Error::Protocol(format!("devices: {e}")))?;
        resources = resources.devices::<Vec<_>>(allow_all);
    } else if let Some(d) = devices {
        resources = resources.devices(d);
    }
    if let Some(limit) = run.memory_limit {
        if limit <= 0 {
            return Err(Error::Input(format!(
                "--memory-limit {limit}: must be positive"
            )));
        }
        let mem = LinuxMemoryBuilder::default()
            .limit(limit)
            .build()
            .map_err(|e| Error::Input(format!("--memory-limit: {e}")))?;
        resources = resources.memory(mem);
    }
    if let Some(cpus) = run.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(Error::Input(format!(
                "--cpus {cpus}: must be a positive number"
            )));
        }
        let cpu = LinuxCpuBuilder::default()
            .period(CPU_PERIOD)
            .quota((cpus * CPU_PERIOD as f64).round() as i64)
            .build()
            .map_err(|e| Error::Input(format!("--cpus: {e}")))?;
        resources = resources.cpu(cpu);
    }
    linux.set_resources(Some(
        resources
            .build()
            .map_err(|e| Error::Protocol(format!("resources: {e}")))?,
    ));
    Ok(spec)
}

/// Serialises a spec for the wire (`Any` with containerd's type URL).
pub fn to_any(spec: &Spec) -> Result<prost_types::Any> {
    Ok(prost_types::Any {
        type_url: berth_api::type_urls::OCI_SPEC.into(),
        value: serde_json::to_vec(spec)
            .map_err(|e| Error::Protocol(format!("encode spec: {e}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ExecConfig {
        ExecConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["a".into(), "b".into()]),
            env: Some(vec!["PATH=/bin".into(), "X=1".into()]),
            working_dir: Some("/w".into()),
            user: Some("app".into()),
            ..Default::default()
        }
    }

    fn users() -> Users {
        Users::parse(
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n",
        )
    }

    #[test]
    fn args_env_cwd_user_from_image_and_flags() {
        let run = RunSpec {
            id: "c1".into(),
            namespace: "default".into(),
            args: vec!["x".into()],
            env: vec!["X=2".into(), "Y=3".into()],
            memory_limit: Some(32 << 20),
            cpus: Some(0.5),
            ..Default::default()
        };
        let s = build(&image(), &run, &users()).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(
            p.args().as_ref().unwrap(),
            &vec!["/entry".to_string(), "x".into()]
        );
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec!["PATH=/bin".to_string(), "X=2".into(), "Y=3".into()]
        );
        assert_eq!(p.cwd().to_str(), Some("/w"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![2000]);
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["linux"]["cgroupsPath"], "/default/c1");
        assert_eq!(json["hostname"], "c1");
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(json["mounts"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn entrypoint_override_drops_cmd_and_net_host() {
        let run = RunSpec {
            id: "c".into(),
            namespace: "n".into(),
            entrypoint: Some("/bin/sh".into()),
            net_host: true,
            user: Some("0:0".into()),
            mounts: vec!["type=bind,src=/tmp,dst=/data,options=ro".into()],
            ..Default::default()
        };
        let s = build(&image(), &run, &Users::default()).unwrap();
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["process"]["args"], json!(["/bin/sh"]));
        let ns: Vec<&str> = j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"network"), "{ns:?}");
        let m = j["mounts"].as_array().unwrap();
        assert!(m.iter().any(|m| m["destination"] == "/etc/resolv.conf"));
        let data = m.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["options"], json!(["ro", "rbind"]));
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse_mount("src=/a").is_err());
        assert!(parse_mount("dst=rel").is_err());
        assert!(parse_mount("bogus").is_err());
        assert!(resolve_user("nobody", &Users::default()).is_err());
        assert!(needs_users("app") && needs_users("0:wheel") && !needs_users("1:2"));
        let run = RunSpec {
            cpus: Some(-1.0),
            args: vec!["x".into()],
            ..Default::default()
        };
        assert!(build(&ExecConfig::default(), &run, &Users::default()).is_err());
        let empty = RunSpec::default();
        assert!(build(&ExecConfig::default(), &empty, &Users::default()).is_err());
    }
}
