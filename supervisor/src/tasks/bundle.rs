//! Bundles: `<state>/<namespace>/<id>/` holding `config.json`, the
//! `rootfs` mount point, berthd's own `runtime.json`, and what berth-shim
//! writes (`shim.pid`, `address`, `shim.log`, its socket).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::Error;

/// What berthd records about a task in its bundle, so it can clean up
/// after a dead shim even across its own restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct RuntimeInfo {
    /// The OCI runtime binary the shim drives.
    pub runtime_binary: String,
    /// The runtime's `--root`, when the options named one.
    #[serde(default)]
    pub runtime_root: Option<String>,
}

/// The bundle directory of a task.
pub(super) fn path(state: &Path, ns: &str, id: &str) -> PathBuf {
    state.join(ns).join(id)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Writes a fresh bundle: `config.json` (durably), `runtime.json` and an
/// empty `rootfs/`. Fails with AlreadyExists if the directory is there.
pub(super) fn create(dir: &Path, spec: &[u8], info: &RuntimeInfo) -> Result<(), Error> {
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .map_err(io("creating", parent))?;
    }
    match fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(format!(
                "bundle {} already exists",
                dir.display()
            )))
        }
        Err(e) => return Err(io("creating bundle", dir)(e)),
    }
    let res = (|| {
        // No fsync: the state dir (and every task in it) does not outlive
        // a reboot, and a berthd crash leaves the page cache intact.
        fs::write(dir.join("config.json"), spec)
            .map_err(io("writing", &dir.join("config.json")))?;
        let json = serde_json::to_vec(info).map_err(|e| Error::Internal(e.to_string()))?;
        fs::write(dir.join("runtime.json"), json)
            .map_err(io("writing", &dir.join("runtime.json")))?;
        let rootfs = dir.join("rootfs");
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&rootfs)
            .map_err(io("creating", &rootfs))
    })();
    if res.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    res
}

/// The runtime info of a bundle (defaults when unreadable).
pub(super) fn runtime_info(dir: &Path, default_binary: &str) -> RuntimeInfo {
    fs::read(dir.join("runtime.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| RuntimeInfo {
            runtime_binary: default_binary.to_string(),
            runtime_root: None,
        })
}

/// Removes a bundle whose shim is gone: forces the runtime to delete the
/// container, unmounts `rootfs` (detached, so a busy mount cannot wedge
/// us), then removes the directory. Best effort; each failure is logged.
pub(super) async fn cleanup(dir: &Path, id: &str, info: &RuntimeInfo) {
    let mut cmd = tokio::process::Command::new(&info.runtime_binary);
    if let Some(root) = &info.runtime_root {
        cmd.arg("--root").arg(root);
    }
    cmd.args(["delete", "--force", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    match cmd.output().await {
        Ok(out) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            // "does not exist" just means there was nothing to delete.
            if !err.contains("does not exist") && !err.contains("not exist") {
                tracing::warn!(id, runtime = %info.runtime_binary, stderr = %err.trim(), "runtime delete --force failed");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(id, runtime = %info.runtime_binary, error = %e, "running runtime delete --force")
        }
    }
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || remove(&dir)).await;
}

/// Unmounts `rootfs` (and anything below it) and removes the bundle.
pub(super) fn remove(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for target in mounts_under(&rootfs) {
        if let Err(e) = nix::mount::umount2(target.as_path(), nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %target.display(), error = %e, "unmounting rootfs");
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "removing bundle");
        }
    }
    if let Some(ns_dir) = dir.parent() {
        // Only succeeds once the namespace directory is empty.
        let _ = fs::remove_dir(ns_dir);
    }
}

/// Where deleted bundles wait for their shim to exit before removal.
pub(super) fn trash_dir(state: &Path) -> PathBuf {
    state.join(".trash")
}

/// Moves a deleted task's bundle under [`trash_dir`] (a unique name) so its
/// id can be reused while its shim is still exiting, and removes the
/// namespace directory if that left it empty. Returns where the bundle is
/// now (its old path if the move failed).
pub(super) fn move_to_trash(state: &Path, dir: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let trash = trash_dir(state);
    let name = format!(
        "{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    let to = trash.join(name);
    let moved = fs::create_dir_all(&trash).and_then(|()| fs::rename(dir, &to));
    match moved {
        Ok(()) => {
            if let Some(ns_dir) = dir.parent() {
                // Only succeeds once the namespace directory is empty.
                let _ = fs::remove_dir(ns_dir);
            }
            to
        }
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "moving a deleted bundle aside");
            dir.to_path_buf()
        }
    }
}

/// Removes what a previous run left in [`trash_dir`] (its shims are gone
/// or going: their tasks were deleted).
pub(super) fn empty_trash(state: &Path) {
    let Ok(entries) = fs::read_dir(trash_dir(state)) else {
        return;
    };
    for e in entries.flatten() {
        remove(&e.path());
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_existing_and_remove_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let b = path(dir.path(), "ns", "c1");
        let info = RuntimeInfo {
            runtime_binary: "runc".into(),
            runtime_root: None,
        };
        create(&b, b"{}", &info).unwrap();
        assert!(b.join("rootfs").is_dir());
        assert_eq!(fs::read(b.join("config.json")).unwrap(), b"{}");
        assert_eq!(runtime_info(&b, "x"), info);
        assert!(matches!(
            create(&b, b"{}", &info),
            Err(Error::AlreadyExists(_))
        ));
        remove(&b);
        assert!(!b.exists());
        assert!(!dir.path().join("ns").exists());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
