//! containerd.services.tasks.v1.Tasks over the task manager.

use berth_api::services::tasks::v1 as pb;
use berth_api::shim::v1 as sp;
use berth_api::task_types::Process;
use pb::tasks_server::Tasks;
use tonic::{Code, Request, Response, Status};

use super::{convert, namespace, Context};
use crate::filters::Fields;
use crate::runtime::{self, CreateTask, Task};
use crate::store::containers;

/// The Tasks service.
pub struct TasksService {
    ctx: Context,
}

impl TasksService {
    /// Serves tasks from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

impl From<runtime::Error> for Status {
    fn from(e: runtime::Error) -> Self {
        use runtime::Error as E;
        let code = match &e {
            E::NotFound(_) => Code::NotFound,
            E::AlreadyExists(_) => Code::AlreadyExists,
            E::InvalidArgument(_) => Code::InvalidArgument,
            E::FailedPrecondition(_) => Code::FailedPrecondition,
            E::Unimplemented(_) => Code::Unimplemented,
            E::Shim(s) => return Status::new(s.code(), s.message().to_string()),
            E::Store(s) => status_code(s),
            E::Launch(_) | E::Io { .. } | E::Internal(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "task failure");
        }
        Status::new(code, e.to_string())
    }
}

fn status_code(e: &crate::store::Error) -> Code {
    match e {
        crate::store::Error::NotFound { .. } => Code::NotFound,
        crate::store::Error::AlreadyExists { .. } => Code::AlreadyExists,
        crate::store::Error::InvalidArgument(_) => Code::InvalidArgument,
        crate::store::Error::FailedPrecondition(_) => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

fn process(task: &Task, s: sp::StateResponse) -> Process {
    Process {
        container_id: task.id.clone(),
        id: if s.exec_id.is_empty() {
            task.id.clone()
        } else {
            s.exec_id
        },
        pid: s.pid,
        status: s.status,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        exit_status: s.exit_status,
        exited_at: s.exited_at,
    }
}

struct TaskFields<'a>(&'a Task);

impl Fields for TaskFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match (path.first()?.as_str(), path.len()) {
            ("id", 1) | ("container_id", 1) => Some(self.0.id.clone()),
            ("namespace", 1) => Some(self.0.namespace.clone()),
            ("pid", 1) => Some(self.0.pid.to_string()),
            _ => None,
        }
    }
}

fn checkpoint_unimplemented() -> Status {
    Status::unimplemented(
        "checkpoint/restore is not supported by berthd (no CRIU integration); stop and recreate the task instead",
    )
}

type Reply<T> = Result<Response<T>, Status>;

impl TasksService {
    #[allow(clippy::result_large_err)]
    fn task<T>(&self, req: &Request<T>, id: &str) -> Result<std::sync::Arc<Task>, Status> {
        let ns = namespace(req)?;
        Ok(self.ctx.tasks.get(&ns, id)?)
    }
}

#[tonic::async_trait]
impl Tasks for TasksService {
    async fn create(&self, req: Request<pb::CreateTaskRequest>) -> Reply<pb::CreateTaskResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.checkpoint.is_some() {
            return Err(checkpoint_unimplemented());
        }
        berth_api::identifiers::validate("container_id", &r.container_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let container = containers::get(&self.ctx.store, &ns, &r.container_id)?;
        let pid = self
            .ctx
            .tasks
            .create(
                &ns,
                CreateTask {
                    container,
                    rootfs: r.rootfs,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    terminal: r.terminal,
                    options: r.options,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateTaskResponse {
            container_id: r.container_id,
            pid,
        }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Reply<pb::StartResponse> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        let init = exec_id.is_empty();
        let r = t
            .live_client()?
            .start(sp::ProcessRequest { exec_id })
            .await?;
        if init {
            t.note(runtime::Change::Started);
        }
        Ok(Response::new(pb::StartResponse {
            pid: r.into_inner().pid,
        }))
    }

    async fn delete(&self, req: Request<pb::DeleteTaskRequest>) -> Reply<pb::DeleteResponse> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        let (pid, exit) = self.ctx.tasks.delete(&ns, &id).await?;
        Ok(Response::new(pb::DeleteResponse {
            id,
            pid,
            exit_status: exit.status,
            exited_at: Some(convert::timestamp(exit.at)),
        }))
    }

    async fn delete_process(
        &self,
        req: Request<pb::DeleteProcessRequest>,
    ) -> Reply<pb::DeleteResponse> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let exec_id = req.into_inner().exec_id;
        if exec_id.is_empty() {
            return Err(Status::invalid_argument(
                "exec_id: required (delete the init process with Delete)",
            ));
        }
        let r = t
            .live_client()?
            .delete(sp::ProcessRequest {
                exec_id: exec_id.clone(),
            })
            .await?
            .into_inner();
        Ok(Response::new(pb::DeleteResponse {
            id: exec_id,
            pid: r.pid,
            exit_status: r.exit_status,
            exited_at: r.exited_at,
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Reply<pb::GetResponse> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let s = t.state(&req.get_ref().exec_id).await?;
        Ok(Response::new(pb::GetResponse {
            process: Some(process(&t, s)),
        }))
    }

    async fn list(&self, req: Request<pb::ListTasksRequest>) -> Reply<pb::ListTasksResponse> {
        let ns = namespace(&req)?;
        let filter = super::parse_filters(std::slice::from_ref(&req.get_ref().filter))?;
        let tasks: Vec<_> = self
            .ctx
            .tasks
            .list(&ns)
            .into_iter()
            .filter(|t| filter.matches(&TaskFields(t)))
            .collect();
        // From berthd's table: Get asks the shim, List does not (see
        // runtime::known).
        let out = tasks.iter().map(|t| process(t, t.known_state())).collect();
        Ok(Response::new(pb::ListTasksResponse { tasks: out }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        t.live_client()?
            .kill(sp::KillRequest {
                exec_id: r.exec_id,
                signal: r.signal,
                all: r.all,
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, req: Request<pb::ExecProcessRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        berth_api::identifiers::validate("exec_id", &r.exec_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if r.spec.is_none() {
            return Err(Status::invalid_argument(
                "spec: an OCI process spec is required",
            ));
        }
        t.live_client()?
            .exec(sp::ExecRequest {
                exec_id: r.exec_id,
                terminal: r.terminal,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                spec: r.spec,
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        t.live_client()?
            .resize_pty(sp::ResizePtyRequest {
                exec_id: r.exec_id,
                width: r.width,
                height: r.height,
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        t.live_client()?
            .close_io(sp::CloseIoRequest {
                exec_id: r.exec_id,
                stdin: r.stdin,
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, req: Request<pb::PauseTaskRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        t.live_client()?.pause(()).await?;
        t.note(runtime::Change::Paused);
        Ok(Response::new(()))
    }

    async fn resume(&self, req: Request<pb::ResumeTaskRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        t.live_client()?.resume(()).await?;
        t.note(runtime::Change::Resumed);
        Ok(Response::new(()))
    }

    async fn list_pids(&self, req: Request<pb::ListPidsRequest>) -> Reply<pb::ListPidsResponse> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = t.live_client()?.pids(()).await?.into_inner();
        Ok(Response::new(pb::ListPidsResponse {
            processes: r.processes,
        }))
    }

    async fn checkpoint(
        &self,
        _req: Request<pb::CheckpointTaskRequest>,
    ) -> Reply<pb::CheckpointTaskResponse> {
        Err(checkpoint_unimplemented())
    }

    async fn update(&self, req: Request<pb::UpdateTaskRequest>) -> Reply<()> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let r = req.into_inner();
        t.live_client()?
            .update(sp::UpdateRequest {
                resources: r.resources,
                annotations: r.annotations,
            })
            .await?;
        Ok(Response::new(()))
    }

    async fn metrics(&self, req: Request<pb::MetricsRequest>) -> Reply<pb::MetricsResponse> {
        let ns = namespace(&req)?;
        let filter = super::parse_filters(&req.get_ref().filters)?;
        let tasks: Vec<_> = self
            .ctx
            .tasks
            .list(&ns)
            .into_iter()
            .filter(|t| t.dead().is_none() && filter.matches(&TaskFields(t)))
            .collect();
        let stats = futures::future::join_all(tasks.iter().map(|t| async move {
            let mut c = t.client();
            c.stats(()).await
        }))
        .await;
        let mut metrics = Vec::new();
        for (t, s) in tasks.iter().zip(stats) {
            let s = s.map_err(|e| {
                Status::new(e.code(), format!("metrics of {:?}: {}", t.id, e.message()))
            })?;
            metrics.push(berth_api::types::Metric {
                timestamp: Some(convert::timestamp(std::time::SystemTime::now())),
                id: t.id.clone(),
                data: s.into_inner().stats,
            });
        }
        Ok(Response::new(pb::MetricsResponse { metrics }))
    }

    async fn wait(&self, req: Request<pb::WaitRequest>) -> Reply<pb::WaitResponse> {
        let t = self.task(&req, &req.get_ref().container_id)?;
        let exit = t.wait(&req.get_ref().exec_id).await?;
        Ok(Response::new(pb::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(convert::timestamp(exit.at)),
        }))
    }
}
