//! Orphans found at start-up outside any bundle: runtime state under
//! `<state>/.runc/<ns>/<id>` whose bundle is gone, mounts in the tasks'
//! part of the state dir (namespace dirs, `.trash`) that no bundle owns,
//! and shim sockets under `<state>/.s` that no shim listens on. Each is cleaned up and logged with one line; none is
//! silently kept. Runs after the bundles were recovered, so every bundle
//! still present belongs to a live or stopped task.

use std::path::{Path, PathBuf};

/// Cleans the orphans under `state`; `default_runtime` deletes leftover
/// runtime state.
pub(super) async fn clean(state: &Path, default_runtime: &str, foreign: &[PathBuf]) {
    runtime_state(state, default_runtime).await;
    let state = state.to_path_buf();
    let foreign = foreign.to_vec();
    let _ = tokio::task::spawn_blocking(move || {
        mounts(&state, &foreign);
        sockets(&state);
    })
    .await;
}

fn dirs(p: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(p) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// `<state>/.runc/<ns>/<id>` without `<state>/<ns>/<id>`: `delete --force`
/// through the runtime (kills what is left, removes its cgroups), then the
/// directory if the runtime did not remove it.
async fn runtime_state(state: &Path, runtime: &str) {
    for (ns, ns_dir) in dirs(&state.join(".runc")) {
        for (id, dir) in dirs(&ns_dir) {
            if state.join(&ns).join(&id).exists() {
                continue;
            }
            tracing::warn!(namespace = %ns, id = %id, path = %dir.display(), "orphan runtime state without a bundle; deleting it");
            let out = tokio::process::Command::new(runtime)
                .arg("--root")
                .arg(&ns_dir)
                .args(["delete", "--force", &id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            if let Err(e) = out {
                tracing::warn!(runtime, error = %e, "running runtime delete --force");
            }
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "removing orphan runtime state");
                }
            }
        }
    }
}

/// Mounts at or below `state` that no existing bundle's `rootfs` holds,
/// outside the `foreign` dirs (other modules' mounts, such as network
/// namespaces, live there).
fn mounts(state: &Path, foreign: &[PathBuf]) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut orphans: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(super::bundle::unescape(m)))
        .filter(|p| p.starts_with(state) && p.as_path() != state)
        .filter(|p| tasks_own(state, p))
        .filter(|p| !foreign.iter().any(|f| p.starts_with(f)))
        .filter(|p| !owned_by_bundle(state, p))
        .collect();
    orphans.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    orphans.dedup();
    for m in orphans {
        tracing::warn!(path = %m.display(), "orphan mount without a bundle; unmounting it");
        if let Err(e) = nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %m.display(), error = %e, "unmounting orphan mount");
        }
    }
}

/// Whether `m` is in a part of the state dir the tasks keep: a namespace's
/// bundles, or the trash of deleted ones. Other modules keep their own
/// dirs beside them under names no namespace can have (the CRI's `.cri`:
/// pods' namespaces bind-mounted there must outlive berthd's restarts).
fn tasks_own(state: &Path, m: &Path) -> bool {
    let Ok(rel) = m.strip_prefix(state) else {
        return false;
    };
    let Some(first) = rel.components().next() else {
        return false;
    };
    let first = first.as_os_str().to_string_lossy();
    first == ".trash" || berth_api::identifiers::validate("namespace", &first).is_ok()
}

/// Whether `m` lies under `<state>/<ns>/<id>/rootfs` of an existing bundle.
fn owned_by_bundle(state: &Path, m: &Path) -> bool {
    let Ok(rel) = m.strip_prefix(state) else {
        return false;
    };
    let parts: Vec<_> = rel.components().take(3).collect();
    if parts.len() < 3 || parts[2].as_os_str() != "rootfs" {
        return false;
    }
    state
        .join(parts[0])
        .join(parts[1])
        .join("config.json")
        .exists()
}

#[cfg(test)]
#[test]
fn the_tasks_sweep_only_their_own_dirs() {
    let s = Path::new("/state");
    assert!(tasks_own(s, Path::new("/state/default/c1/rootfs")));
    assert!(tasks_own(s, Path::new("/state/.trash/x/rootfs")));
    assert!(!tasks_own(s, Path::new("/state/.cri/netns/cri-1")));
    assert!(!tasks_own(s, Path::new("/state/.cri")));
    assert!(!tasks_own(s, Path::new("/elsewhere/default")));
}

/// Sockets under `<state>/.s` that refuse connections (their shim is gone).
fn sockets(state: &Path) {
    let Ok(rd) = std::fs::read_dir(state.join(".s")) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if std::os::unix::net::UnixStream::connect(&p).is_ok() {
            continue;
        }
        tracing::warn!(path = %p.display(), "orphan shim socket; removing it");
        let _ = std::fs::remove_file(&p);
    }
}
