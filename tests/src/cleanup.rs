//! Cleaning up after a test, also when it failed: mounts under its dir,
//! the shims its daemon started, its containers' processes and cgroups.
//! Only what a test's own daemon started is touched (other daemons, of
//! other tests and other users of the machine, run side by side).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Unmounts everything mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|t| t.replace("\\040", " "))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Kills shims recorded under a state dir (`shim.pid` files), and only those.
pub fn kill_shims_under(state: &Path) {
    let mut stack = vec![state.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "shim.pid") {
                if let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// Kills the processes of every container whose bundle (`config.json` with
/// `linux.cgroupsPath`) is under a state dir, and removes its cgroups
/// (cgroupfs, every v1 controller and the v2 mount): a failed test must not
/// leave its containers running after the shims are gone. Only processes
/// descending from this state dir's shims are touched (cgroup paths such as
/// `/default/t1` may be shared with other daemons on the machine).
pub fn kill_containers_under(state: &Path) {
    let mut stack = vec![state.to_path_buf()];
    let mut cgroups = Vec::new();
    let mut shims = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                if p.file_name().is_some_and(|n| n != "rootfs") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n == "shim.pid") {
                if let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    shims.push(pid);
                }
            } else if p.file_name().is_some_and(|n| n == "config.json") {
                let cg = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_owned));
                // Only plain cgroupfs paths below the root: two levels
                // (`/<ns>/<id>`), or one a test made its own (`/berth-...`).
                if let Some(cg) = cg.filter(|c| {
                    let rel = c.trim_matches('/');
                    c.starts_with('/')
                        && !c.contains("..")
                        && (rel.contains('/') || rel.starts_with("berth-"))
                }) {
                    cgroups.push(cg);
                }
            }
        }
    }
    if cgroups.is_empty() {
        return;
    }
    let controllers: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for cg in cgroups {
        let dirs: Vec<PathBuf> = controllers
            .iter()
            .map(|c| c.join(cg.trim_start_matches('/')))
            .filter(|d| d.is_dir())
            .collect();
        for d in &dirs {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = false;
            for d in &dirs {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .filter(|p| descends_from(*p, &shims))
                {
                    left = true;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if !left || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// True when `pid` is one of `ancestors` or a descendant of one.
fn descends_from(mut pid: i32, ancestors: &[i32]) -> bool {
    for _ in 0..64 {
        if ancestors.contains(&pid) {
            return true;
        }
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse::<i32>()
                    .ok()
            })
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        pid = ppid;
    }
    false
}
