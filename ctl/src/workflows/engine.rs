//! The Docker-style workflow as berthd's `berth.containers.v1` serves it:
//! create (with the pull's progress), run in the foreground (start, the
//! log followed until the run ends, its exit code), logs. berthd does the
//! work; these are the client's halves.

use std::io::Write;

use berth_api::berth_containers::v1 as pb;
use berth_api::images::v1::PullProgress;

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Creates a container; every pull progress message goes to `progress`.
pub async fn create(
    client: &Client,
    req: pb::CreateRequest,
    mut progress: impl FnMut(&PullProgress),
) -> Result<pb::Created> {
    let image = req
        .config
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    let mut stream = client
        .engine()
        .create(req)
        .await
        .with_context(|| format!("create a container from {image:?}"))?
        .into_inner();
    loop {
        let msg = stream
            .message()
            .await
            .with_context(|| format!("create a container from {image:?}"))?;
        match msg.and_then(|m| m.msg) {
            Some(pb::create_progress::Msg::Pull(p)) => progress(&p),
            Some(pb::create_progress::Msg::Created(c)) => return Ok(c),
            None => {
                return Err(Error::Protocol(
                    "berthd ended the create without a container".into(),
                ))
            }
        }
    }
}

/// Which streams a log read writes where.
fn write_entries(entries: &[pb::LogEntry], timestamps: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for e in entries {
        let w: &mut dyn Write = if e.stream == pb::Stream::Stderr as i32 {
            &mut err
        } else {
            &mut out
        };
        let res = (|| {
            if timestamps {
                let t = std::time::UNIX_EPOCH
                    + std::time::Duration::from_nanos(e.time_unix_nano.max(0) as u64);
                write!(w, "{} ", humantime::format_rfc3339_nanos(t))?;
            }
            w.write_all(&e.data)
        })();
        res.map_err(|e| Error::io("write the log", e))?;
    }
    out.flush().map_err(|e| Error::io("write to stdout", e))?;
    err.flush().map_err(|e| Error::io("write to stderr", e))
}

/// Streams container logs as `req` asks to stdout and stderr (by the
/// entries' streams), with RFC 3339 times first when `timestamps`.
pub async fn logs(client: &Client, req: pb::LogsRequest, timestamps: bool) -> Result<()> {
    let what = format!("logs of container {:?}", req.container);
    let mut stream = client
        .engine()
        .logs(req)
        .await
        .context(what.clone())?
        .into_inner();
    while let Some(batch) = stream.message().await.context(what.clone())? {
        write_entries(&batch.entries, timestamps)?;
    }
    Ok(())
}

/// Starts container `id` and follows its output until the run ends; its
/// exit code. (A foreground `--rm` is the caller's removal after this
/// returns, so the exit code is still there to read.)
pub async fn run_foreground(client: &Client, id: &str) -> Result<i32> {
    let mut engine = client.engine();
    let start = engine
        .start(pb::StartRequest {
            container: id.to_string(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("start container {id}"))?
        .into_inner();
    let waiter = {
        let mut engine = client.engine();
        let id = start.id.clone();
        tokio::spawn(async move {
            engine
                .wait(pb::WaitRequest { container: id })
                .await
                .map(|r| r.into_inner().exit_code)
        })
    };
    let follow = logs(
        client,
        pb::LogsRequest {
            container: start.id.clone(),
            follow: true,
            tail: -1,
            ..Default::default()
        },
        false,
    )
    .await;
    let code = waiter
        .await
        .map_err(|e| Error::Protocol(format!("waiting for the container: {e}")))?;
    match (follow, code) {
        (_, Ok(code)) => Ok(code),
        (Err(e), Err(_)) => Err(e),
        (Ok(()), Err(status)) => Err(Error::Rpc {
            what: format!("wait for container {id}"),
            status,
        }),
    }
}
