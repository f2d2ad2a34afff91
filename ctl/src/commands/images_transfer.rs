//! `berthctl images import|export` over berthd's `berth.images.v1.Transfer`
//! service: the archive's bytes cross the socket once and the daemon does
//! the rest (blobs, image records, unpack into the snapshotter).

use std::path::PathBuf;

use berth_api::berth_images::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use crate::error::{Error, Result, RpcContext};
use crate::workflows::create::DEFAULT_SNAPSHOTTER;

/// Bytes per import message.
const CHUNK: usize = 1 << 20;

/// `images import` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// OCI image layout tar or `docker save` tar (`-` for stdin)
    pub file: PathBuf,
    /// platform to unpack, os/arch[/variant] (default: the daemon's)
    #[arg(long)]
    pub platform: Option<String>,
    /// keep every platform's content (only the chosen one is unpacked)
    #[arg(long)]
    pub all_platforms: bool,
    /// snapshotter to unpack into
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
    pub snapshotter: String,
    /// prefix for images the archive names only by tag
    #[arg(long, default_value = "")]
    pub base_name: String,
    /// store content and image records only
    #[arg(long)]
    pub no_unpack: bool,
}

/// `images export` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// where to write the OCI layout tar (`-` for stdout)
    pub file: PathBuf,
    /// image names
    #[arg(required = true)]
    pub names: Vec<String>,
    /// platform to export, os/arch[/variant] (default: the daemon's)
    #[arg(long)]
    pub platform: Option<String>,
    /// export every platform
    #[arg(long)]
    pub all_platforms: bool,
}

/// Streams an archive to the daemon and prints the images it created.
pub async fn import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        berth_api::oci::Platform::parse(p)?;
    }
    let stdin = a.file.as_os_str() == "-";
    let what = format!("import {}", a.file.display());
    let (reader, total): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(&a.file)
            .await
            .map_err(|e| Error::io(format!("open {}", a.file.display()), e))?;
        let len = f.metadata().await.ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportRequest>(4);
    tx.send(pb::ImportRequest {
        msg: Some(pb::import_request::Msg::Options(pb::ImportOptions {
            platform: a.platform.clone().unwrap_or_default(),
            all_platforms: a.all_platforms,
            snapshotter: a.snapshotter.clone(),
            name_prefix: a.base_name.clone(),
            no_unpack: a.no_unpack,
        })),
    })
    .await
    .map_err(|_| Error::Protocol("import stream closed before it opened".into()))?;
    // The file is read and sent by its own task while replies are read here.
    let file_name = a.file.display().to_string();
    let sender = tokio::spawn(async move {
        let mut reader = reader;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(format!("read {file_name}"), e))?;
            if n == 0 {
                return Ok::<(), Error>(());
            }
            buf.truncate(n);
            let msg = pb::ImportRequest {
                msg: Some(pb::import_request::Msg::Chunk(buf)),
            };
            if tx.send(msg).await.is_err() {
                // The daemon stopped reading; its reply says why.
                return Ok(());
            }
        }
    });
    let bar = crate::progress::bytes(total, "importing");
    let result = async {
        let mut replies = ctx
            .client
            .transfer()
            .import(ReceiverStream::new(rx))
            .await
            .context(what.clone())?
            .into_inner();
        let mut images = Vec::new();
        while let Some(p) = replies.message().await.context(what.clone())? {
            if let Some(b) = &bar {
                b.set_position(u64::try_from(p.received).unwrap_or(0));
                if !p.state.is_empty() {
                    b.set_message(p.state.clone());
                }
            }
            if !p.images.is_empty() {
                images = p.images;
            }
        }
        Ok::<_, Error>(images)
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let images = match result {
        Ok(i) => i,
        Err(e) => {
            sender.abort();
            return Err(e);
        }
    };
    match sender.await {
        Ok(Err(e)) => return Err(e),
        Err(e) if e.is_panic() => return Err(Error::Protocol("import reader failed".into())),
        _ => {}
    }
    if images.is_empty() {
        return Err(Error::Protocol(format!(
            "{what}: the daemon reported no images"
        )));
    }
    if ctx.out.json() {
        return ctx.out.json_value(&serde_json::json!({ "images": images }));
    }
    ctx.out.lines(images)
}

/// Streams an OCI layout tar of the named images into a file (written to a
/// temporary name, synced, then renamed) or to stdout.
pub async fn export(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        berth_api::oci::Platform::parse(p)?;
    }
    let what = format!("export {}", a.names.join(", "));
    let mut stream = ctx
        .client
        .transfer()
        .export(pb::ExportRequest {
            names: a.names.clone(),
            platform: a.platform.clone().unwrap_or_default(),
            all_platforms: a.all_platforms,
        })
        .await
        .context(what.clone())?
        .into_inner();
    let to_stdout = a.file.as_os_str() == "-";
    let tmp = {
        let mut name = a.file.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".berthctl-{}.tmp", std::process::id()));
        a.file.with_file_name(name)
    };
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if to_stdout {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?,
        )
    };
    let bar = crate::progress::bytes(None, "exporting");
    let result = async {
        let mut written = 0u64;
        while let Some(chunk) = stream.message().await.context(what.clone())? {
            out.write_all(&chunk.data)
                .await
                .map_err(|e| Error::io(format!("write {}", a.file.display()), e))?;
            written += chunk.data.len() as u64;
            if let Some(b) = &bar {
                b.set_position(written);
            }
        }
        out.flush()
            .await
            .map_err(|e| Error::io(format!("write {}", a.file.display()), e))?;
        Ok::<_, Error>(written)
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(out);
    let written = match result {
        Ok(w) => w,
        Err(e) => {
            if !to_stdout {
                let _ = std::fs::remove_file(&tmp);
            }
            return Err(e);
        }
    };
    if !to_stdout {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &a.file))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(format!("write {}", a.file.display()), e)
            })?;
        if ctx.out.json() {
            return ctx.out.json_value(&serde_json::json!({
                "file": a.file.display().to_string(), "size": written, "images": a.names
            }));
        }
    }
    Ok(())
}
