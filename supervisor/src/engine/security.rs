//! Capabilities and seccomp for a container.
//!
//! - Capabilities start from Docker's 14 defaults; `--cap-add ALL` takes
//!   every capability, `--cap-drop ALL` clears the set first, then single
//!   names are added and dropped. `--privileged` takes every capability.
//!   Whatever was asked, the set is cut to the host's bounding set, so a
//!   privileged container runs on a host that lacks some capability
//!   (a capability the host does not have cannot be given anyway).
//! - Seccomp: unless unconfined (or privileged), a default profile of our
//!   own: every syscall is allowed except those that reach past the
//!   container (kernel modules, reboot, clocks, mounts, namespaces,
//!   keyrings, tracing and reading other processes' memory, BPF, perf,
//!   swap, accounting, raw I/O ports), each allowed back when the container
//!   holds the capability that makes it legitimate, as Docker's profile
//!   does. A client's own profile (OCI or Docker JSON) replaces it.

use berth_api::caps;
use serde_json::{json, Value};

use super::{Error, Result};

/// The container's capability set ([`berth_api::caps::resolve`]; every
/// name is checked even when `privileged` ignores them).
pub(super) fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
    host: &[String],
) -> Result<Vec<String>> {
    let unknown = |e: caps::UnknownCapability| {
        Error::InvalidArgument(format!("capability {:?}: unknown", e.0))
    };
    for name in add.iter().chain(drop) {
        if !name.trim().eq_ignore_ascii_case("ALL") {
            caps::canonical(name).map_err(unknown)?;
        }
    }
    let none: &[String] = &[];
    let (add, drop) = if privileged {
        (none, none)
    } else {
        (add, drop)
    };
    caps::resolve(privileged, add, drop, host).map_err(unknown)
}

/// Syscalls the default profile refuses, each with the capability that
/// allows it back (None: refused whatever the capabilities).
const GUARDED: &[(&str, Option<&str>)] = &[
    ("acct", Some("CAP_SYS_PACCT")),
    ("add_key", None),
    ("bpf", Some("CAP_BPF")),
    ("clock_adjtime", Some("CAP_SYS_TIME")),
    ("clock_settime", Some("CAP_SYS_TIME")),
    ("create_module", None),
    ("delete_module", Some("CAP_SYS_MODULE")),
    ("finit_module", Some("CAP_SYS_MODULE")),
    ("fsconfig", Some("CAP_SYS_ADMIN")),
    ("fsmount", Some("CAP_SYS_ADMIN")),
    ("fsopen", Some("CAP_SYS_ADMIN")),
    ("fspick", Some("CAP_SYS_ADMIN")),
    ("get_kernel_syms", None),
    ("get_mempolicy", Some("CAP_SYS_NICE")),
    ("init_module", Some("CAP_SYS_MODULE")),
    ("ioperm", Some("CAP_SYS_RAWIO")),
    ("iopl", Some("CAP_SYS_RAWIO")),
    ("kcmp", Some("CAP_SYS_PTRACE")),
    ("kexec_file_load", Some("CAP_SYS_BOOT")),
    ("kexec_load", Some("CAP_SYS_BOOT")),
    ("keyctl", None),
    ("lookup_dcookie", Some("CAP_SYS_ADMIN")),
    ("mbind", Some("CAP_SYS_NICE")),
    ("mount", Some("CAP_SYS_ADMIN")),
    ("move_mount", Some("CAP_SYS_ADMIN")),
    ("move_pages", Some("CAP_SYS_NICE")),
    ("name_to_handle_at", Some("CAP_SYS_ADMIN")),
    ("nfsservctl", None),
    ("open_by_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("open_tree", Some("CAP_SYS_ADMIN")),
    ("perf_event_open", Some("CAP_PERFMON")),
    ("pivot_root", Some("CAP_SYS_ADMIN")),
    ("process_vm_readv", Some("CAP_SYS_PTRACE")),
    ("process_vm_writev", Some("CAP_SYS_PTRACE")),
    ("ptrace", Some("CAP_SYS_PTRACE")),
    ("query_module", None),
    ("quotactl", Some("CAP_SYS_ADMIN")),
    ("reboot", Some("CAP_SYS_BOOT")),
    ("request_key", None),
    ("set_mempolicy", Some("CAP_SYS_NICE")),
    ("setns", Some("CAP_SYS_ADMIN")),
    ("settimeofday", Some("CAP_SYS_TIME")),
    ("swapoff", Some("CAP_SYS_ADMIN")),
    ("swapon", Some("CAP_SYS_ADMIN")),
    ("syslog", Some("CAP_SYSLOG")),
    ("umount2", Some("CAP_SYS_ADMIN")),
    ("unshare", Some("CAP_SYS_ADMIN")),
    ("uselib", None),
    ("userfaultfd", None),
    ("ustat", None),
    ("vhangup", Some("CAP_SYS_TTY_CONFIG")),
    ("vm86", None),
    ("vm86old", None),
];

/// The architectures the profile covers: the host's and its 32-bit modes.
fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "s390x" => vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" => vec!["SCMP_ARCH_PPC64LE"],
        _ => vec![],
    }
}

/// The default profile (OCI `linux.seccomp`) for a container holding `caps`.
pub(super) fn default_profile(caps: &[String]) -> Value {
    let refused: Vec<&str> = GUARDED
        .iter()
        .filter(|(_, cap)| cap.is_none_or(|c| !caps.iter().any(|have| have == c)))
        .map(|(s, _)| *s)
        .collect();
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [{
            "names": refused,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
        }],
    })
}

/// A client's profile: OCI (`defaultAction`, `syscalls[].names`) or
/// Docker's (the same with `archMap`, `name` per rule), as OCI.
pub(super) fn client_profile(text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidArgument(format!("seccomp profile: not JSON: {e}")))?;
    let Some(default) = v.get("defaultAction").and_then(Value::as_str) else {
        return Err(Error::InvalidArgument(
            "seccomp profile: defaultAction is required".into(),
        ));
    };
    let mut archs: Vec<Value> = v
        .get("architectures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if archs.is_empty() {
        if let Some(map) = v.get("archMap").and_then(Value::as_array) {
            for a in map {
                if let Some(arch) = a.get("architecture") {
                    archs.push(arch.clone());
                }
                if let Some(subs) = a.get("subArchitectures").and_then(Value::as_array) {
                    archs.extend(subs.iter().cloned());
                }
            }
        }
    }
    let mut rules = Vec::new();
    for r in v
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut names: Vec<Value> = r
            .get("names")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = r.get("name") {
            names.push(n.clone());
        }
        let Some(action) = r.get("action") else {
            return Err(Error::InvalidArgument(
                "seccomp profile: a syscall rule without action".into(),
            ));
        };
        let mut rule = json!({"names": names, "action": action});
        for k in ["args", "errnoRet"] {
            if let Some(x) = r.get(k) {
                rule[k] = x.clone();
            }
        }
        rules.push(rule);
    }
    Ok(json!({"defaultAction": default, "architectures": archs, "syscalls": rules}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        caps::ALL.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn capabilities_add_drop_all_and_the_host_bound() {
        let d = capabilities(&[], &[], false, &all()).unwrap();
        assert_eq!(d.len(), 14);
        let c = capabilities(&["net_admin".into()], &["KILL".into()], false, &all()).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        let c = capabilities(&["CHOWN".into()], &["ALL".into()], false, &all()).unwrap();
        assert_eq!(c, ["CAP_CHOWN"]);
        let mut host = all();
        host.retain(|c| c != "CAP_SYS_RESOURCE");
        let p = capabilities(&[], &[], true, &host).unwrap();
        assert_eq!(p.len(), 40);
        assert!(!p.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert!(capabilities(&["NOPE".into()], &[], false, &all()).is_err());
        assert_eq!(
            caps::bounding_set_from_status("Name:\tx\nCapBnd:\t0000000000000003\n"),
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE"]
        );
    }

    #[test]
    fn default_profile_allows_back_what_a_capability_permits() {
        let p = default_profile(&["CAP_CHOWN".into()]);
        let refused = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(refused.contains(&json!("mount")));
        assert!(refused.contains(&json!("keyctl")));
        let p = default_profile(&["CAP_SYS_ADMIN".into()]);
        let refused = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(!refused.contains(&json!("mount")));
        assert!(refused.contains(&json!("reboot")));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn client_profiles_in_docker_form() {
        let p = client_profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
               "syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW"},{"names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(p["syscalls"][0]["names"], json!(["read"]));
        assert!(client_profile("{}").is_err());
    }
}
