//! A container's volumes: at create, each `volume` mount (and each VOLUME
//! the image declares that no mount covers) gets its volume, made when
//! missing (an anonymous one when it has no name) with the image's content
//! at that path copied into a new one (Docker's copy-up); the spec then
//! bind-mounts the volume's directory. At removal the container stops
//! using them; its anonymous volumes go too when asked (`rm -v`, `--rm`).

use std::os::fd::AsFd;

use berth_api::oci::ExecConfig;
use berth_snapshotter::Mount;

use super::error::blocking;
use super::model::{ContainerConfig, MountSpec};
use super::rootfs::{self, Mounted, Root};
use super::{Engine, Error, Result};

/// The user key of a container in a volume's record.
pub(super) fn user(ns: &str, id: &str) -> String {
    format!("{ns}/{id}")
}

impl Engine {
    /// Gives container `id` its volumes (see the module doc) and returns
    /// the mounts its spec gets: `c.mounts` with every volume as a bind of
    /// its directory. Anonymous volumes are named in `c.mounts`, and the
    /// image's VOLUMEs added to it, so the record shows them. On error the
    /// caller releases what was taken ([`Engine::release_volumes`]).
    pub(super) async fn attach_volumes(
        &self,
        ns: &str,
        id: &str,
        c: &mut ContainerConfig,
        image: &ExecConfig,
        rootfs: &[Mount],
    ) -> Result<Vec<MountSpec>> {
        for m in &c.mounts {
            if !m.target.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "mount target {:?}: must be an absolute path in the container",
                    m.target
                )));
            }
            rootfs::clean(&m.target)?;
            if m.kind == "bind" && !m.source.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "bind mount source {:?}: a host path must be absolute (a name without '/' is a volume)",
                    m.source
                )));
            }
        }
        for path in image.volumes.iter().flat_map(|v| v.keys()) {
            let covered = c
                .mounts
                .iter()
                .any(|m| m.target.trim_end_matches('/') == path.trim_end_matches('/'));
            if !covered && path.starts_with('/') && rootfs::clean(path).is_ok() {
                c.mounts.push(MountSpec {
                    kind: "volume".into(),
                    source: String::new(),
                    target: path.clone(),
                    readonly: false,
                    options: Vec::new(),
                });
            }
        }
        let who = user(ns, id);
        let mut spec = Vec::new();
        let mut copy_up = Vec::new();
        for m in c.mounts.iter_mut() {
            if m.kind != "volume" {
                spec.push(m.clone());
                continue;
            }
            let got = self.deps().volumes.acquire(&m.source, &who).await?;
            m.source = got.volume.name.clone();
            let nocopy = m.options.iter().any(|o| o == "nocopy");
            if got.fresh && !nocopy {
                copy_up.push((m.target.clone(), got.path.clone()));
            }
            let mut options = vec!["rprivate".to_string()];
            options.extend(m.options.iter().filter(|o| *o != "nocopy").cloned());
            spec.push(MountSpec {
                kind: "bind".into(),
                source: got.path.display().to_string(),
                target: m.target.clone(),
                readonly: m.readonly,
                options,
            });
        }
        if !copy_up.is_empty() {
            let mounts = rootfs.to_vec();
            let scratch = self.cfg().state.join("engine").join("mnt");
            blocking(move || {
                let mounted = Mounted::new(&mounts, &scratch)?;
                let root = Root::open(mounted.path()).map_err(Error::io("open", mounted.path()))?;
                for (target, dst) in copy_up {
                    let comps = rootfs::clean(&target)?;
                    let src = match root.dir(&comps) {
                        Ok(fd) => fd,
                        Err(e) if rootfs::is_missing(&e) => continue,
                        Err(e) => {
                            return Err(
                                Error::io("open image path", std::path::Path::new(&target))(e),
                            )
                        }
                    };
                    rootfs::copy_tree(src.as_fd(), &dst)
                        .map_err(Error::io("copy-up into", &dst))?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(spec)
    }

    /// Container `id` of `ns` stops using its volumes; with `anonymous`,
    /// its anonymous volumes nobody else uses are removed. Failures are
    /// logged: the container is gone either way.
    pub(super) async fn release_volumes(&self, ns: &str, id: &str, anonymous: bool) {
        match self.deps().volumes.release(&user(ns, id), anonymous).await {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(namespace = ns, id, volumes = ?gone, "anonymous volumes removed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(namespace = ns, id, error = %e, "releasing volumes"),
        }
    }
}

impl Engine {
    /// Removes container `what` like [`Engine::remove`]; with `volumes`,
    /// its anonymous volumes go too.
    pub async fn remove_with_volumes(
        &self,
        ns: &str,
        what: &str,
        force: bool,
        volumes: bool,
    ) -> Result<String> {
        let slot = self.find(ns, what)?;
        slot.remove_volumes
            .store(volumes, std::sync::atomic::Ordering::SeqCst);
        let r = self.remove(ns, what, force).await;
        if r.is_err() {
            slot.remove_volumes
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    /// At start-up: volumes forget users that are no container any more.
    pub(super) async fn forget_volume_users(&self, slots: &[std::sync::Arc<super::Slot>]) {
        let live = slots.iter().map(|s| user(&s.ns, &s.id)).collect();
        if let Err(e) = self.deps().volumes.retain_users(&live).await {
            tracing::warn!(error = %e, "volumes: forgetting removed containers");
        }
    }
}
