//! Capabilities, masked and read-only paths, and seccomp for a CRI
//! container.
//!
//! - Capabilities: [`berth_api::caps`]'s rules (defaults, `ALL`, the host's
//!   bounding set); ambient ones are added to the set too.
//! - Masked and read-only paths: the request's lists, or the kubelet's
//!   defaults when it sends none; none at all for privileged containers.
//! - Seccomp: Unconfined, Localhost (a profile file in Docker's or the OCI
//!   format) or RuntimeDefault, which is [`default_profile`], a profile of
//!   our own: everything allowed except the syscalls that reach past the
//!   container (kernel modules, reboot, clocks, mounts, namespaces, keyring,
//!   tracing other processes, ...) unless the container holds the
//!   capability that would make them legitimate. Privileged: no filter.

use berth_api::caps;
use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use super::Error;

/// The kubelet's default masked paths.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The kubelet's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's capability set (bounding = effective = permitted) and
/// its ambient set, limited to the host's bounding set `host`
/// ([`berth_api::caps::resolve`]; a privileged container ignores the request).
pub fn capabilities(
    privileged: bool,
    request: Option<&cri::Capability>,
    host: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    let invalid = |e: caps::UnknownCapability| Error::invalid(e.to_string());
    let Some(r) = request.filter(|_| !privileged) else {
        return Ok((
            caps::resolve(privileged, &[], &[], host).map_err(invalid)?,
            Vec::new(),
        ));
    };
    let mut add = r.add_capabilities.clone();
    add.extend(r.add_ambient_capabilities.iter().cloned());
    let set = caps::resolve(false, &add, &r.drop_capabilities, host).map_err(invalid)?;
    let mut ambient = Vec::new();
    for c in &r.add_ambient_capabilities {
        let c = caps::canonical(c).map_err(invalid)?;
        if host.contains(&c) {
            ambient.push(c);
        }
    }
    Ok((set, ambient))
}

/// The masked and read-only paths for the spec.
pub fn masked_and_readonly(
    privileged: bool,
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> (Vec<String>, Vec<String>) {
    if privileged {
        return (Vec::new(), Vec::new());
    }
    let pick = |given: Option<&Vec<String>>, default: &[&str]| match given {
        Some(v) if !v.is_empty() => v.clone(),
        _ => default.iter().map(|s| s.to_string()).collect(),
    };
    (
        pick(sc.map(|s| &s.masked_paths), &DEFAULT_MASKED_PATHS),
        pick(sc.map(|s| &s.readonly_paths), &DEFAULT_READONLY_PATHS),
    )
}

/// Which seccomp profile applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// No filter.
    Unconfined,
    /// [`default_profile`].
    RuntimeDefault,
    /// A profile file on the host (absolute path).
    Localhost(String),
}

/// The profile a container asks for: the typed field, else the deprecated
/// path string (`runtime/default`, `docker/default`, `localhost/PATH`,
/// `unconfined`); nothing at all means unconfined (the kubelet sends
/// RuntimeDefault explicitly when it wants it). Privileged: unconfined.
pub fn seccomp_choice(
    privileged: bool,
    profile: Option<&cri::SecurityProfile>,
    legacy_path: &str,
) -> Result<Seccomp, Error> {
    use cri::security_profile::ProfileType;
    if privileged {
        return Ok(Seccomp::Unconfined);
    }
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Seccomp::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(Seccomp::Unconfined),
            Ok(ProfileType::Localhost) if p.localhost_ref.starts_with('/') => {
                Ok(Seccomp::Localhost(p.localhost_ref.clone()))
            }
            Ok(ProfileType::Localhost) => Err(Error::invalid(format!(
                "seccomp localhost_ref {:?}: must be an absolute path",
                p.localhost_ref
            ))),
            Err(_) => Err(Error::invalid(format!(
                "seccomp profile type {}: unknown",
                p.profile_type
            ))),
        };
    }
    match legacy_path {
        "" | "unconfined" => Ok(Seccomp::Unconfined),
        "runtime/default" | "docker/default" => Ok(Seccomp::RuntimeDefault),
        p => match p.strip_prefix("localhost/") {
            Some(path) if path.starts_with('/') => Ok(Seccomp::Localhost(path.into())),
            _ => Err(Error::invalid(format!(
                "seccomp profile {p:?}: expected unconfined, runtime/default or localhost/<absolute path>"
            ))),
        },
    }
}

/// Syscalls refused by [`default_profile`] (EPERM) unless the container
/// holds the capability named with them.
const GUARDED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "name_to_handle_at",
            "lookup_dcookie",
            "syslog",
            "setdomainname",
            "sethostname",
            "bpf",
            "perf_event_open",
            "fanotify_init",
            "vm86",
            "vm86old",
        ],
    ),
    (
        "CAP_SYS_MODULE",
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot", "kexec_load", "kexec_file_load"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    (
        "CAP_SYS_PTRACE",
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_NICE",
        &["mbind", "set_mempolicy", "move_pages", "migrate_pages"],
    ),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

/// Refused for every container, whatever its capabilities.
const ALWAYS_REFUSED: &[&str] = &[
    "add_key",
    "request_key",
    "keyctl",
    "swapon",
    "swapoff",
    "uselib",
    "userfaultfd",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "vhangup",
];

/// Berth's RuntimeDefault profile for a container holding `caps`.
pub fn default_profile(caps: &[String]) -> Value {
    let mut refused: Vec<&str> = ALWAYS_REFUSED.to_vec();
    for (cap, calls) in GUARDED {
        if !caps.iter().any(|c| c == cap) {
            refused.extend_from_slice(calls);
        }
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}

/// A Localhost profile's text (Docker's format or the OCI one) as the
/// spec's `linux.seccomp`.
pub fn localhost_profile(path: &str, text: &str) -> Result<Value, Error> {
    let bad = |why: String| Error::invalid(format!("seccomp profile {path}: {why}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let default_action = obj
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("defaultAction is missing".into()))?;
    let mut out = json!({"defaultAction": default_action});
    if let Some(errno) = obj.get("defaultErrnoRet") {
        out["defaultErrnoRet"] = errno.clone();
    }
    // Docker's archMap lists main and sub-architectures; OCI's is a list.
    let mut arches: Vec<Value> = obj
        .get("architectures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in obj
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        arches.extend(m.get("architecture").cloned());
        arches.extend(
            m.get("subArchitectures")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    if !arches.is_empty() {
        out["architectures"] = Value::Array(arches);
    }
    if let Some(flags) = obj.get("flags") {
        out["flags"] = flags.clone();
    }
    let mut syscalls = Vec::new();
    for s in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut names: Vec<Value> = s
            .get("names")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        names.extend(s.get("name").cloned());
        let action = s
            .get("action")
            .cloned()
            .ok_or_else(|| bad("a syscall rule has no action".into()))?;
        let mut rule = json!({"names": names, "action": action});
        for key in ["errnoRet", "args"] {
            if let Some(x) = s.get(key).filter(|x| !x.is_null()) {
                rule[key] = x.clone();
            }
        }
        syscalls.push(rule);
    }
    if !syscalls.is_empty() {
        out["syscalls"] = Value::Array(syscalls);
    }
    // Validate against the OCI types now rather than at runc's create.
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(out.clone())
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_all() -> Vec<String> {
        caps::ALL.iter().map(|c| c.to_string()).collect()
    }

    fn req(add: &[&str], drop: &[&str]) -> cri::Capability {
        cri::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            add_ambient_capabilities: vec![],
        }
    }

    #[test]
    fn add_drop_and_all() {
        let (c, _) = capabilities(false, None, &host_all()).unwrap();
        assert_eq!(c.len(), 14);
        let (c, _) =
            capabilities(false, Some(&req(&["NET_ADMIN"], &["net_raw"])), &host_all()).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_NET_RAW".to_string()));
        let (c, _) = capabilities(false, Some(&req(&["ALL"], &[])), &host_all()).unwrap();
        assert_eq!(c.len(), 41);
        let (c, _) = capabilities(false, Some(&req(&["CAP_KILL"], &["ALL"])), &host_all()).unwrap();
        assert_eq!(c, ["CAP_KILL"], "drop ALL, then the single adds");
        assert!(capabilities(false, Some(&req(&["FLY"], &[])), &host_all()).is_err());
    }

    #[test]
    fn privileged_is_limited_to_the_host_bounding_set() {
        let host: Vec<String> = host_all()
            .into_iter()
            .filter(|c| c != "CAP_SYS_RESOURCE")
            .collect();
        let (c, _) = capabilities(true, Some(&req(&[], &["ALL"])), &host).unwrap();
        assert_eq!(c.len(), 40);
        assert!(!c.contains(&"CAP_SYS_RESOURCE".to_string()));
        let (c, _) = capabilities(false, Some(&req(&["SYS_RESOURCE"], &[])), &host).unwrap();
        assert!(!c.contains(&"CAP_SYS_RESOURCE".to_string()));
    }

    #[test]
    fn masked_paths_default_or_given_and_none_when_privileged() {
        let (m, r) = masked_and_readonly(false, None);
        assert!(m.contains(&"/proc/kcore".to_string()));
        assert!(r.contains(&"/proc/sys".to_string()));
        let sc = cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/bin/ls".into()],
            readonly_paths: vec!["/tmp".into()],
            ..Default::default()
        };
        assert_eq!(
            masked_and_readonly(false, Some(&sc)),
            (vec!["/bin/ls".into()], vec!["/tmp".into()])
        );
        assert_eq!(masked_and_readonly(true, Some(&sc)), (vec![], vec![]));
    }

    #[test]
    fn seccomp_choices() {
        use cri::security_profile::ProfileType as P;
        let p = |t: P, r: &str| cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        };
        assert_eq!(
            seccomp_choice(false, None, "").unwrap(),
            Seccomp::Unconfined
        );
        assert_eq!(
            seccomp_choice(false, Some(&p(P::RuntimeDefault, "")), "").unwrap(),
            Seccomp::RuntimeDefault
        );
        assert_eq!(
            seccomp_choice(true, Some(&p(P::RuntimeDefault, "")), "").unwrap(),
            Seccomp::Unconfined
        );
        assert_eq!(
            seccomp_choice(false, Some(&p(P::Localhost, "/x.json")), "").unwrap(),
            Seccomp::Localhost("/x.json".into())
        );
        assert!(seccomp_choice(false, Some(&p(P::Localhost, "rel.json")), "").is_err());
        assert_eq!(
            seccomp_choice(false, None, "runtime/default").unwrap(),
            Seccomp::RuntimeDefault
        );
        assert_eq!(
            seccomp_choice(false, None, "localhost//p.json").unwrap(),
            Seccomp::Localhost("/p.json".into())
        );
        assert!(seccomp_choice(false, None, "bogus").is_err());
    }

    #[test]
    fn default_profile_refuses_what_caps_do_not_allow() {
        let names = |v: &Value| -> Vec<String> {
            serde_json::from_value(v["syscalls"][0]["names"].clone()).unwrap()
        };
        let plain = default_profile(&["CAP_KILL".into()]);
        assert!(names(&plain).contains(&"sethostname".to_string()));
        assert!(names(&plain).contains(&"keyctl".to_string()));
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        assert!(!names(&admin).contains(&"mount".to_string()));
        assert!(names(&admin).contains(&"reboot".to_string()));
        serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(plain)
            .expect("valid OCI seccomp");
    }

    #[test]
    fn localhost_profiles_in_docker_and_oci_form() {
        let docker = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO","args":null,"comment":"x"}]}"#;
        let v = localhost_profile("/p.json", docker).unwrap();
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(v["syscalls"][0]["names"], json!(["chmod"]));
        assert!(v["syscalls"][0].get("comment").is_none());
        let e = localhost_profile("/p.json", "{}").unwrap_err();
        assert!(e.to_string().contains("defaultAction"), "{e}");
        assert!(localhost_profile("/p.json", "not json").is_err());
        assert!(localhost_profile("/p.json", r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).is_err());
    }
}
