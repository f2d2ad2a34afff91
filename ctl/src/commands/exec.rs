//! `berthctl tasks exec`: an extra process in a running task, its process
//! spec derived from the container's.

use std::process::ExitCode;

use berth_api::services::tasks::v1 as pb;

use super::task_io::{attach_until_exit, exit_code, IoArgs, Stdio, DRAIN};
use super::Ctx;
use crate::error::{Error, Result, RpcContext};

/// Runs `args` in task `id`; attached unless detached; returns its exit
/// status.
pub async fn exec(
    ctx: &Ctx,
    id: &str,
    exec_id: Option<String>,
    cwd: Option<String>,
    env: Vec<String>,
    io: &IoArgs,
    args: Vec<String>,
) -> Result<ExitCode> {
    let exec_id = exec_id.unwrap_or_else(|| format!("exec-{}", std::process::id()));
    berth_api::identifiers::validate("exec id", &exec_id)
        .map_err(|e| Error::Input(e.to_string()))?;
    let c = super::containers::get(ctx, id).await?;
    let spec = super::containers::spec_json(&c)?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| Error::Input(format!("container {id:?}: its spec has no process")))?;
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(io.tty);
    if let Some(cwd) = cwd {
        process["cwd"] = serde_json::json!(cwd);
    }
    if !env.is_empty() {
        let base: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        process["env"] = serde_json::json!(crate::spec::merge_env(&base, &env));
    }
    let any = prost_types::Any {
        type_url: berth_api::type_urls::OCI_PROCESS.into(),
        value: serde_json::to_vec(&process)
            .map_err(|e| Error::Protocol(format!("encode process spec: {e}")))?,
    };
    let mut stdio = Stdio::prepare(ctx, id, Some(&exec_id), io)?;
    let mut t = ctx.client.tasks();
    t.exec(pb::ExecProcessRequest {
        container_id: id.into(),
        stdin: stdio.wire.0.clone(),
        stdout: stdio.wire.1.clone(),
        stderr: stdio.wire.2.clone(),
        terminal: io.tty,
        spec: Some(any),
        exec_id: exec_id.clone(),
    })
    .await
    .with_context(|| format!("exec {exec_id:?} in task {id:?}"))?;
    if io.detach {
        let r = t
            .start(pb::StartRequest {
                container_id: id.into(),
                exec_id: exec_id.clone(),
            })
            .await
            .with_context(|| format!("start {exec_id:?} in task {id:?}"))?
            .into_inner();
        if let Some(f) = stdio.fifos.as_mut() {
            f.keep();
        }
        if ctx.out.json() {
            ctx.out
                .json_value(&serde_json::json!({"id": id, "exec_id": exec_id, "pid": r.pid}))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wire = if stdio.attachable() {
        stdio.wire.clone()
    } else {
        Default::default()
    };
    let (status, attached) = attach_until_exit(ctx, id, &exec_id, &wire, io.tty, true).await?;
    let _ = t
        .delete_process(pb::DeleteProcessRequest {
            container_id: id.into(),
            exec_id: exec_id.clone(),
        })
        .await;
    attached.drain(DRAIN).await;
    Ok(ExitCode::from(exit_code(status)))
}
