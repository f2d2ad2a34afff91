//! Reading a few files out of an image's unpacked rootfs (for resolving a
//! user name through its /etc/passwd and /etc/group): a read-only view
//! snapshot, mounted on a private temp dir, read, unmounted and removed.
//! Needs root, as mounting does.

use std::collections::HashMap;
use std::path::Path;

use berth_api::services::snapshots::v1 as spb;
use berth_api::types::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Unmounts and removes the temp dir on drop.
struct Mounted<'a> {
    dir: &'a Path,
    mounted: bool,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(self.dir, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(self.dir);
    }
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let mut flags = MsFlags::MS_RDONLY;
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => {}
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other.to_string()),
        }
    }
    let fstype = if m.r#type == "bind" {
        None
    } else {
        Some(m.r#type.as_str())
    };
    let data = data.join(",");
    mount(
        Some(m.source.as_str()),
        target,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mount image rootfs at {}", target.display()),
            e.into(),
        )
    })
}

/// Reads `files` (paths relative to the rootfs) from the committed snapshot
/// `parent`; a missing file reads as empty.
pub async fn read_files(
    client: &Client,
    snapshotter: &str,
    parent: &str,
    files: &[&str],
) -> Result<Vec<String>> {
    let key = format!(
        "berthctl-view-{}-{}",
        std::process::id(),
        parent.replace(':', "-")
    );
    let mut snaps = client.snapshots();
    let mounts = snaps
        .view(spb::ViewSnapshotRequest {
            snapshotter: snapshotter.into(),
            key: key.clone(),
            parent: parent.into(),
            labels: HashMap::new(),
        })
        .await
        .with_context(|| format!("view snapshot {parent}"))?
        .into_inner()
        .mounts;
    let dir = std::env::temp_dir().join(&key);
    let result = (|| {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let mut guard = Mounted {
            dir: &dir,
            mounted: false,
        };
        let [m] = mounts.as_slice() else {
            return Err(Error::Protocol(format!(
                "view of {parent}: expected one mount, got {}",
                mounts.len()
            )));
        };
        mount_one(m, &dir)?;
        guard.mounted = true;
        Ok(files
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
            .collect())
    })();
    let _ = snaps
        .remove(spb::RemoveSnapshotRequest {
            snapshotter: snapshotter.into(),
            key,
        })
        .await;
    result
}
