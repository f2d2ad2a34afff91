//! A push: an image record (or a manifest/index digest) of the content
//! store, with everything it names, to a registry repository. Blobs the
//! repository has already are skipped; manifests go after their blobs,
//! the index (or the tagged manifest) last.

use std::sync::{Arc, Mutex};

use berth_api::oci::{Descriptor, Document, DocumentError, Platform, MAX_DOCUMENT_SIZE};
use berth_api::Digest;
use bytes::Bytes;
use futures::StreamExt;

use super::progress::{BlobKind, BlobState, Finished, Phase, Reporter};
use super::pull::Deps;
use super::remote::{self, ByteStream, Remote};
use super::{Credentials, Error, Result};
use crate::content::{corruption, ContentStore, Corrupt, VerifiedBlob};

/// One push, as a caller asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Local image name, or the digest of a manifest or index in the store.
    pub image: String,
    /// Remote reference (`host[:port]/repo[:tag]`); empty: the image name.
    pub reference: String,
    /// Push only this platform's manifest of an index (tagged as the
    /// reference). None: the whole index, every child must be present.
    pub platform: Option<Platform>,
    /// Credentials for this call only.
    pub credentials: Credentials,
    /// Plain HTTP for this registry.
    pub plain_http: bool,
}

/// Reads a document blob, verified against its digest.
async fn read_blob(cs: &ContentStore, ns: &str, digest: &Digest) -> Result<Bytes> {
    let (cs, ns, digest) = (cs.clone(), ns.to_string(), digest.clone());
    tokio::task::spawn_blocking(move || -> Result<Bytes> {
        let info = cs.info(&ns, &digest)?;
        if info.size > MAX_DOCUMENT_SIZE {
            return Err(DocumentError::TooLarge {
                size: info.size,
                limit: MAX_DOCUMENT_SIZE,
            }
            .into());
        }
        Ok(Bytes::from(cs.read_verified(
            &ns,
            &digest,
            MAX_DOCUMENT_SIZE,
        )?))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| Error::InvalidArgument(format!("digest {s:?}: {e}")))
}

/// Where a blob stream leaves the corruption it found, so the push fails
/// with it rather than with the HTTP client's view of a broken body.
type Found = Arc<Mutex<Option<Corrupt>>>;

/// Streams a blob through a verified read, reporting bytes read. A blob
/// whose bytes no longer match its digest or size ends the stream with an
/// error before the upload completes, and the corruption is left in `found`.
fn blob_stream(blob: VerifiedBlob, name: String, progress: Reporter, found: Found) -> ByteStream {
    futures::stream::unfold(Some((blob, 0u64)), move |state| {
        let (name, progress, found) = (name.clone(), progress.clone(), found.clone());
        async move {
            let (mut blob, sent) = state?;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read as _;
                let mut buf = vec![0u8; 1 << 20];
                let r = blob.read(&mut buf).map(|n| {
                    buf.truncate(n);
                    buf
                });
                (blob, r)
            })
            .await;
            let (blob, r) = match read {
                Ok(x) => x,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            match r {
                Ok(buf) if buf.is_empty() => None,
                Ok(buf) => {
                    let sent = sent + buf.len() as u64;
                    progress.update(&name, |b| b.offset = sent);
                    Some((Ok(Bytes::from(buf)), Some((blob, sent))))
                }
                Err(e) => {
                    if let Some(c) = corruption(&e) {
                        *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                    }
                    Some((Err(e), None))
                }
            }
        }
    })
    .boxed()
}

async fn push_blob(
    remote: &Remote,
    cs: &ContentStore,
    ns: &str,
    desc: &Descriptor,
    kind: BlobKind,
    progress: &Reporter,
) -> Result<()> {
    let digest = &desc.digest;
    let name = digest.to_string();
    cs.info(ns, digest)?;
    progress.add(&name, &desc.media_type, kind, desc.size as u64);
    if remote.has_blob(&name).await? {
        progress.state(&name, BlobState::Exists);
        return Ok(());
    }
    progress.state(&name, BlobState::Transferring);
    let blob = {
        let (cs, ns, digest) = (cs.clone(), ns.to_string(), digest.clone());
        tokio::task::spawn_blocking(move || cs.open_verified(&ns, &digest))
            .await
            .map_err(|e| Error::Task(e.to_string()))??
    };
    let found = Found::default();
    let stream = blob_stream(blob, name.clone(), progress.clone(), found.clone());
    let pushed = remote.push_blob(&name, desc.size as u64, stream).await;
    if let Some(c) = found.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(crate::content::Error::from(c).into());
    }
    pushed?;
    progress.state(&name, BlobState::Done);
    Ok(())
}

/// Pushes one image manifest and its blobs (the manifest by digest).
async fn push_manifest(
    remote: &Remote,
    cs: &ContentStore,
    ns: &str,
    desc: &Descriptor,
    progress: &Reporter,
) -> Result<Bytes> {
    let bytes = read_blob(cs, ns, &desc.digest).await?;
    let (mt, parsed) = Document::parse(&bytes, Some(&desc.media_type))?;
    let Document::Manifest(m) = parsed else {
        return Err(Error::BadManifest(format!(
            "{} is not an image manifest",
            desc.digest
        )));
    };
    push_blob(remote, cs, ns, &m.config, BlobKind::Config, progress).await?;
    for l in &m.layers {
        push_blob(remote, cs, ns, l, BlobKind::Layer, progress).await?;
    }
    let name = desc.digest.to_string();
    progress.add(&name, &mt, BlobKind::Manifest, bytes.len() as u64);
    remote
        .push_manifest(bytes.clone(), &mt, Some(&name))
        .await?;
    progress.state(&name, BlobState::Done);
    Ok(bytes)
}

/// Runs one push from `ns`, reporting to `progress`.
pub async fn push(deps: &Deps, ns: &str, req: &Request, progress: &Reporter) -> Result<Finished> {
    let cs = &deps.content;
    // The local target: an image record, else a digest in the store.
    let target = match crate::store::images::get(&deps.store, ns, &req.image) {
        Ok(img) => {
            let d = parse_digest(&img.target.digest)?;
            Descriptor::new(img.target.media_type, d, img.target.size)
        }
        Err(crate::store::Error::NotFound { .. }) if req.image.starts_with("sha256:") => {
            let d = parse_digest(&req.image)?;
            let bytes = read_blob(cs, ns, &d).await?;
            let (mt, _) = Document::parse(&bytes, None)?;
            Descriptor::new(mt, d, bytes.len() as i64)
        }
        Err(e) => return Err(e.into()),
    };
    let remote_ref = if req.reference.is_empty() {
        &req.image
    } else {
        &req.reference
    };
    let reference = remote::parse_reference(remote_ref)?;
    let remote = Remote::new(
        reference,
        &req.credentials,
        req.plain_http,
        &deps.options,
        remote::Purpose::Push,
    )?;
    let name = remote.reference().whole();
    tracing::info!(namespace = ns, image = %req.image, reference = %name, "push started");
    remote.login(oci_client::RegistryOperation::Push).await?;
    progress.phase(Phase::Transferring);

    let top_bytes = read_blob(cs, ns, &target.digest).await?;
    let (top_type, parsed) = Document::parse(&top_bytes, Some(&target.media_type))?;
    let (bytes, media_type, digest, platform, manifest_digest) = match parsed {
        Document::Manifest(_) => {
            push_manifest(&remote, cs, ns, &target, progress).await?;
            (
                top_bytes,
                top_type,
                target.digest.to_string(),
                String::new(),
                target.digest.to_string(),
            )
        }
        Document::Index(index) => match &req.platform {
            Some(p) => {
                let entry = index.select(p).ok_or_else(|| Error::NoPlatform {
                    reference: req.image.clone(),
                    platform: p.to_string(),
                })?;
                let b = push_manifest(&remote, cs, ns, entry, progress).await?;
                (
                    b,
                    entry.media_type.clone(),
                    entry.digest.to_string(),
                    p.to_string(),
                    entry.digest.to_string(),
                )
            }
            None => {
                for m in &index.manifests {
                    let present = cs.info(ns, &m.digest).is_ok();
                    if !present {
                        return Err(Error::NotFound(format!(
                            "manifest {} of index {} is not in the content store (push one platform with --platform)",
                            m.digest, target.digest
                        )));
                    }
                    push_manifest(&remote, cs, ns, m, progress).await?;
                }
                (
                    top_bytes,
                    top_type,
                    target.digest.to_string(),
                    String::new(),
                    String::new(),
                )
            }
        },
    };
    // The top manifest under the reference's tag (or its digest).
    progress.add(
        &digest,
        &media_type,
        super::pull::kind_of(&media_type),
        bytes.len() as u64,
    );
    let size = bytes.len() as u64;
    let tag = remote.reference().tag().map(str::to_string);
    match tag {
        Some(t) => remote.push_manifest(bytes, &media_type, Some(&t)).await?,
        None => {
            remote
                .push_manifest(bytes, &media_type, Some(&digest))
                .await?
        }
    }
    progress.state(&digest, BlobState::Done);
    tracing::info!(namespace = ns, reference = %name, digest = %digest, "push done");
    Ok(Finished {
        name,
        digest,
        media_type,
        size,
        manifest_digest,
        platform,
        chain_id: String::new(),
    })
}
