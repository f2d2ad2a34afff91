//! The few raw system calls the shim needs that have no safe wrapper in
//! nix: `pre_exec` hooks (new session, fd hygiene, crun's private mount
//! namespace, fd remapping for logging binaries), the pty window-size ioctl
//! and the eventfd used for cgroup v1 OOM notifications.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Runs the child in a new session and marks every inherited fd above 2
/// close-on-exec, so the daemonised shim keeps nothing of its parent's but
/// the stdio it was given.
pub(crate) fn detach_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setsid, close_range); it allocates
    // nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // CLOSE_RANGE_CLOEXEC: keep std's own exec-status pipe working.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// Lets `fd` survive the exec (after [`detach_on_exec`] marked every fd
/// close-on-exec): the listening socket `start` hands to `serve`.
pub(crate) fn keep_fd_on_exec(cmd: &mut Command, fd: RawFd) {
    // SAFETY: fcntl is async-signal-safe; the closure captures an integer.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes over an inherited listening unix socket (`serve --listen-fd`).
pub(crate) fn inherited_listener(fd: RawFd) -> io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: F_GETFD only checks that the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ownership is taken once, by the one caller, of an open fd
    // that `start` passed for this purpose and nothing else holds.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    // SAFETY: fcntl on an fd we own. Not ours to pass on to the runtimes
    // the shim spawns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A copy of the executable at `path` in a memfd sealed against every
/// change (what runc and crun check for before copying themselves).
pub(crate) fn sealed_copy(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::io::Write;
    let data = std::fs::read(path)?;
    // Run through /proc/self/fd with the fd closed on exec: fine for ELF,
    // not for a script (its interpreter would find the fd gone).
    if !data.starts_with(b"\x7fELF") {
        return Err(io::Error::other("not an ELF executable"));
    }
    // SAFETY: memfd_create with a static NUL-terminated name.
    let raw = unsafe {
        libc::memfd_create(
            c"berth-runtime".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    file.write_all(&data)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Makes the child run in a private mount namespace where
/// `/sys/fs/cgroup/unified` is not mounted.
///
/// crun refuses a "hybrid" cgroup layout (cgroup v1 controllers plus a
/// cgroup2 mount at `/sys/fs/cgroup/unified`) with "cgroups in hybrid mode
/// not supported". runc is fine with it. For crun invocations only, the
/// child unshares its mount namespace, makes `/` recursively slave (host
/// mounts still propagate in, nothing it does propagates out) and lazily
/// detaches `/sys/fs/cgroup/unified`; crun then sees a pure v1 layout. The
/// container's rootfs is mounted by the shim in the host namespace before
/// crun starts, so it is visible in the copy. A missing unified mount
/// (`EINVAL`/`ENOENT`) is not an error.
pub(crate) fn private_cgroup_view_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe system calls (unshare, mount, umount2) with static
    // NUL-terminated strings; no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) < 0 {
                return Err(io::Error::last_os_error());
            }
            let root = c"/".as_ptr();
            let flags = libc::MS_REC | libc::MS_SLAVE;
            if libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let unified = c"/sys/fs/cgroup/unified".as_ptr();
            if libc::umount2(unified, libc::MNT_DETACH) < 0 {
                let err = io::Error::last_os_error();
                if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

/// Places `fds[i]` at fd `3 + i` in the child (containerd's logging-binary
/// contract: 3 = stdout, 4 = stderr, 5 = ready pipe). The parent's fds are
/// only borrowed; the caller keeps them alive until `spawn` returns.
pub(crate) fn map_fds_on_exec(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: between fork and exec the closure only calls fcntl/dup2 on
    // fds the parent keeps open across spawn; the Vec was allocated before
    // fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            // First move everything above the target range so that a
            // source equal to a target number is not clobbered.
            let base = 3 + fds.len() as RawFd + 16;
            let mut high = [0 as RawFd; 8];
            for (i, fd) in fds.iter().enumerate().take(high.len()) {
                let h = libc::fcntl(*fd, libc::F_DUPFD, base);
                if h < 0 {
                    return Err(io::Error::last_os_error());
                }
                high[i] = h;
            }
            for (i, h) in high.iter().enumerate().take(fds.len().min(8)) {
                if libc::dup2(*h, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(*h);
            }
            Ok(())
        });
    }
}

/// Sets a pty's window size.
pub(crate) fn set_winsize(fd: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` through the pointer, which points
    // at a live stack value for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `sysconf(_SC_CLK_TCK)`: the unit of cpuacct.stat.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Receives one fd sent with SCM_RIGHTS over a unix stream socket (runc's
/// `--console-socket` protocol). `Ok(None)`: the peer sent no fd.
pub(crate) fn recv_fd(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut received = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in our table for
                // this message; nothing else refers to it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    Ok(received)
}

/// Registers a `File` (which owns its fd for its whole life) with the
/// tokio reactor.
pub(crate) fn async_fd(file: std::fs::File) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    // SAFETY: a `File` owns its descriptor: it stays open and refers to the
    // same description until the File (moved into the AsyncFd) is dropped,
    // and `as_raw_fd` always returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(io::Error::from)
}

/// Hands the heap pages freed since start-up back to the kernel. A shim
/// lives as long as its container; what Create and Start parsed and built
/// (the spec, the runtime's output) is garbage afterwards, and glibc keeps
/// freed pages below the top of the heap dirty until asked.
pub(crate) fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
