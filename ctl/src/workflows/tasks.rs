//! A container's task: start it (detached, or attached until it exits and
//! then deleted), and delete it (optionally killing it first).

use std::time::Duration;

use berth_api::services::snapshots::v1 as spb;
use berth_api::services::tasks::v1 as pb;

use super::attach::{attach_until_exit, IoOptions, Outcome, Stdio, DRAIN};
use crate::client::Client;
use crate::error::{Result, RpcContext};

/// Creates container `id`'s task with the container's snapshot as rootfs
/// and runs it: detached (returns once started), or attached until it
/// exits, then deletes it and returns its exit status.
pub async fn start(client: &Client, id: &str, io: &IoOptions) -> Result<Outcome> {
    let c = super::containers::get(client, id).await?;
    let rootfs = if c.snapshot_key.is_empty() {
        Vec::new()
    } else {
        client
            .snapshots()
            .mounts(spb::MountsRequest {
                snapshotter: c.snapshotter.clone(),
                key: c.snapshot_key.clone(),
            })
            .await
            .with_context(|| format!("mounts of snapshot {:?}", c.snapshot_key))?
            .into_inner()
            .mounts
    };
    let mut stdio = Stdio::prepare(client, id, None, io)?;
    let mut tasks = client.tasks();
    let created = tasks
        .create(pb::CreateTaskRequest {
            container_id: id.into(),
            rootfs,
            stdin: stdio.wire.0.clone(),
            stdout: stdio.wire.1.clone(),
            stderr: stdio.wire.2.clone(),
            terminal: io.tty,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create task {id:?}"))?
        .into_inner();
    if io.detach {
        tasks
            .start(pb::StartRequest {
                container_id: id.into(),
                exec_id: String::new(),
            })
            .await
            .with_context(|| format!("start task {id:?}"))?;
        if let Some(f) = stdio.fifos.as_mut() {
            f.keep();
        }
        return Ok(Outcome::Detached { pid: created.pid });
    }
    let wire = if stdio.attachable() {
        stdio.wire.clone()
    } else {
        Default::default()
    };
    let (status, attached) = attach_until_exit(client, id, "", &wire, io.tty, true).await?;
    tasks
        .delete(pb::DeleteTaskRequest {
            container_id: id.into(),
        })
        .await
        .with_context(|| format!("delete task {id:?}"))?;
    attached.drain(DRAIN).await;
    Ok(Outcome::Exited(status))
}

/// Deletes container `id`'s stopped task and its fifos; with `force`, a
/// running one is killed (SIGKILL, every process) and waited for (up to
/// ten seconds) first. Returns what berthd reports of the init process.
pub async fn delete(client: &Client, id: &str, force: bool) -> Result<pb::DeleteResponse> {
    let mut t = client.tasks();
    if force {
        let _ = t
            .kill(pb::KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal: libc::SIGKILL as u32,
                all: true,
            })
            .await;
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            t.wait(pb::WaitRequest {
                container_id: id.into(),
                exec_id: String::new(),
            }),
        )
        .await;
    }
    let r = t
        .delete(pb::DeleteTaskRequest {
            container_id: id.into(),
        })
        .await
        .with_context(|| format!("delete task {id:?}"))?
        .into_inner();
    crate::stdio::remove_fifos(client.namespace(), id);
    Ok(r)
}
