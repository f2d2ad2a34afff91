//! `berthctl content ls|get|put|rm|label|active|abort`.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use berth_api::services::content::v1 as pb;
use berth_api::Digest;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::{for_each, Ctx, Done};
use crate::error::{Error, Result, RpcContext};
use crate::ingest::{self, Ingest};
use crate::labels::{label_paths, parse_labels, wire_labels};
use crate::output::{age, human_size, labels_cell, rfc3339, sorted_labels, Row};

/// Content commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List blobs
    #[command(visible_alias = "list")]
    Ls {
        /// print digests only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `labels."a"==b` (several: any matches)
        filters: Vec<String>,
    },
    /// Write a blob's bytes to stdout
    Get {
        /// the blob's digest
        digest: String,
    },
    /// Store stdin as a blob under an ingest reference; prints its digest
    #[command(visible_alias = "ingest")]
    Put {
        /// ingest reference (an interrupted put resumes under the same one)
        reference: String,
        /// the digest the bytes must have (computed from stdin when absent)
        #[arg(long)]
        expected_digest: Option<String>,
        /// the size the bytes must have
        #[arg(long)]
        expected_size: Option<u64>,
        /// labels for the blob, as key=value
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Remove blobs
    #[command(visible_aliases = ["remove", "delete", "del"])]
    Rm {
        /// digests
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Set labels on a blob (`key=` removes one)
    Label {
        /// the blob's digest
        digest: String,
        /// labels as key=value
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// List writes in progress (ingests)
    Active {
        /// containerd filters, e.g. `ref~=layer` (several: any matches)
        filters: Vec<String>,
    },
    /// Remove unreferenced content and snapshots now (garbage collection)
    #[command(visible_alias = "prune")]
    Gc,
    /// Abandon writes in progress
    Abort {
        /// ingest references
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// One blob, as listed.
#[derive(Debug, Serialize)]
pub struct BlobRow {
    /// `sha256:...`
    pub digest: String,
    /// bytes
    pub size: i64,
    /// RFC 3339
    pub created_at: Option<String>,
    /// RFC 3339
    pub updated_at: Option<String>,
    /// labels
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    age: String,
}

impl Row for BlobRow {
    fn headers() -> &'static [&'static str] {
        &["DIGEST", "SIZE", "AGE", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.digest.clone(),
            human_size(self.size),
            self.age.clone(),
            labels_cell(&self.labels),
        ]
    }
}

fn blob_row(i: pb::Info) -> BlobRow {
    BlobRow {
        age: age(i.created_at.as_ref()),
        digest: i.digest,
        size: i.size,
        created_at: rfc3339(i.created_at.as_ref()),
        updated_at: rfc3339(i.updated_at.as_ref()),
        labels: sorted_labels(i.labels),
    }
}

/// One write in progress.
#[derive(Debug, Serialize)]
pub struct IngestRow {
    /// ingest reference
    #[serde(rename = "ref")]
    pub reference: String,
    /// bytes written so far
    pub offset: i64,
    /// expected size (0 when unknown)
    pub total: i64,
    /// expected digest, if given
    pub expected: String,
    /// RFC 3339
    pub started_at: Option<String>,
    /// RFC 3339
    pub updated_at: Option<String>,
    #[serde(skip)]
    age: String,
}

impl Row for IngestRow {
    fn headers() -> &'static [&'static str] {
        &["REF", "SIZE", "AGE"]
    }
    fn cells(&self) -> Vec<String> {
        let size = if self.total > 0 {
            format!("{}/{}", human_size(self.offset), human_size(self.total))
        } else {
            human_size(self.offset)
        };
        vec![self.reference.clone(), size, self.age.clone()]
    }
}

fn ingest_row(s: pb::Status) -> IngestRow {
    IngestRow {
        age: age(s.started_at.as_ref()),
        reference: s.r#ref,
        offset: s.offset,
        total: s.total,
        expected: s.expected,
        started_at: rfc3339(s.started_at.as_ref()),
        updated_at: rfc3339(s.updated_at.as_ref()),
    }
}

/// Parses a digest given on the command line.
pub fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: berth_api::DigestError| Error::Input(e.to_string()))
}

/// Runs a content command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let mut c = ctx.client.content();
    match cmd {
        Cmd::Ls { quiet, filters } => {
            let mut stream = c
                .list(pb::ListContentRequest { filters })
                .await
                .context("list content")?
                .into_inner();
            let mut rows = Vec::new();
            while let Some(batch) = stream.message().await.context("list content")? {
                rows.extend(batch.info.into_iter().map(blob_row));
            }
            rows.sort_by(|a, b| a.digest.cmp(&b.digest));
            if quiet && !ctx.out.json() {
                return ctx.out.lines(rows.iter().map(|r| &r.digest));
            }
            ctx.out.list(&rows)
        }
        Cmd::Get { digest } => get(ctx, &digest).await,
        Cmd::Put {
            reference,
            expected_digest,
            expected_size,
            labels,
        } => {
            let expected = expected_digest.as_deref().map(parse_digest).transpose()?;
            let total = expected_size.or_else(stdin_file_size);
            let bar = crate::progress::bytes(total, reference.clone());
            let done = ingest::write(
                &mut c,
                Ingest {
                    reference,
                    expected,
                    total: expected_size,
                    labels: parse_labels(&labels)?,
                },
                tokio::io::stdin(),
                bar.as_ref(),
            )
            .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let done = done?;
            ctx.out.object(&done, |d| format!("{}\n", d.digest))
        }
        Cmd::Rm { digests } => {
            for_each(ctx, &digests, |d| {
                let mut c = c.clone();
                let d = d.clone();
                async move {
                    let digest = parse_digest(&d)?.to_string();
                    c.delete(pb::DeleteContentRequest {
                        digest: digest.clone(),
                    })
                    .await
                    .with_context(|| format!("remove content {digest}"))?;
                    Ok(Done::named("digest", &digest))
                }
            })
            .await
        }
        Cmd::Label { digest, labels } => {
            let digest = parse_digest(&digest)?.to_string();
            let labels = parse_labels(&labels)?;
            let resp = c
                .update(pb::UpdateRequest {
                    info: Some(pb::Info {
                        digest: digest.clone(),
                        labels: wire_labels(&labels),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: label_paths(&labels),
                    }),
                })
                .await
                .with_context(|| format!("label content {digest}"))?
                .into_inner();
            let row = blob_row(resp.info.unwrap_or_default());
            ctx.out.object(&row, |r| format!("{}\n", r.digest))
        }
        Cmd::Active { filters } => {
            let resp = c
                .list_statuses(pb::ListStatusesRequest { filters })
                .await
                .context("list active ingests")?
                .into_inner();
            let mut rows: Vec<IngestRow> = resp.statuses.into_iter().map(ingest_row).collect();
            rows.sort_by(|a, b| a.reference.cmp(&b.reference));
            ctx.out.list(&rows)
        }
        Cmd::Gc => {
            let before = count(ctx).await?;
            gc(ctx).await?;
            let after = count(ctx).await?;
            let removed = before.saturating_sub(after);
            if ctx.out.json() {
                return ctx.out.json_value(
                    &serde_json::json!({"removed_blobs": removed, "remaining_blobs": after}),
                );
            }
            crate::output::write_stdout(&format!("removed {removed} blobs, {after} remain\n"))
        }
        Cmd::Abort { references } => {
            for_each(ctx, &references, |r| {
                let mut c = c.clone();
                let r = r.clone();
                async move {
                    c.abort(pb::AbortRequest { r#ref: r.clone() })
                        .await
                        .with_context(|| format!("abort ingest {r:?}"))?;
                    Ok(Done::named("ref", &r))
                }
            })
            .await
        }
    }
}

/// How many blobs the namespace holds.
async fn count(ctx: &Ctx) -> Result<usize> {
    let mut stream = ctx
        .client
        .content()
        .list(pb::ListContentRequest { filters: vec![] })
        .await
        .context("list content")?
        .into_inner();
    let mut n = 0;
    while let Some(batch) = stream.message().await.context("list content")? {
        n += batch.info.len();
    }
    Ok(n)
}

/// Streams a blob to stdout, checking its digest on the way; a mismatch is
/// reported (after the bytes were written) with a non-zero exit.
async fn get(ctx: &Ctx, digest: &str) -> Result<()> {
    let digest = parse_digest(digest)?.to_string();
    let mut c = ctx.client.content();
    let mut stream = c
        .read(pb::ReadContentRequest {
            digest: digest.clone(),
            offset: 0,
            size: 0,
        })
        .await
        .with_context(|| format!("read content {digest}"))?
        .into_inner();
    let mut out = tokio::io::stdout();
    let mut hasher = Sha256::new();
    let mut written = 0i64;
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("read content {digest}"))?
    {
        if chunk.offset != written {
            return Err(Error::Protocol(format!(
                "read content {digest}: chunk at offset {} where {written} was expected",
                chunk.offset
            )));
        }
        hasher.update(&chunk.data);
        out.write_all(&chunk.data)
            .await
            .map_err(|e| Error::io("write to stdout", e))?;
        written += chunk.data.len() as i64;
    }
    out.flush()
        .await
        .map_err(|e| Error::io("write to stdout", e))?;
    let got = Digest::from_hasher(hasher).to_string();
    if got != digest {
        return Err(Error::Protocol(format!(
            "read content {digest}: the bytes received hash to {got}"
        )));
    }
    Ok(())
}

/// The size of stdin when it is a regular file (`< file`), for the bar.
fn stdin_file_size() -> Option<u64> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let fd = std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    meta.is_file().then_some(meta.len())
}

/// Runs garbage collection now and waits for it: berthd (like containerd)
/// collects synchronously when a lease is deleted with `sync`, so a
/// short-lived empty lease is created and deleted that way.
pub async fn gc(ctx: &Ctx) -> Result<()> {
    use berth_api::services::leases::v1 as lpb;
    let mut leases = ctx.client.leases();
    let lease = leases
        .create(lpb::CreateRequest {
            id: String::new(),
            labels: [(
                berth_api::lease::EXPIRE_LABEL.to_string(),
                humantime::format_rfc3339_seconds(
                    std::time::SystemTime::now() + std::time::Duration::from_secs(60),
                )
                .to_string(),
            )]
            .into(),
        })
        .await
        .context("garbage collection: create lease")?
        .into_inner()
        .lease
        .unwrap_or_default();
    leases
        .delete(lpb::DeleteRequest {
            id: lease.id,
            sync: true,
        })
        .await
        .context("garbage collection")?;
    Ok(())
}
