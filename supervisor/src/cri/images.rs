//! The CRI ImageService over berthd's images and registry modules: pulls
//! are server-side (parallel layers, unpacked into the default
//! snapshotter) with the CRI's credentials; an image's id is its config
//! digest, its repo tags and digests are the records naming it; removal
//! by id removes every record.

use berth_api::oci::Platform;
use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::{fail, now_ns};
use super::image_resolve::{normalize, Resolved};
use super::{Cri, NAMESPACE};
use crate::registry::{self, Credentials};

/// The credentials of a CRI AuthConfig: username/password, `auth`
/// (base64 of `user:password`), or a token.
fn credentials(a: Option<cri::AuthConfig>) -> Result<Credentials, Status> {
    let Some(a) = a else {
        return Ok(Credentials::default());
    };
    let (mut username, mut password) = (a.username, a.password);
    if username.is_empty() && !a.auth.is_empty() {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| Status::invalid_argument(format!("auth.auth: not base64: {e}")))?;
        let text =
            String::from_utf8(raw).map_err(|_| Status::invalid_argument("auth.auth: not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth.auth: not user:password"))?;
        (username, password) = (u.to_string(), p.to_string());
    }
    let token = a.registry_token;
    if !a.identity_token.is_empty() && password.is_empty() {
        // An identity token is a refresh token for the token service.
        password = a.identity_token;
        if username.is_empty() {
            username = "<token>".into();
        }
    }
    Ok(Credentials {
        username,
        password,
        token,
    })
}

fn to_cri_image(r: &Resolved, pinned: bool) -> cri::Image {
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    for rec in &r.records {
        if rec.name.contains('@') {
            repo_digests.push(rec.name.clone());
        } else {
            repo_tags.push(rec.name.clone());
            let repo = super::image_resolve::repo_of(&rec.name);
            repo_digests.push(format!("{repo}@{}", rec.target.digest));
        }
    }
    repo_digests.sort();
    repo_digests.dedup();
    let user = r
        .config
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let user_part = user.split(':').next().unwrap_or("").to_string();
    let (uid, username) = match user_part.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) => (None, user_part),
    };
    cri::Image {
        id: r.id.clone(),
        repo_tags,
        repo_digests,
        size: r.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: r.id.clone(),
            ..Default::default()
        }),
        pinned,
    }
}

impl Cri {
    fn is_pinned(&self, r: &Resolved) -> bool {
        let sandbox = normalize(&self.config().sandbox_image);
        r.records.iter().any(|i| i.name == sandbox)
    }

    pub(super) async fn list_images(
        &self,
        req: cri::ListImagesRequest,
    ) -> Result<cri::ListImagesResponse, Status> {
        let want = req.filter.and_then(|f| f.image).map(|s| s.image);
        let all = self
            .inner
            .deps
            .images
            .list(NAMESPACE, &[])
            .map_err(|e| fail(e.kind(), e))?;
        let mut images: Vec<cri::Image> = Vec::new();
        for rec in all {
            let Ok(Some(r)) = self.resolve_image(&rec.name).await else {
                continue;
            };
            if images.iter().any(|i| i.id == r.id) {
                continue;
            }
            if let Some(w) = want.as_deref().filter(|w| !w.is_empty()) {
                match self.resolve_image(w).await {
                    Ok(Some(x)) if x.id == r.id => {}
                    _ => continue,
                }
            }
            let pinned = self.is_pinned(&r);
            images.push(to_cri_image(&r, pinned));
        }
        Ok(cri::ListImagesResponse { images })
    }

    pub(super) async fn image_status(
        &self,
        req: cri::ImageStatusRequest,
    ) -> Result<cri::ImageStatusResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(r) = self.resolve_image(&name).await? else {
            // The CRI answers a missing image with no image, not an error.
            return Ok(cri::ImageStatusResponse::default());
        };
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "chainID": r.chain_id,
                "manifest": r.manifest.to_string(),
                "imageSpec": r.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        let pinned = self.is_pinned(&r);
        Ok(cri::ImageStatusResponse {
            image: Some(to_cri_image(&r, pinned)),
            info,
        })
    }

    pub(super) async fn pull_image(
        &self,
        req: cri::PullImageRequest,
    ) -> Result<cri::PullImageResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(Status::invalid_argument("image.image: required"));
        }
        let reference = normalize(&name);
        let creds = credentials(req.auth)?;
        let (mut rx, _) = self.inner.deps.transfers.pull(
            NAMESPACE,
            registry::pull::Request {
                reference: reference.clone(),
                platform: Platform::host(),
                credentials: creds,
                plain_http: false,
                snapshotter: String::new(),
                unpack: true,
                labels: Default::default(),
            },
        );
        let progress = loop {
            if rx.borrow().is_terminal() {
                break rx.borrow().clone();
            }
            if rx.changed().await.is_err() {
                break rx.borrow().clone();
            }
        };
        if let Some(e) = progress.error {
            return Err(fail(e.kind(), format!("pulling {reference}: {e}")));
        }
        let r = self.resolve_image(&reference).await?.ok_or_else(|| {
            fail(
                ErrorKind::Internal,
                format!("{reference}: pulled but not found"),
            )
        })?;
        tracing::info!(reference, id = r.id, at = now_ns(), "cri image pulled");
        Ok(cri::PullImageResponse { image_ref: r.id })
    }

    pub(super) async fn remove_image(
        &self,
        req: cri::RemoveImageRequest,
    ) -> Result<cri::RemoveImageResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(r) = self.resolve_image(&name).await? else {
            return Ok(cri::RemoveImageResponse {});
        };
        // By tag: only that record, unless it is the last one; by id or
        // digest: every record of the image.
        let wanted = normalize(&name);
        let targets: Vec<_> = match r
            .records
            .iter()
            .find(|i| i.name == wanted && !i.name.contains('@'))
        {
            Some(one) if r.records.len() > 1 => vec![one.clone()],
            _ => r.records.clone(),
        };
        for rec in targets {
            match self
                .inner
                .deps
                .images
                .delete(NAMESPACE, &rec.name, false)
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e.kind(), e)),
            }
        }
        Ok(cri::RemoveImageResponse {})
    }

    pub(super) async fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse, Status> {
        let dir = self.inner.deps.root.clone();
        let (bytes, inodes) = tokio::task::spawn_blocking(move || du(&dir))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mountpoint = self.inner.deps.root.display().to_string();
        let usage = cri::FilesystemUsage {
            timestamp: now_ns(),
            fs_id: Some(cri::FilesystemIdentifier { mountpoint }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        })
    }
}

/// Bytes and inodes used below `dir` (not crossing into other mounts'
/// contents beyond what a walk sees; symlinks not followed).
fn du(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_forms() {
        let c = credentials(Some(cri::AuthConfig {
            auth: "dTpw".into(), // u:p
            ..Default::default()
        }))
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let c = credentials(Some(cri::AuthConfig {
            username: "a".into(),
            password: "b".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b"));
        let c = credentials(Some(cri::AuthConfig {
            registry_token: "t".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(c.token, "t");
        assert!(credentials(Some(cri::AuthConfig {
            auth: "!!".into(),
            ..Default::default()
        }))
        .is_err());
    }
}
