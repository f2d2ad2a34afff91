//! Performing mount specs (`overlay`, `bind`) and undoing them.
//!
//! This module only needs nix/libc, so `berth-shim` can use it with
//! `default-features = false`.
//!
//! Overlay mounts whose option string would not fit in one page (the kernel's
//! limit on `mount(2)` data; a chain of ~100 layers is enough) are performed
//! with the new mount API instead: `fsopen("overlay")`, one
//! `fsconfig("lowerdir+", dir)` per layer (kernel >= 6.8), `fsmount`,
//! `move_mount`. No process-wide state (cwd) is touched, so this is safe in
//! multi-threaded processes.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::echo::Echo;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::sys;

/// One mount to perform, as containerd's `Mount` message describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "full", derive(serde::Serialize, serde::Deserialize))]
pub struct Mount {
    /// Filesystem type: `overlay` or `bind`.
    pub kind: String,
    /// Source: a directory for `bind`, usually `overlay` for overlays.
    pub source: String,
    /// Sub-path inside the mount root where this mount goes; empty = the root itself.
    pub target: String,
    /// Options: flags such as `ro`, `rbind`, `nosuid` and data such as `lowerdir=...`.
    pub options: Vec<String>,
}

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// mount kind we do not perform
    #[error("mount type {} is not supported (only overlay and bind)", Echo(.0))]
    UnsupportedKind(String),
    /// a mount spec field that cannot be used
    #[error("invalid mount spec: {0}")]
    Invalid(String),
    /// the kernel refused a mount
    #[error("mount {kind} at {target}: {source}")]
    Mount {
        /// mount kind
        kind: String,
        /// where
        target: PathBuf,
        /// why
        source: io::Error,
    },
    /// the kernel refused an unmount
    #[error("unmount {target}: {source}")]
    Unmount {
        /// where
        target: PathBuf,
        /// why
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T, E = MountError> = std::result::Result<T, E>;

/// Longest option string `mount(2)` accepts (one page, NUL included).
const MAX_MOUNT_DATA: usize = 4095;

struct Parsed {
    flags: MsFlags,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Parsed {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    Parsed { flags, data }
}

fn mount_err(kind: &str, target: &Path, e: impl Into<io::Error>) -> MountError {
    MountError::Mount {
        kind: kind.to_owned(),
        target: target.to_owned(),
        source: e.into(),
    }
}

/// Where mount `m` goes under `root`; refuses `..` in the sub-path.
fn destination(root: &Path, m: &Mount) -> Result<PathBuf> {
    let sub = m.target.trim_start_matches('/');
    if sub.is_empty() {
        return Ok(root.to_owned());
    }
    if Path::new(sub)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(MountError::Invalid(format!(
            "target {} must be a plain relative path",
            Echo(&m.target)
        )));
    }
    Ok(root.join(sub))
}

/// Performs every mount in `mounts` in order at `target` (each mount's own
/// `target` field is a sub-path under it). On failure, mounts already made
/// by this call are undone before the error is returned.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    let mut done: Vec<PathBuf> = Vec::new();
    for m in mounts {
        let dest = destination(target, m);
        let res = dest.and_then(|d| mount_one(m, &d).map(|()| d));
        match res {
            Ok(d) => done.push(d),
            Err(e) => {
                for d in done.iter().rev() {
                    if let Err(ue) = unmount(d) {
                        tracing::warn!(target = %d.display(), error = %ue, "rollback unmount failed");
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, dest: &Path) -> Result<()> {
    let parsed = parse_options(&m.options);
    match m.kind.as_str() {
        "bind" | "rbind" => mount_bind(m, dest, parsed),
        "overlay" => mount_overlay(dest, parsed),
        other => Err(MountError::UnsupportedKind(other.to_owned())),
    }
}

fn mount_bind(m: &Mount, dest: &Path, parsed: Parsed) -> Result<()> {
    let mut bind = MsFlags::MS_BIND;
    if m.kind == "rbind" || parsed.flags.contains(MsFlags::MS_REC) {
        bind |= MsFlags::MS_REC;
    }
    nix::mount::mount(
        Some(Path::new(&m.source)),
        dest,
        None::<&str>,
        bind,
        None::<&str>,
    )
    .map_err(|e| mount_err("bind", dest, e))?;
    let extra = parsed.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if !extra.is_empty() {
        let r = nix::mount::mount(
            None::<&str>,
            dest,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
            None::<&str>,
        );
        if let Err(e) = r {
            let _ = nix::mount::umount2(dest, MntFlags::MNT_DETACH);
            return Err(mount_err("bind", dest, e));
        }
    }
    Ok(())
}

fn mount_overlay(dest: &Path, parsed: Parsed) -> Result<()> {
    let data = parsed.data.join(",");
    if data.len() <= MAX_MOUNT_DATA {
        return nix::mount::mount(
            Some("overlay"),
            dest,
            Some("overlay"),
            parsed.flags,
            Some(data.as_str()),
        )
        .map_err(|e| mount_err("overlay", dest, e));
    }
    mount_overlay_fsconfig(dest, &parsed).map_err(|e| mount_err("overlay", dest, e))
}

fn cs(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount option"))
}

/// The new mount API path for option strings longer than a page.
fn mount_overlay_fsconfig(dest: &Path, parsed: &Parsed) -> io::Result<()> {
    let fs = sys::fsopen(c"overlay")?;
    let set_str = |k: &str, v: &str| -> io::Result<()> {
        sys::fsconfig(
            std::os::fd::AsFd::as_fd(&fs),
            libc::FSCONFIG_SET_STRING,
            Some(&cs(k)?),
            Some(&cs(v)?),
        )
    };
    set_str("source", "overlay")?;
    for opt in &parsed.data {
        match opt.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for dir in dirs.split(':').filter(|d| !d.is_empty()) {
                    set_str("lowerdir+", dir).map_err(|e| {
                        if e.raw_os_error() == Some(libc::EINVAL) {
                            io::Error::new(
                                e.kind(),
                                format!("lowerdir+ {dir}: {e} (kernel >= 6.8 needed for long lowerdir lists)"),
                            )
                        } else {
                            e
                        }
                    })?;
                }
            }
            Some((k, v)) => set_str(k, v)?,
            None => sys::fsconfig(
                std::os::fd::AsFd::as_fd(&fs),
                libc::FSCONFIG_SET_FLAG,
                Some(&cs(opt)?),
                None,
            )?,
        }
    }
    sys::fsconfig(
        std::os::fd::AsFd::as_fd(&fs),
        libc::FSCONFIG_CMD_CREATE,
        None,
        None,
    )?;
    let mut attrs: u64 = 0;
    let f = parsed.flags;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NOATIME, libc::MOUNT_ATTR_NOATIME),
        (MsFlags::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (MsFlags::MS_STRICTATIME, libc::MOUNT_ATTR_STRICTATIME),
    ] {
        if f.contains(ms) {
            attrs |= attr;
        }
    }
    let mnt = sys::fsmount(std::os::fd::AsFd::as_fd(&fs), attrs as libc::c_uint)?;
    sys::move_mount(std::os::fd::AsFd::as_fd(&mnt), dest.as_os_str())
}

/// Unmounts everything stacked at `target`. Idempotent: a path that is not
/// a mount point (or does not exist) is success. A busy mount is retried
/// briefly, then detached (`MNT_DETACH`).
pub fn unmount(target: &Path) -> Result<()> {
    let mut busy_tries = 0;
    loop {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if busy_tries < 10 => {
                busy_tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::EBUSY) => {
                nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| {
                    MountError::Unmount {
                        target: target.to_owned(),
                        source: e.into(),
                    }
                })?;
            }
            Err(e) => {
                return Err(MountError::Unmount {
                    target: target.to_owned(),
                    source: e.into(),
                })
            }
        }
    }
}

/// The directories a set of mounts layers, top first: the upperdir (if any)
/// then the lowerdirs of an overlay, or the source of a bind. None when the
/// set is not one overlay or one bind.
pub fn layer_dirs(mounts: &[Mount]) -> Option<(Option<PathBuf>, Vec<PathBuf>)> {
    match mounts {
        [] => Some((None, Vec::new())),
        [m] if m.kind == "bind" || m.kind == "rbind" => {
            let ro = m.options.iter().any(|o| o == "ro");
            let p = PathBuf::from(&m.source);
            if ro {
                Some((None, vec![p]))
            } else {
                Some((Some(p), Vec::new()))
            }
        }
        [m] if m.kind == "overlay" => {
            let mut upper = None;
            let mut lowers = Vec::new();
            for o in &m.options {
                if let Some(v) = o.strip_prefix("upperdir=") {
                    upper = Some(PathBuf::from(v));
                } else if let Some(v) = o.strip_prefix("lowerdir=") {
                    lowers.extend(v.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
                }
            }
            Some((upper, lowers))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A temp dir with a `mnt` subdir, unmounted and removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("berth-mount-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("mnt")).unwrap();
            Self(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = unmount(&self.0.join("mnt"));
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn root() -> bool {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPING: mount tests need root");
            return false;
        }
        true
    }

    #[test]
    fn read_only_bind_and_unmount() {
        if !root() {
            return;
        }
        let d = Dir::new("bind");
        fs::create_dir(d.0.join("src")).unwrap();
        fs::write(d.0.join("src/f"), b"hi").unwrap();
        let m = Mount {
            kind: "bind".into(),
            source: d.0.join("src").to_string_lossy().into(),
            target: String::new(),
            options: vec!["rbind".into(), "ro".into()],
        };
        let mnt = d.0.join("mnt");
        mount_all(&[m], &mnt).unwrap();
        assert_eq!(fs::read(mnt.join("f")).unwrap(), b"hi");
        assert!(fs::write(mnt.join("g"), b"x").is_err(), "read-only");
        unmount(&mnt).unwrap();
        assert!(!mnt.join("f").exists());
        unmount(&mnt).unwrap(); // idempotent
    }

    #[test]
    fn overlay_with_options_longer_than_a_page() {
        if !root() {
            return;
        }
        let d = Dir::new("overlay");
        let mut lowers = Vec::new();
        for i in 0..150 {
            let l = d.0.join(format!("lower-layer-with-a-long-name-{i:04}"));
            fs::create_dir(&l).unwrap();
            fs::write(l.join(format!("f{i}")), i.to_string()).unwrap();
            lowers.push(l.to_string_lossy().into_owned());
        }
        fs::create_dir(d.0.join("upper")).unwrap();
        fs::create_dir(d.0.join("work")).unwrap();
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("upperdir={}", d.0.join("upper").display()),
                format!("workdir={}", d.0.join("work").display()),
                format!("lowerdir={}", lowers.join(":")),
            ],
        };
        assert!(m.options.join(",").len() > MAX_MOUNT_DATA);
        let mnt = d.0.join("mnt");
        mount_all(&[m], &mnt).unwrap();
        for i in 0..150 {
            assert_eq!(
                fs::read_to_string(mnt.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        fs::write(mnt.join("new"), b"up").unwrap();
        unmount(&mnt).unwrap();
        assert_eq!(fs::read(d.0.join("upper/new")).unwrap(), b"up");
    }

    #[test]
    fn unsupported_kind_and_bad_target_are_refused() {
        let m = Mount {
            kind: "nfs".into(),
            ..Default::default()
        };
        assert!(matches!(
            mount_all(&[m], Path::new("/nonexistent")),
            Err(MountError::UnsupportedKind(_))
        ));
        let m = Mount {
            kind: "bind".into(),
            target: "../escape".into(),
            ..Default::default()
        };
        assert!(matches!(
            mount_all(&[m], Path::new("/nonexistent")),
            Err(MountError::Invalid(_))
        ));
    }
}
