//! A stand-in network namespace for a DEL whose namespace is gone.
//!
//! The bridge plugin finds what to undo on the host by looking inside the
//! namespace: it deletes the interface CNI_IFNAME there and tears down
//! the masquerading rules of the addresses it held. Given an empty or
//! missing CNI_NETNS it only releases the IPAM lease, and those rules stay
//! on the host for good (containernetworking/plugins issue 810, unfixed in
//! the plugins Debian ships and later ones). So when the namespace of a
//! cached attachment is gone, the DEL is run against a stand-in made at
//! the same path: a fresh namespace with a veth named CNI_IFNAME carrying
//! the cached addresses. The plugins then clean up as if nothing had gone
//! missing, and the stand-in is removed afterwards.

use std::path::Path;

use ipnet::IpNet;

use super::error::Error;
use super::netns::{self, NetNs};
use super::{netlink, Result};

/// The veth's other end (also inside the stand-in, gone with it).
fn peer_name(ifname: &str) -> &'static str {
    if ifname == "berth-standin" {
        "berth-standin1"
    } else {
        "berth-standin"
    }
}

/// Whether a stand-in can be made at `path`: its parent is a directory
/// (a netns dir; not under /proc, where a process's namespace vanished
/// with it) and the path itself holds no namespace.
pub(crate) fn possible(path: &Path) -> bool {
    !path.starts_with("/proc")
        && path.file_name().is_some()
        && path.parent().is_some_and(Path::is_dir)
        && NetNs::open(path).is_err()
}

/// Makes the stand-in at `path`: a namespace whose interface `ifname`
/// holds `addrs`. Blocking. On failure nothing is left at `path`.
pub(crate) fn create(path: &Path, ifname: &str, addrs: &[IpNet]) -> Result<NetNs> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::InvalidArgument(format!(
            "netns path {}: no parent",
            path.display()
        )));
    };
    let name = name.to_string_lossy().into_owned();
    let ns = netns::create(dir, &name)?;
    let ifname_owned = ifname.to_owned();
    let addrs = addrs.to_vec();
    let made = ns.run(move || -> std::io::Result<()> {
        netlink::add_veth_pair(&ifname_owned, peer_name(&ifname_owned))?;
        for addr in addrs {
            netlink::add_address(&ifname_owned, addr)?;
        }
        Ok(())
    });
    match made {
        Ok(Ok(())) => Ok(ns),
        Ok(Err(e)) => {
            let _ = netns::remove(path);
            Err(Error::sys(
                format!("stand-in interface {ifname} in {}", path.display()),
                e,
            ))
        }
        Err(e) => {
            let _ = netns::remove(path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_never_equals_the_interface() {
        assert_ne!(peer_name("eth0"), "eth0");
        assert_ne!(peer_name("berth-standin"), "berth-standin");
    }

    #[test]
    fn possible_only_for_a_missing_netns_in_a_real_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(possible(&dir.path().join("gone")));
        assert!(!possible(&dir.path().join("nodir/gone")));
        assert!(!possible(Path::new("/proc/999999999/ns/net")));
        assert!(!possible(Path::new("/proc/self/ns/net")));
    }

    #[test]
    fn standin_holds_the_cached_addresses() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("!!! SKIP standin_holds_the_cached_addresses: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let nsdir = dir.path().join("netns");
        std::fs::create_dir(&nsdir).unwrap();
        let path = nsdir.join("old");
        let addrs: Vec<IpNet> = vec![
            "10.89.250.7/24".parse().unwrap(),
            "fd00:89::7/64".parse().unwrap(),
        ];
        let ns = create(&path, "eth0", &addrs).unwrap();
        let out = ns
            .run(|| {
                std::process::Command::new("/bin/busybox")
                    .args(["ip", "-o", "addr", "show", "eth0"])
                    .output()
                    .unwrap()
            })
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        netns::remove(&path).unwrap();
        netns::release_dir(&nsdir).unwrap();
        assert!(text.contains("inet 10.89.250.7/24"), "{text}");
        assert!(text.contains("inet6 fd00:89::7/64"), "{text}");
    }
}
