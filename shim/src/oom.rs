//! OOM notifications for cgroup v1: an eventfd registered on the memory
//! cgroup's `memory.oom_control` through `cgroup.event_control`. The kernel
//! also signals the eventfd when the cgroup is removed; the watcher then
//! finds the cgroup gone and stops. (On a unified v2 host the shim does not
//! watch for OOM; `memory.events` in the metrics still counts OOM kills.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use tokio::task::JoinHandle;

use crate::cgroup::Cgroup;
use crate::sys;

/// Starts watching; `on_oom` runs once per OOM notification. None when the
/// cgroup has no v1 memory controller or registration failed (logged).
pub fn watch(cgroup: &Cgroup, on_oom: impl Fn() + Send + 'static) -> Option<JoinHandle<()>> {
    let Cgroup::V1(dirs) = cgroup else {
        return None;
    };
    let dir = dirs.get("memory")?.clone();
    let efd = match register(&dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "oom notifications unavailable");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let Ok(efd) = sys::async_fd(efd) else { return };
        loop {
            let Ok(mut guard) = efd.readable().await else {
                return;
            };
            let mut buf = [0u8; 8];
            match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                Ok(Ok(8)) => {}
                Ok(_) => return,
                Err(_would_block) => continue,
            }
            if !dir.join("cgroup.event_control").exists() {
                return; // the cgroup was removed
            }
            on_oom();
        }
    }))
}

fn register(dir: &Path) -> std::io::Result<File> {
    let efd = File::from(sys::eventfd()?);
    let oc = File::open(dir.join("memory.oom_control"))?;
    let mut ctl = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    ctl.write_all(format!("{} {}", efd.as_raw_fd(), oc.as_raw_fd()).as_bytes())?;
    // `oc` may be closed now: the kernel holds its own reference.
    Ok(efd)
}
