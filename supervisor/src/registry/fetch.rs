//! One blob from a registry into the content store.
//!
//! The ingest ref is stable per blob (`layer-<digest>`, as containerd
//! names it), so a pull that was interrupted (network, kill -9 of berthd)
//! finds its partial ingest on the next try and asks the registry only for
//! the missing bytes (an HTTP range). Committing checks size and digest:
//! bytes that do not match are refused, the ingest is removed and nothing
//! is recorded.

use std::time::Duration;

use berth_api::oci::Descriptor;
use berth_api::Digest;
use futures::StreamExt;

use super::progress::{BlobState, Reporter};
use super::source::Source;
use super::{Error, Result};
use crate::content::{self, ContentStore};
use crate::store::labels::Labels;

/// Bytes gathered before one write into the ingest.
const WRITE_CHUNK: usize = 1 << 20;

/// How long to wait for another writer of the same blob to finish.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// How a blob came to be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The namespace already had it (or the store had its bytes).
    Existed,
    /// Downloaded, starting at this offset (non-zero: resumed).
    Fetched {
        /// bytes that were already in the ingest
        resumed_from: u64,
    },
}

/// The ingest ref used for `desc` (stable, so retries resume).
pub fn ingest_ref(prefix: &str, digest: &Digest) -> String {
    format!("{prefix}-{digest}")
}

/// Makes `desc` present in `ns`, downloading only what is missing, and
/// records it with `labels`. Durable once this returns.
pub async fn fetch(
    remote: &Source,
    cs: &ContentStore,
    ns: &str,
    desc: &Descriptor,
    ref_prefix: &str,
    labels: Labels,
    progress: &Reporter,
) -> Result<Outcome> {
    let digest = desc.digest.clone();
    let name = digest.to_string();
    let size = u64::try_from(desc.size).unwrap_or(0);
    if cs.lease_if_present(ns, &digest).await? {
        progress.state(&name, BlobState::Exists);
        return Ok(Outcome::Existed);
    }
    if cs.blob_path(&digest).exists() {
        // Bytes present for another namespace: record them here.
        cs.ingest_from_reader(ns, std::io::empty(), &digest, Some(size), labels)
            .await?;
        progress.state(&name, BlobState::Exists);
        return Ok(Outcome::Existed);
    }
    let reference = ingest_ref(ref_prefix, &desc.digest);
    let mut waited = Duration::ZERO;
    let mut writer = loop {
        match cs.writer(ns, &reference, size, Some(digest.clone())).await {
            Ok(w) => break w,
            Err(content::Error::AlreadyExists(_)) => {
                progress.state(&name, BlobState::Exists);
                return Ok(Outcome::Existed);
            }
            // Another pull (other credentials, or a client) writes it now:
            // wait for it to finish or give up its ref.
            Err(e @ content::Error::Locked { .. }) => {
                if waited > LOCK_WAIT {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                waited += Duration::from_millis(200);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut offset = writer.offset();
    if offset > size {
        writer.truncate().await?;
        offset = 0;
    }
    let resumed_from = offset;
    progress.update(&name, |b| {
        b.state = BlobState::Transferring;
        b.offset = offset;
        b.resumed_from = offset;
    });
    if offset < size {
        let (mut stream, start) = remote.blob(desc, offset).await?;
        if start != offset {
            writer.truncate().await?;
            offset = 0;
        }
        let mut buf = Vec::with_capacity(WRITE_CHUNK);
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            if let Some(chunk) = next {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        // A digest check failing in the stream: nothing to
                        // resume, the bytes are wrong.
                        let text = e.to_string();
                        let wrong = e.get_ref().is_some_and(|i| {
                            i.downcast_ref::<oci_client::errors::DigestError>()
                                .is_some()
                        });
                        if wrong {
                            drop(writer);
                            let _ = cs.abort(ns, &reference).await;
                            return Err(Error::Mismatch {
                                digest: name.clone(),
                                detail: text,
                            });
                        }
                        // Keep what we have for the next try.
                        if !buf.is_empty() {
                            writer.write(std::mem::take(&mut buf)).await?;
                        }
                        return Err(Error::Registry {
                            registry: remote.host().to_string(),
                            detail: format!("reading blob {}: {text}", desc.digest),
                        });
                    }
                };
                offset += chunk.len() as u64;
                if offset > size {
                    drop(writer);
                    let _ = cs.abort(ns, &reference).await;
                    return Err(Error::Mismatch {
                        digest: name.clone(),
                        detail: format!("registry sent more than the {size} bytes announced"),
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            if buf.len() >= WRITE_CHUNK || (done && !buf.is_empty()) {
                writer.write(std::mem::take(&mut buf)).await?;
                let at = offset;
                progress.update(&name, |b| b.offset = at);
            }
            if done {
                break;
            }
        }
    }
    match writer.commit(Some(size), Some(&digest), labels).await {
        Ok(_) | Err(content::Error::AlreadyExists(_)) => {}
        Err(content::Error::FailedPrecondition(detail)) => {
            let _ = cs.abort(ns, &reference).await;
            return Err(Error::Mismatch {
                digest: name.clone(),
                detail,
            });
        }
        Err(e) => return Err(e.into()),
    }
    progress.state(&name, BlobState::Done);
    tracing::debug!(namespace = ns, digest = %desc.digest, resumed_from, "blob fetched");
    Ok(Outcome::Fetched { resumed_from })
}

/// Stores a manifest or index already read into memory (its digest was
/// verified on the way), with `labels`.
pub async fn store_bytes(
    cs: &ContentStore,
    ns: &str,
    digest: &Digest,
    bytes: bytes::Bytes,
    labels: Labels,
) -> Result<()> {
    let size = bytes.len() as u64;
    let info = cs
        .ingest_from_reader(
            ns,
            std::io::Cursor::new(bytes),
            digest,
            Some(size),
            labels.clone(),
        )
        .await?;
    // Present already: make sure it carries our references too.
    if !labels.iter().all(|(k, v)| info.labels.get(k) == Some(v)) {
        add_labels(cs, ns, digest, labels).await?;
    }
    Ok(())
}

/// Adds `labels` to blob `digest` of `ns` (others are kept).
pub async fn add_labels(
    cs: &ContentStore,
    ns: &str,
    digest: &Digest,
    labels: Labels,
) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let info = cs.info(ns, digest)?;
    let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
    let info = content::Info { labels, ..info };
    cs.update(ns, info, &paths).await?;
    Ok(())
}
