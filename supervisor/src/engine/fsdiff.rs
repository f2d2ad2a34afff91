//! `diff`: the paths a container added (A), changed (C) or deleted (D)
//! against its image, as Docker lists them. The changes come from the
//! same layer diff commit writes (uncompressed, read as it is produced,
//! never stored); a path is C when the image has it, A when not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_snapshotter::layer::Compression;
use berth_snapshotter::mount::layer_dirs;
use berth_snapshotter::Mount;

use super::error::blocking;
use super::{names, Engine, Error, Result};
use crate::snapshots::NewSnapshot;

/// One change of a container's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsChange {
    /// `A`, `C` or `D`.
    pub kind: char,
    /// Its absolute path in the container.
    pub path: String,
}

impl Engine {
    /// The changes of container `what` against its image, in path order.
    pub async fn fs_diff(&self, ns: &str, what: &str) -> Result<Vec<FsChange>> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        let deps = self.deps();
        let info = deps.snapshots.stat(ns, &rec.snapshotter, &rec.id).await?;
        let parent = info.parent.unwrap_or_default();
        let upper = deps.snapshots.mounts(ns, &rec.snapshotter, &rec.id).await?;
        let view = format!("{}{}", super::COMMIT_LEASE_PREFIX, names::new_id());
        let mut labels = crate::store::labels::Labels::new();
        labels.insert(
            berth_api::lease::EXPIRE_LABEL.to_string(),
            berth_api::lease::format_rfc3339(
                std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            ),
        );
        deps.leases.create(ns, &view, labels).await?;
        let lower = if parent.is_empty() {
            Vec::new()
        } else {
            deps.snapshots
                .view(
                    ns,
                    Some(&view),
                    NewSnapshot {
                        snapshotter: rec.snapshotter.clone(),
                        key: view.clone(),
                        parent,
                        labels: HashMap::new(),
                    },
                )
                .await?
        };
        let r = blocking(move || list(&lower, &upper)).await;
        // The view goes with its lease.
        if let Err(e) = deps.leases.delete(ns, &view, false).await {
            tracing::warn!(namespace = ns, lease = %view, error = %e, "deleting the diff's lease");
        }
        r
    }
}

/// Lists the diff of `upper` over `lower` (blocking).
fn list(lower: &[Mount], upper: &[Mount]) -> Result<Vec<FsChange>> {
    let lowers: Vec<PathBuf> = layer_dirs(lower)
        .map(|(u, l)| u.into_iter().chain(l).collect())
        .unwrap_or_default();
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    let (lower, upper) = (lower.to_vec(), upper.to_vec());
    let writer = std::thread::spawn(move || {
        let w = std::fs::File::from(w);
        berth_snapshotter::diff_layer(&lower, &upper, Compression::None, w)
    });
    let mut out = Vec::new();
    let read = (|| -> std::io::Result<()> {
        let mut ar = tar::Archive::new(std::fs::File::from(r));
        for e in ar.entries()? {
            let e = e?;
            let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let p = Path::new(raw.trim_start_matches("./").trim_end_matches('/'));
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = p.parent().unwrap_or(Path::new(""));
            if name == ".wh..wh..opq" {
                continue;
            }
            if let Some(gone) = name.strip_prefix(".wh.") {
                out.push(FsChange {
                    kind: 'D',
                    path: format!("/{}", parent.join(gone).display()),
                });
                continue;
            }
            let kind = if in_lowers(&lowers, p) { 'C' } else { 'A' };
            out.push(FsChange {
                kind,
                path: format!("/{}", p.display()),
            });
        }
        // Drain what is left so the writer finishes.
        let _ = std::io::copy(&mut ar.into_inner(), &mut std::io::sink());
        Ok(())
    })();
    let written = writer
        .join()
        .map_err(|_| Error::Internal("diff thread panicked".into()))?;
    written.map_err(|e| Error::Internal(format!("diff: {e}")))?;
    read.map_err(|e| Error::Internal(format!("reading the diff: {e}")))?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether the image's layers (top first) hold `p`: the topmost layer
/// naming it decides (an overlay whiteout there means it is gone).
fn in_lowers(lowers: &[PathBuf], p: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for dir in lowers {
        if let Ok(m) = std::fs::symlink_metadata(dir.join(p)) {
            let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
            return !whiteout;
        }
    }
    false
}
