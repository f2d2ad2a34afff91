//! `berthctl events`: follow the daemon's event stream, one line per event
//! (`--output json`: one JSON object per line).

use berth_api::events as ev;
use berth_api::services::events::v1 as pb;
use prost::Message;
use serde_json::{json, Value};

use super::Ctx;
use crate::error::{Result, RpcContext};
use crate::output::{rfc3339, write_stdout};

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// containerd filters, e.g. `topic~="/tasks/"` or `namespace==default`
    pub filters: Vec<String>,
    /// stop after this many events
    #[arg(long)]
    pub count: Option<usize>,
}

fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    rfc3339(t).map(Value::from).unwrap_or(Value::Null)
}

fn mounts(m: &[berth_api::types::Mount]) -> Value {
    m.iter()
        .map(|m| json!({"type": m.r#type, "source": m.source, "options": m.options}))
        .collect()
}

/// Decodes an event payload into JSON with containerd's field names;
/// unknown types give their type URL and size.
pub fn decode(any: &prost_types::Any) -> Value {
    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    let b = any.value.as_slice();
    macro_rules! d {
        ($t:ty, |$e:ident| $body:expr) => {
            match <$t>::decode(b) {
                Ok($e) => $body,
                Err(err) => json!({"decode_error": err.to_string()}),
            }
        };
    }
    match name {
        "containerd.events.TaskCreate" => d!(ev::TaskCreate, |e| json!({
            "container_id": e.container_id, "bundle": e.bundle, "pid": e.pid,
            "rootfs": mounts(&e.rootfs),
            "io": e.io.map(|io| json!({"stdin": io.stdin, "stdout": io.stdout, "stderr": io.stderr, "terminal": io.terminal})),
        })),
        "containerd.events.TaskStart" => d!(
            ev::TaskStart,
            |e| json!({"container_id": e.container_id, "pid": e.pid})
        ),
        "containerd.events.TaskExit" => d!(ev::TaskExit, |e| json!({
            "container_id": e.container_id, "id": e.id, "pid": e.pid,
            "exit_status": e.exit_status, "exited_at": ts(e.exited_at.as_ref()),
        })),
        "containerd.events.TaskDelete" => d!(ev::TaskDelete, |e| json!({
            "container_id": e.container_id, "id": e.id, "pid": e.pid,
            "exit_status": e.exit_status, "exited_at": ts(e.exited_at.as_ref()),
        })),
        "containerd.events.TaskOOM" => d!(ev::TaskOom, |e| json!({"container_id": e.container_id})),
        "containerd.events.TaskExecAdded" => d!(
            ev::TaskExecAdded,
            |e| json!({"container_id": e.container_id, "exec_id": e.exec_id})
        ),
        "containerd.events.TaskExecStarted" => d!(
            ev::TaskExecStarted,
            |e| json!({"container_id": e.container_id, "exec_id": e.exec_id, "pid": e.pid})
        ),
        "containerd.events.TaskPaused" => {
            d!(ev::TaskPaused, |e| json!({"container_id": e.container_id}))
        }
        "containerd.events.TaskResumed" => {
            d!(ev::TaskResumed, |e| json!({"container_id": e.container_id}))
        }
        "containerd.events.ContainerCreate" => d!(ev::ContainerCreate, |e| json!({
            "id": e.id, "image": e.image, "runtime": e.runtime.map(|r| r.name),
        })),
        "containerd.events.ContainerUpdate" => d!(ev::ContainerUpdate, |e| json!({
            "id": e.id, "image": e.image, "labels": e.labels, "snapshot_key": e.snapshot_key,
        })),
        "containerd.events.ContainerDelete" => d!(ev::ContainerDelete, |e| json!({"id": e.id})),
        "containerd.events.ContentDelete" => d!(ev::ContentDelete, |e| json!({"digest": e.digest})),
        "containerd.events.NamespaceCreate" => d!(
            ev::NamespaceCreate,
            |e| json!({"name": e.name, "labels": e.labels})
        ),
        "containerd.events.NamespaceUpdate" => d!(
            ev::NamespaceUpdate,
            |e| json!({"name": e.name, "labels": e.labels})
        ),
        "containerd.events.NamespaceDelete" => d!(ev::NamespaceDelete, |e| json!({"name": e.name})),
        "containerd.events.SnapshotPrepare" => d!(
            ev::SnapshotPrepare,
            |e| json!({"key": e.key, "parent": e.parent})
        ),
        "containerd.events.SnapshotCommit" => d!(
            ev::SnapshotCommit,
            |e| json!({"key": e.key, "name": e.name})
        ),
        "containerd.events.SnapshotRemove" => d!(ev::SnapshotRemove, |e| json!({"key": e.key})),
        "containerd.services.images.v1.ImageCreate" => {
            d!(
                berth_api::services::images::v1::ImageCreate,
                |e| json!({"name": e.name, "labels": e.labels})
            )
        }
        "containerd.services.images.v1.ImageUpdate" => {
            d!(
                berth_api::services::images::v1::ImageUpdate,
                |e| json!({"name": e.name, "labels": e.labels})
            )
        }
        "containerd.services.images.v1.ImageDelete" => {
            d!(
                berth_api::services::images::v1::ImageDelete,
                |e| json!({"name": e.name})
            )
        }
        _ => json!({"type_url": any.type_url, "bytes": any.value.len()}),
    }
}

/// Follows events until interrupted (or `--count` were printed).
pub async fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let mut stream = ctx
        .client
        .events()
        .subscribe(pb::SubscribeRequest {
            filters: args.filters,
        })
        .await
        .context("subscribe to events")?
        .into_inner();
    let mut seen = 0usize;
    while let Some(e) = stream.message().await.context("receive events")? {
        let event = e.event.as_ref().map(decode).unwrap_or(Value::Null);
        let line = if ctx.out.json() {
            json!({
                "timestamp": ts(e.timestamp.as_ref()),
                "namespace": e.namespace,
                "topic": e.topic,
                "type": e.event.as_ref().map(|a| a.type_url.clone()),
                "event": event,
            })
            .to_string()
        } else {
            format!(
                "{} {} {} {}",
                rfc3339(e.timestamp.as_ref()).unwrap_or_else(|| "-".into()),
                e.namespace,
                e.topic,
                event
            )
        };
        write_stdout(&format!("{line}\n"))?;
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}
