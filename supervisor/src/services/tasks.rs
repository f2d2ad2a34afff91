//! containerd.services.tasks.v1.Tasks over [`Tasks`]: each call decodes
//! its request, makes one call of the task domain, and encodes the reply.
//! No shim client or shim message is seen here.

use berth_api::services::tasks::v1 as pb;
use berth_api::task_types;
use pb::tasks_server::Tasks as Service;
use tonic::{Request, Response, Status};

use super::{convert, namespace};
use crate::tasks::{self, CreateTask, ExecProcess, Kill, Process, Tasks};

/// The Tasks service.
pub struct TasksService {
    tasks: Tasks,
}

impl TasksService {
    /// Serves `tasks`.
    pub fn new(tasks: Tasks) -> Self {
        Self { tasks }
    }
}

fn wire_status(s: tasks::Status) -> task_types::Status {
    use tasks::Status as S;
    match s {
        S::Unknown => task_types::Status::Unknown,
        S::Created => task_types::Status::Created,
        S::Running => task_types::Status::Running,
        S::Paused => task_types::Status::Paused,
        S::Pausing => task_types::Status::Pausing,
        S::Stopped => task_types::Status::Stopped,
    }
}

fn to_wire(p: Process) -> task_types::Process {
    task_types::Process {
        id: if p.exec_id.is_empty() {
            p.container_id.clone()
        } else {
            p.exec_id
        },
        container_id: p.container_id,
        pid: p.pid,
        status: wire_status(p.status) as i32,
        stdin: p.stdin,
        stdout: p.stdout,
        stderr: p.stderr,
        terminal: p.terminal,
        exit_status: p.exit_status,
        exited_at: p.exited_at.map(Into::into),
    }
}

fn deleted(id: String, d: tasks::Deleted) -> pb::DeleteResponse {
    pb::DeleteResponse {
        id,
        pid: d.pid,
        exit_status: d.exit_status,
        exited_at: d.exited_at.map(Into::into),
    }
}

fn checkpoint_unimplemented() -> Status {
    Status::unimplemented(
        "checkpoint/restore is not supported by berthd (no CRIU integration); stop and recreate the task instead",
    )
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Service for TasksService {
    async fn create(&self, req: Request<pb::CreateTaskRequest>) -> Reply<pb::CreateTaskResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.checkpoint.is_some() {
            return Err(checkpoint_unimplemented());
        }
        let create = CreateTask {
            container_id: r.container_id.clone(),
            rootfs: convert::mounts(r.rootfs),
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            terminal: r.terminal,
            options: r.options,
            log: None,
        };
        let pid = self.tasks.create(&ns, create).await?;
        Ok(Response::new(pb::CreateTaskResponse {
            container_id: r.container_id,
            pid,
        }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Reply<pb::StartResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let pid = self.tasks.start(&ns, &r.container_id, &r.exec_id).await?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    async fn delete(&self, req: Request<pb::DeleteTaskRequest>) -> Reply<pb::DeleteResponse> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        let d = self.tasks.delete(&ns, &id).await?;
        Ok(Response::new(deleted(id, d)))
    }

    async fn delete_process(
        &self,
        req: Request<pb::DeleteProcessRequest>,
    ) -> Reply<pb::DeleteResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let d = self
            .tasks
            .delete_process(&ns, &r.container_id, &r.exec_id)
            .await?;
        Ok(Response::new(deleted(r.exec_id, d)))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Reply<pb::GetResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let p = self.tasks.state(&ns, &r.container_id, &r.exec_id).await?;
        Ok(Response::new(pb::GetResponse {
            process: Some(to_wire(p)),
        }))
    }

    async fn list(&self, req: Request<pb::ListTasksRequest>) -> Reply<pb::ListTasksResponse> {
        let ns = namespace(&req)?;
        let all = self
            .tasks
            .list(&ns, std::slice::from_ref(&req.get_ref().filter))?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: all.into_iter().map(to_wire).collect(),
        }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let kill = Kill {
            exec_id: r.exec_id,
            signal: r.signal,
            all: r.all,
        };
        self.tasks.kill(&ns, &r.container_id, kill).await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, req: Request<pb::ExecProcessRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let exec = ExecProcess {
            exec_id: r.exec_id,
            terminal: r.terminal,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            spec: r.spec,
        };
        self.tasks.exec(&ns, &r.container_id, exec).await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.tasks
            .resize_pty(&ns, &r.container_id, &r.exec_id, r.width, r.height)
            .await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.tasks
            .close_io(&ns, &r.container_id, &r.exec_id, r.stdin)
            .await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, req: Request<pb::PauseTaskRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        self.tasks.pause(&ns, &req.get_ref().container_id).await?;
        Ok(Response::new(()))
    }

    async fn resume(&self, req: Request<pb::ResumeTaskRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        self.tasks.resume(&ns, &req.get_ref().container_id).await?;
        Ok(Response::new(()))
    }

    async fn list_pids(&self, req: Request<pb::ListPidsRequest>) -> Reply<pb::ListPidsResponse> {
        let ns = namespace(&req)?;
        let pids = self.tasks.pids(&ns, &req.get_ref().container_id).await?;
        let processes = pids
            .into_iter()
            .map(|p| task_types::ProcessInfo {
                pid: p.pid,
                info: p.info,
            })
            .collect();
        Ok(Response::new(pb::ListPidsResponse { processes }))
    }

    async fn checkpoint(
        &self,
        _req: Request<pb::CheckpointTaskRequest>,
    ) -> Reply<pb::CheckpointTaskResponse> {
        Err(checkpoint_unimplemented())
    }

    async fn update(&self, req: Request<pb::UpdateTaskRequest>) -> Reply<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.tasks
            .update(&ns, &r.container_id, r.resources, r.annotations)
            .await?;
        Ok(Response::new(()))
    }

    async fn metrics(&self, req: Request<pb::MetricsRequest>) -> Reply<pb::MetricsResponse> {
        let ns = namespace(&req)?;
        let all = self.tasks.metrics(&ns, &req.get_ref().filters).await?;
        let now = std::time::SystemTime::now();
        let metrics = all
            .into_iter()
            .map(|(id, data)| berth_api::types::Metric {
                timestamp: Some(now.into()),
                id,
                data,
            })
            .collect();
        Ok(Response::new(pb::MetricsResponse { metrics }))
    }

    async fn wait(&self, req: Request<pb::WaitRequest>) -> Reply<pb::WaitResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let exit = self.tasks.wait(&ns, &r.container_id, &r.exec_id).await?;
        Ok(Response::new(pb::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.at.into()),
        }))
    }
}
