//! An extra process in a running task, its process spec derived from the
//! container's.

use berth_api::services::tasks::v1 as pb;

use super::attach::{attach_until_exit, IoOptions, Outcome, Stdio, DRAIN};
use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// process id within the task (see [`default_exec_id`])
    pub exec_id: String,
    /// working directory (the container's when None)
    pub cwd: Option<String>,
    /// `KEY=value`, added to (and overriding) the container's
    pub env: Vec<String>,
    /// command and arguments
    pub args: Vec<String>,
}

/// An exec id for a caller that names none: unique per berthctl process.
pub fn default_exec_id() -> String {
    format!("exec-{}", std::process::id())
}

/// Runs `o.args` in task `id`: attached until it exits (then deleted,
/// returning its exit status), or detached.
pub async fn exec(client: &Client, id: &str, o: &ExecOptions, io: &IoOptions) -> Result<Outcome> {
    let exec_id = o.exec_id.clone();
    berth_api::identifiers::validate("exec id", &exec_id)
        .map_err(|e| Error::Input(e.to_string()))?;
    let c = super::containers::get(client, id).await?;
    let spec = super::containers::spec_json(&c)?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| Error::Input(format!("container {id:?}: its spec has no process")))?;
    process["args"] = serde_json::json!(o.args);
    process["terminal"] = serde_json::json!(io.tty);
    if let Some(cwd) = &o.cwd {
        process["cwd"] = serde_json::json!(cwd);
    }
    if !o.env.is_empty() {
        let base: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        process["env"] = serde_json::json!(crate::spec::merge_env(&base, &o.env));
    }
    let any = prost_types::Any {
        type_url: berth_api::type_urls::OCI_PROCESS.into(),
        value: serde_json::to_vec(&process)
            .map_err(|e| Error::Protocol(format!("encode process spec: {e}")))?,
    };
    let mut stdio = Stdio::prepare(client, id, Some(&exec_id), io)?;
    let mut t = client.tasks();
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
        return Ok(Outcome::Detached { pid: r.pid });
    }
    let wire = if stdio.attachable() {
        stdio.wire.clone()
    } else {
        Default::default()
    };
    let (status, attached) = attach_until_exit(client, id, &exec_id, &wire, io.tty, true).await?;
    let _ = t
        .delete_process(pb::DeleteProcessRequest {
            container_id: id.into(),
            exec_id: exec_id.clone(),
        })
        .await;
    attached.drain(DRAIN).await;
    Ok(Outcome::Exited(status))
}
