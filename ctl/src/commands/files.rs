//! `berthctl commit`, `diff` and `cp`: a container's filesystem through
//! berthd (`berth.containers.v1.ContainerFiles`).

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use berth_api::berth_containers::v1 as pb;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use crate::error::{Error, Result, RpcContext};

/// `commit`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// the history entry's comment
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// the image's author
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// a Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, VOLUME, WORKDIR, USER, STOPSIGNAL (repeatable)
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// pause a running container during the commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// the new layer's compression: gzip or zstd
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// the container: name, ID or ID prefix
    pub container: String,
    /// the new image's reference (default: named by its manifest digest)
    pub reference: Option<String>,
}

/// `commit`: prints the new image's manifest digest (its name with -o json).
pub async fn commit(ctx: &Ctx, a: CommitArgs) -> Result<()> {
    let r = ctx
        .client
        .files()
        .commit(pb::CommitRequest {
            container: a.container.clone(),
            reference: a.reference.clone().unwrap_or_default(),
            message: a.message.unwrap_or_default(),
            author: a.author.unwrap_or_default(),
            changes: a.changes,
            pause: a.pause,
            compression: a.compression,
        })
        .await
        .with_context(|| format!("commit {:?}", a.container))?
        .into_inner();
    ctx.out.object(
        &serde_json::json!({
            "image": r.image,
            "manifest_digest": r.manifest_digest,
            "config_digest": r.config_digest,
            "layer_digest": r.layer_digest,
            "diff_id": r.diff_id,
            "layer_size": r.layer_size,
        }),
        |_| format!("{}\n", r.manifest_digest),
    )
}

/// `diff`: `A /path`, `C /path`, `D /path` lines.
pub async fn diff(ctx: &Ctx, container: String) -> Result<()> {
    let r = ctx
        .client
        .files()
        .diff(pb::DiffRequest {
            container: container.clone(),
        })
        .await
        .with_context(|| format!("diff {container:?}"))?
        .into_inner();
    if matches!(ctx.out.format, crate::output::Format::Json) {
        let v: Vec<_> = r
            .changes
            .iter()
            .map(|c| serde_json::json!({"kind": c.kind, "path": c.path}))
            .collect();
        return ctx.out.json_value(&v);
    }
    ctx.out
        .lines(r.changes.iter().map(|c| format!("{} {}", c.kind, c.path)))
}

/// `NAME:PATH` → (NAME, PATH); a local path otherwise (one that starts
/// with `/` or `.`, or has no `:` before its first `/`).
fn container_side(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (name, path) = arg.split_once(':')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((name, path))
}

/// `cp`: between a container and the host, or a tar stream (`-`).
pub async fn cp(ctx: &Ctx, src: String, dst: String) -> Result<()> {
    match (container_side(&src), container_side(&dst)) {
        (Some(_), Some(_)) => Err(Error::Input(
            "cp: copying between two containers is not supported; copy through the host".into(),
        )),
        (None, None) => Err(Error::Input(
            "cp: one side must be a container path, NAME:/PATH".into(),
        )),
        (Some((name, path)), None) => copy_out(ctx, name, path, &dst).await,
        (None, Some((name, path))) => copy_in(ctx, &src, name, path).await,
    }
}

async fn copy_out(ctx: &Ctx, name: &str, path: &str, dst: &str) -> Result<()> {
    let what = format!("copy {name}:{path}");
    let mut stream = ctx
        .client
        .files()
        .copy_from(pb::CopyFromRequest {
            container: name.to_string(),
            path: path.to_string(),
        })
        .await
        .with_context(|| what.clone())?
        .into_inner();
    // The tar is read on a blocking thread as chunks arrive.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let dst = dst.to_string();
    let sink = tokio::task::spawn_blocking(move || -> Result<()> {
        let reader = ChanReader {
            rx: &mut rx,
            cur: Vec::new(),
            pos: 0,
        };
        if dst == "-" {
            let mut r = reader;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut r, &mut out).map_err(|e| Error::io("write stdout", e))?;
            return out.flush().map_err(|e| Error::io("write stdout", e));
        }
        extract_host(reader, Path::new(&dst))
    });
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(c.data).await.is_err() {
                    break;
                }
            }
            Err(s) => {
                failed = Some(s);
                break;
            }
        }
    }
    drop(tx);
    let local = sink
        .await
        .map_err(|e| Error::Protocol(format!("copy thread: {e}")))?;
    if let Some(s) = failed {
        return Err(Error::Rpc { what, status: s });
    }
    local
}

/// Extracts a tar from the daemon on the host: into `dst` when it is a
/// directory, else as `dst` (the top entry renamed). Entries naming `..`
/// or absolute paths are refused.
fn extract_host(reader: impl Read, dst: &Path) -> Result<()> {
    let (base, rename) = if dst.is_dir() {
        (dst.to_path_buf(), None)
    } else {
        let parent = dst
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dst
            .file_name()
            .ok_or_else(|| Error::Input(format!("cp: destination {dst:?} has no file name")))?;
        (parent.to_path_buf(), Some(name.to_os_string()))
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    let io = |e: std::io::Error| Error::io(format!("extract into {}", base.display()), e);
    for entry in ar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let p = entry.path().map_err(io)?.into_owned();
        let mut rel = PathBuf::new();
        for (i, c) in p.components().enumerate() {
            match c {
                Component::Normal(_) if i == 0 && rename.is_some() => {
                    rel.push(rename.as_ref().expect("checked"))
                }
                Component::Normal(n) => rel.push(n),
                Component::CurDir => {}
                _ => {
                    return Err(Error::Protocol(format!(
                        "cp: refusing tar entry {p:?} from berthd"
                    )))
                }
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        entry.unpack(base.join(&rel)).map_err(io)?;
    }
    Ok(())
}

async fn copy_in(ctx: &Ctx, src: &str, name: &str, path: &str) -> Result<()> {
    let what = format!("copy to {name}:{path}");
    let (tx, rx) = mpsc::channel::<pb::CopyToRequest>(8);
    tx.send(pb::CopyToRequest {
        msg: Some(pb::copy_to_request::Msg::Start(pb::CopyToStart {
            container: name.to_string(),
            path: path.to_string(),
        })),
    })
    .await
    .map_err(|_| Error::Protocol("copy channel closed".into()))?;
    let src = src.to_string();
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut w = ChanWriter {
            tx,
            buf: Vec::new(),
        };
        if src == "-" {
            let mut stdin = std::io::stdin().lock();
            std::io::copy(&mut stdin, &mut w).map_err(|e| Error::io("read stdin", e))?;
        } else {
            let p = Path::new(&src);
            let meta =
                std::fs::symlink_metadata(p).map_err(|e| Error::io(format!("cp: {src}"), e))?;
            let top = p
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let mut b = tar::Builder::new(&mut w);
            b.follow_symlinks(false);
            let r = if meta.is_dir() {
                b.append_dir_all(&top, p)
            } else {
                b.append_path_with_name(p, &top)
            };
            r.and_then(|()| b.finish())
                .map_err(|e| Error::io(format!("cp: archive {src}"), e))?;
        }
        w.flush().map_err(|e| Error::io("cp: send", e))
    });
    let resp = ctx.client.files().copy_to(ReceiverStream::new(rx)).await;
    let local = producer
        .await
        .map_err(|e| Error::Protocol(format!("copy thread: {e}")))?;
    resp.context(what)?;
    local
}

struct ChanReader<'a> {
    rx: &'a mut mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct ChanWriter {
    tx: mpsc::Sender<pb::CopyToRequest>,
    buf: Vec<u8>,
}

impl Write for ChanWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(pb::CopyToRequest {
                msg: Some(pb::copy_to_request::Msg::Data(data)),
            })
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "berthd ended the copy")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::container_side;

    #[test]
    fn which_side_is_the_container() {
        assert_eq!(container_side("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(container_side("/tmp/a:b"), None);
        assert_eq!(container_side("./a:b"), None);
        assert_eq!(container_side("dir/a:b"), None);
        assert_eq!(container_side("-"), None);
        assert_eq!(container_side("plain"), None);
    }
}
