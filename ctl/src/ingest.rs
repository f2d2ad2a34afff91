//! Writing a blob into the content store over `Content.Write`, as
//! containerd's clients do: STAT (learn how much of `ref` the daemon already
//! holds), WRITE chunks at increasing offsets, COMMIT with the size and the
//! expected digest. The daemon verifies the digest on commit; we compute it
//! on the way too, so a blob can be sent without knowing its digest first.
//!
//! Resuming: when the daemon already holds `offset` bytes of `ref` (an
//! earlier write was interrupted), that many bytes of the input are read and
//! hashed but not sent again.

use std::collections::{BTreeMap, VecDeque};

use berth_api::services::content::v1 as pb;
use berth_api::Digest;
use indicatif::ProgressBar;
use pb::content_client::ContentClient;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::client::Svc;
use crate::error::{Error, Result};
use crate::labels::wire_labels;

/// Bytes per WRITE message.
const CHUNK: usize = 1 << 20;
/// WRITE messages sent before waiting for the first reply.
const WINDOW: usize = 4;

/// What to write.
#[derive(Debug, Default)]
pub struct Ingest {
    /// ingest reference (names the resumable write)
    pub reference: String,
    /// the digest the bytes must have; computed from the bytes when None
    pub expected: Option<Digest>,
    /// the size, when known in advance (checked by the daemon)
    pub total: Option<u64>,
    /// labels set on the committed blob
    pub labels: BTreeMap<String, String>,
}

/// A committed blob.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Committed {
    /// ingest reference
    #[serde(rename = "ref")]
    pub reference: String,
    /// the blob's digest
    pub digest: String,
    /// the blob's size in bytes
    pub size: u64,
    /// true when the daemon already had the blob and nothing was sent
    pub existed: bool,
}

/// Writes `reader`'s bytes as one blob and commits it.
pub async fn write<R: AsyncRead + Unpin>(
    client: &mut ContentClient<Svc>,
    ingest: Ingest,
    mut reader: R,
    progress: Option<&ProgressBar>,
) -> Result<Committed> {
    let reference = ingest.reference.clone();
    let rpc = |status: tonic::Status| Error::Rpc {
        what: format!("write content {reference:?}"),
        status,
    };
    let expected = ingest.expected.as_ref().map(Digest::to_string);

    let (tx, rx) = tokio::sync::mpsc::channel::<pb::WriteContentRequest>(WINDOW + 2);
    // The first message goes in before the call so the stream opens with it.
    let stat = pb::WriteContentRequest {
        action: pb::WriteAction::Stat as i32,
        r#ref: reference.clone(),
        total: ingest.total.unwrap_or(0) as i64,
        expected: expected.clone().unwrap_or_default(),
        ..Default::default()
    };
    tx.send(stat)
        .await
        .map_err(|_| Error::Protocol("write stream closed before it opened".into()))?;
    let mut replies = match client.write(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::AlreadyExists && expected.is_some() => {
            return existing(client, &reference, expected.unwrap_or_default()).await;
        }
        Err(s) => return Err(rpc(s)),
    };
    let status = match next(&mut replies).await {
        Ok(r) => r,
        Err(s) if s.code() == Code::AlreadyExists && expected.is_some() => {
            return existing(client, &reference, expected.unwrap_or_default()).await;
        }
        Err(s) => return Err(rpc(s)),
    };

    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let resume = u64::try_from(status.offset).unwrap_or(0);
    let mut offset = 0u64;
    // Skip (but hash) what the daemon already holds.
    while offset < resume {
        let want = CHUNK.min((resume - offset) as usize);
        let n = read_full(&mut reader, &mut buf[..want]).await?;
        if n == 0 {
            return Err(Error::Input(format!(
                "ingest {reference:?} already holds {resume} bytes but the input has only {offset}; \
                 abort it with `berthctl content abort {reference}`"
            )));
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    if let Some(p) = progress {
        p.set_position(offset);
    }

    let mut pending: VecDeque<u64> = VecDeque::new();
    loop {
        let n = read_full(&mut reader, &mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        let req = pb::WriteContentRequest {
            action: pb::WriteAction::Write as i32,
            offset: offset as i64,
            data: buf[..n].to_vec(),
            ..Default::default()
        };
        offset += n as u64;
        if tx.send(req).await.is_err() {
            // The daemon ended the stream: its reply says why.
            return Err(rpc(closed_reason(&mut replies).await));
        }
        pending.push_back(offset);
        if pending.len() >= WINDOW {
            expect_offset(&mut replies, &mut pending)
                .await
                .map_err(rpc)?;
            if let Some(p) = progress {
                p.set_position(offset);
            }
        }
    }
    while !pending.is_empty() {
        expect_offset(&mut replies, &mut pending)
            .await
            .map_err(rpc)?;
    }
    if let Some(p) = progress {
        p.set_position(offset);
    }

    let computed = Digest::from_hasher(hasher).to_string();
    let commit = pb::WriteContentRequest {
        action: pb::WriteAction::Commit as i32,
        offset: offset as i64,
        total: offset as i64,
        expected: expected.clone().unwrap_or_else(|| computed.clone()),
        labels: wire_labels(&ingest.labels),
        ..Default::default()
    };
    if tx.send(commit).await.is_err() {
        return Err(rpc(closed_reason(&mut replies).await));
    }
    let done = next(&mut replies).await.map_err(rpc)?;
    drop(tx);
    let digest = if done.digest.is_empty() {
        computed.clone()
    } else {
        done.digest
    };
    if let Some(want) = &expected {
        if &digest != want {
            return Err(Error::Protocol(format!(
                "write content {reference:?}: daemon committed {digest}, expected {want}"
            )));
        }
    }
    if digest != computed {
        return Err(Error::Protocol(format!(
            "write content {reference:?}: daemon committed {digest} but the bytes sent hash to {computed}"
        )));
    }
    Ok(Committed {
        reference,
        digest,
        size: offset,
        existed: false,
    })
}

/// The daemon already holds `digest`: nothing to send; report its size.
async fn existing(
    client: &mut ContentClient<Svc>,
    reference: &str,
    digest: String,
) -> Result<Committed> {
    let info = client
        .info(pb::InfoRequest {
            digest: digest.clone(),
        })
        .await
        .map_err(|status| Error::Rpc {
            what: format!("get content {digest}"),
            status,
        })?
        .into_inner()
        .info
        .unwrap_or_default();
    Ok(Committed {
        reference: reference.to_string(),
        digest,
        size: u64::try_from(info.size).unwrap_or(0),
        existed: true,
    })
}

/// The next reply; a stream that ends early is an error.
async fn next(
    replies: &mut Streaming<pb::WriteContentResponse>,
) -> Result<pb::WriteContentResponse, tonic::Status> {
    match replies.message().await? {
        Some(r) => Ok(r),
        None => Err(tonic::Status::unavailable(
            "the daemon closed the write stream",
        )),
    }
}

/// Waits for the reply to the oldest pending WRITE and checks the offset
/// the daemon reached.
async fn expect_offset(
    replies: &mut Streaming<pb::WriteContentResponse>,
    pending: &mut VecDeque<u64>,
) -> Result<(), tonic::Status> {
    let want = pending.pop_front().unwrap_or_default();
    let r = next(replies).await?;
    if r.offset as u64 != want {
        return Err(tonic::Status::data_loss(format!(
            "daemon is at offset {} after a write that should end at {want}",
            r.offset
        )));
    }
    Ok(())
}

/// Why the daemon closed the stream: the error it sent, if any.
async fn closed_reason(replies: &mut Streaming<pb::WriteContentResponse>) -> tonic::Status {
    loop {
        match replies.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return tonic::Status::unavailable("the daemon closed the write stream"),
            Err(s) => return s,
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(|e| Error::io("read input", e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
