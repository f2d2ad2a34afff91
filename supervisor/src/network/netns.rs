//! Named network namespaces that outlive every process, berthd included.
//!
//! A namespace is kept alive by a bind mount of its nsfs inode onto a file
//! `DIR/NAME` (berthd uses `STATE/netns/NAME`), as `ip netns add` does. It
//! is made on a dedicated, short-lived std thread: the thread unshares its
//! network namespace, brings loopback up in it, bind-mounts
//! `/proc/thread-self/ns/net` onto the file and exits, so no thread of any
//! pool is ever left in a foreign namespace.
//!
//! `DIR` is bind-mounted onto itself and made a private mount the first
//! time, so the namespace mounts under it do not propagate into (or from)
//! the host's shared mount tree: a copy held by some other mount
//! namespace would keep a removed namespace alive.
//!
//! Crash safety: [`create`] either returns a mounted namespace or leaves
//! nothing (it unmounts and unlinks what it made before returning an
//! error). A crash in the middle can leave a plain file or a mounted file;
//! [`create`] of the same name reuses a plain leftover file, and
//! [`remove`] handles both (unmounting as often as needed, then unlinking)
//! and succeeds when nothing is there, so it can simply be retried.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use super::error::Error;
use super::sys;
use super::Result;

/// Serialises making a netns dir a private mount, so two first creates do
/// not stack two bind mounts.
static DIR_SETUP: Mutex<()> = Mutex::new(());

/// A mounted network namespace, known by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// The namespace at `path`, checked to be a mounted network namespace.
    pub fn open(path: impl Into<PathBuf>) -> Result<NetNs> {
        let path = path.into();
        open_ns_file(&path)?;
        Ok(NetNs { path })
    }

    /// The bind-mounted file, what CNI_NETNS and OCI specs name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh std thread that has joined this namespace, and
    /// returns its value. Sockets `f` creates belong to the namespace (so a
    /// `TcpStream` connected inside stays usable from anywhere), and so do
    /// processes it spawns. Blocking: call it from `spawn_blocking` in
    /// async code, or use [`NetNs::run_async`].
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = open_ns_file(&self.path)?;
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys(format!("setns {}", self.path.display()), e))?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// [`NetNs::run`] from async code, on tokio's blocking pool.
    pub async fn run_async<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.clone();
        tokio::task::spawn_blocking(move || ns.run(f)).await?
    }
}

/// Whether `name` can be a netns file name under the dir.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains(['/', '\0'])
    {
        return Err(Error::InvalidArgument(format!(
            "network namespace name {name:?}: must be a non-empty file name"
        )));
    }
    Ok(())
}

/// Creates the namespace `DIR/NAME` with loopback up. Blocking.
///
/// Fails with [`Error::NetnsExists`] when a namespace is already mounted
/// there; a plain file left by a crash is reused.
pub fn create(dir: &Path, name: &str) -> Result<NetNs> {
    validate_name(name)?;
    fs::create_dir_all(dir).map_err(|e| Error::io("create netns dir", dir, e))?;
    ensure_private_dir(dir)?;
    let path = dir.join(name);
    match open_ns_file(&path) {
        Ok(_) => return Err(Error::NetnsExists(path)),
        Err(Error::NetnsNotFound(_)) => {}
        Err(e) => return Err(e),
    }
    // A plain file here is a leftover of a create cut short: start over.
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove stale netns file", &path, e)),
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::NetnsExists(path));
        }
        Err(e) => return Err(Error::io("create netns file", &path, e)),
    }
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys("unshare(CLONE_NEWNET)", e))?;
        sys::set_link_up("lo", true).map_err(|e| Error::sys("set lo up in new netns", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind-mount netns onto {}", target.display()), e))
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Task("netns create thread panicked".into())));
    if let Err(e) = made {
        let _ = remove(&path);
        return Err(e);
    }
    tracing::debug!(netns = %path.display(), "network namespace created");
    Ok(NetNs { path })
}

/// Unmounts and deletes the namespace file at `path`. Blocking.
/// Idempotent: a missing file, or a file that is no longer (or never was)
/// mounted, is fine. The namespace itself goes away once no process is
/// left in it.
pub fn remove(path: &Path) -> Result<()> {
    // A crash between two creates can stack mounts: unmount until none is left.
    for _ in 0..16 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(Error::sys(format!("unmount {}", path.display()), e)),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove netns file", path, e)),
    }
    tracing::debug!(netns = %path.display(), "network namespace removed");
    Ok(())
}

/// Creates `dir` and makes it a private mount of its own, as the netns
/// dir is, for other namespace files (a pod's UTS and IPC). Idempotent.
/// Blocking.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create namespace dir", dir, e))?;
    ensure_private_dir(dir)
}

/// Undoes the private self bind mount of a netns dir (for tests and for
/// tearing a state dir down); namespaces still mounted below it are
/// detached with it. Idempotent. Blocking.
pub fn release_dir(dir: &Path) -> Result<()> {
    if !is_mount_point(dir)? {
        return Ok(());
    }
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(format!("unmount {}", dir.display()), e)),
    }
}

/// Opens `path` and checks that it is a mounted network namespace.
fn open_ns_file(path: &Path) -> Result<File> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NetnsNotFound(path.to_path_buf()))
        }
        Err(e) => return Err(Error::io("open netns", path, e)),
    };
    let fs = fstatfs(&file).map_err(|e| Error::sys(format!("statfs {}", path.display()), e))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(Error::NetnsNotFound(path.to_path_buf()));
    }
    Ok(file)
}

/// Makes `dir` a mount point of its own with private propagation.
fn ensure_private_dir(dir: &Path) -> Result<()> {
    let _guard = DIR_SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if !is_mount_point(dir)? {
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind-mount {} onto itself", dir.display()), e))?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("make {} a private mount", dir.display()), e))
}

/// Whether `dir` is the mount point of some entry of /proc/self/mountinfo.
fn is_mount_point(dir: &Path) -> Result<bool> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("resolve", dir, e)),
    };
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&unescape_mountinfo(point)) == dir))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names() {
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        validate_name("cni-0123abcd").unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/run/a\040b"), "/run/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn open_refuses_what_is_not_a_netns() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        assert!(matches!(NetNs::open(&plain), Err(Error::NetnsNotFound(_))));
        assert!(matches!(
            NetNs::open(dir.path().join("missing")),
            Err(Error::NetnsNotFound(_))
        ));
        // remove of a plain leftover and of nothing at all both succeed
        remove(&plain).unwrap();
        assert!(!plain.exists());
        remove(&plain).unwrap();
    }
}
