//! Linux capabilities as OCI specs name them, shared by every side that
//! builds a spec (berthctl's `run`, the CRI, the container engine).
//!
//! A container's set starts from containerd's 14 defaults (or every
//! capability when privileged); `ALL` in the added names takes every one,
//! `ALL` in the dropped names clears the set, then single names are added
//! and dropped. The result is cut down to the host's bounding set, so a
//! privileged container on a host without, say, CAP_SYS_RESOURCE gets
//! everything else instead of failing in the runtime.

/// Capability names by number (`capabilities(7)`), the bit order of `CapBnd`.
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default set for unprivileged containers.
pub const DEFAULTS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A capability name nobody knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

/// `NET_ADMIN`, `net_admin`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`.
pub fn canonical(name: &str) -> Result<String, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(UnknownCapability(name.to_string()))
    }
}

/// The capability names of the `CapBnd:` mask in a `/proc/PID/status` text.
pub fn bounding_set_from_status(status: &str) -> Vec<String> {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    ALL.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// This process's bounding set (what any child of ours can hold at most).
pub fn host_bounding_set() -> Vec<String> {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| bounding_set_from_status(&s))
        .unwrap_or_else(|_| ALL.iter().map(|c| c.to_string()).collect())
}

/// The set a container gets: defaults or all (privileged), `add` and `drop`
/// applied (each may hold `ALL`), limited to `host`.
pub fn resolve(
    privileged: bool,
    add: &[String],
    drop: &[String],
    host: &[String],
) -> Result<Vec<String>, UnknownCapability> {
    let all = || ALL.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut caps: Vec<String> = if privileged || add.iter().any(is_all) {
        all()
    } else {
        DEFAULTS.iter().map(|c| c.to_string()).collect()
    };
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !is_all(c)) {
        let c = canonical(c)?;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        let c = canonical(c)?;
        caps.retain(|x| *x != c);
    }
    caps.retain(|c| host.contains(c));
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn names_are_canonical_and_unknown_ones_refused() {
        assert_eq!(canonical("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(canonical("CAP_KILL").unwrap(), "CAP_KILL");
        assert!(canonical("FLY").is_err());
    }

    #[test]
    fn bounding_set_is_read_from_cap_bnd() {
        let caps = bounding_set_from_status("Name:\tx\nCapBnd:\t0000000000000021\n");
        assert_eq!(caps, ["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(
            bounding_set_from_status("CapBnd:\t000001ffffffffff").len(),
            41
        );
        assert!(bounding_set_from_status("nothing").is_empty());
    }

    #[test]
    fn privileged_is_limited_to_the_host() {
        let host: Vec<String> = all_but("CAP_SYS_RESOURCE");
        let caps = resolve(true, &[], &[], &host).unwrap();
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
    }

    #[test]
    fn all_and_single_names_apply_in_order() {
        let host = all_but("");
        assert_eq!(
            resolve(false, &v(&["sys_admin"]), &v(&["ALL"]), &host).unwrap(),
            v(&["CAP_SYS_ADMIN"])
        );
        let caps = resolve(false, &v(&["ALL"]), &v(&["KILL"]), &host).unwrap();
        assert_eq!(caps.len(), 40);
        assert_eq!(resolve(false, &[], &[], &host).unwrap().len(), 14);
        assert!(resolve(false, &v(&["nope"]), &[], &host).is_err());
    }

    fn all_but(c: &str) -> Vec<String> {
        ALL.iter()
            .filter(|x| **x != c)
            .map(|x| x.to_string())
            .collect()
    }
}
