//! The few raw calls the network module needs that nix does not wrap: the
//! interface-flag ioctls (loopback up in a new netns, a bridge down before
//! it is deleted) and the bridge delete ioctl. Everything else (unshare,
//! setns, mounts) goes through nix's safe wrappers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `SIOCBRDELBR` from linux/sockios.h (libc does not export it for Linux).
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

/// The longest interface name the kernel accepts (IFNAMSIZ - 1).
pub(crate) const MAX_IFNAME: usize = libc::IFNAMSIZ - 1;

fn control_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IFNAME || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (a name array and a union of
    // integers, sockaddrs and a pointer) for which all-zero bytes are a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Sets or clears IFF_UP on the interface `name` in the calling thread's
/// network namespace.
pub(crate) fn set_link_up(name: &str, up: bool) -> io::Result<()> {
    let sock = control_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into
    // the ifreq we own, which lives across the call; the fd is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFFLAGS the union holds the flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let want = if up {
        flags | libc::IFF_UP as libc::c_short
    } else {
        flags & !(libc::IFF_UP as libc::c_short)
    };
    if want == flags {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = want;
    // SAFETY: SIOCSIFFLAGS reads the name and flags from the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let sock = control_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFINDEX reads the name from and writes the index into
    // the ifreq we own, which lives across the call; the fd is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFINDEX the union holds the index.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::other(format!("bad ifindex {index}")))
}

/// Deletes the bridge `name` in the host's network namespace (brought down
/// first, as the kernel requires). Returns false when no such interface
/// exists; refuses an interface that is not a bridge (sysfs says which).
pub(crate) fn delete_bridge(name: &str) -> io::Result<bool> {
    ifreq_for(name)?;
    let sys = std::path::Path::new("/sys/class/net").join(name);
    if !sys.exists() {
        return Ok(false);
    }
    if !sys.join("bridge").is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface {name:?} is not a bridge"),
        ));
    }
    match set_link_up(name, false) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(false),
        Err(e) => return Err(e),
    }
    let sock = control_socket()?;
    let req = ifreq_for(name)?;
    // SAFETY: SIOCBRDELBR reads a NUL-terminated name from the buffer we
    // pass; ifr_name is IFNAMSIZ long and zero-padded after at most
    // IFNAMSIZ-1 name bytes, and it outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCBRDELBR, req.ifr_name.as_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) || e.raw_os_error() == Some(libc::ENODEV) {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_refuses_bad_names() {
        assert!(ifreq_for("").is_err());
        assert!(ifreq_for("a-name-longer-than-15").is_err());
        assert!(ifreq_for("nul\0").is_err());
        assert!(ifreq_for("lo").is_ok());
    }

    #[test]
    fn loopback_has_an_index() {
        assert!(ifindex("lo").unwrap() > 0);
        assert!(ifindex("berth-nt-none").is_err());
    }

    #[test]
    fn unknown_bridge_is_not_an_error() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("!!! SKIP unknown_bridge_is_not_an_error: needs root");
            return;
        }
        assert!(!delete_bridge("berth-nt-none").unwrap());
        assert!(delete_bridge("lo").is_err(), "lo is no bridge");
    }
}
