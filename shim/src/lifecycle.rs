//! Create, start and delete: the verbs that mount, run the runtime and
//! clean up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::events as ev;
use berth_snapshotter::mount::{self, Mount};

use crate::console::ConsoleSocket;
use crate::error::{Error, Result};
use crate::runtime::{read_pid_file, ChildStdio, Runtime};
use crate::stdio::{self, ProcessIo, StdioPaths};
use crate::task::{Proc, ProcStatus, Task};
use crate::{cgroup, oom};

/// What Create needs, already decoded.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// mount specs for `<bundle>/rootfs`; empty: the bundle has its rootfs
    pub rootfs: Vec<berth_api::types::Mount>,
    /// stdio
    pub paths: StdioPaths,
    /// runtime binary; empty: the shim's default
    pub runtime_binary: String,
    /// runc `--root`
    pub runtime_root: Option<String>,
}

fn null_stdio() -> std::io::Result<ChildStdio> {
    let f = || -> std::io::Result<std::os::fd::OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    Ok(ChildStdio {
        stdin: f()?,
        stdout: f()?,
        stderr: f()?,
    })
}

impl Task {
    fn rootfs_dir(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    fn pid_file(&self, exec_id: &str) -> PathBuf {
        if exec_id.is_empty() {
            self.bundle.join("init.pid")
        } else {
            self.bundle.join(format!("exec-{exec_id}.pid"))
        }
    }

    fn process_file(&self, exec_id: &str) -> PathBuf {
        self.bundle.join(format!("exec-{exec_id}.json"))
    }

    /// Mounts the rootfs and runs `runtime create`. Returns the init pid.
    /// On failure nothing is left: no mount, no runtime state.
    pub async fn create(self: &Arc<Self>, opts: CreateOpts) -> Result<u32> {
        let _op = self.op.lock().await;
        {
            let st = self.lock();
            if st.init.is_some() || st.deleted {
                return Err(Error::AlreadyExists(format!(
                    "task {:?} already exists",
                    self.id
                )));
            }
        }
        let config = self.bundle.join("config.json");
        let spec =
            std::fs::read(&config).map_err(Error::io(format!("read {}", config.display())))?;
        let spec: serde_json::Value = serde_json::from_slice(&spec)
            .map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        let own_pid_ns = spec["linux"]["namespaces"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["type"] == "pid" && n["path"].as_str().is_none_or(str::is_empty))
        });
        let binary = if opts.runtime_binary.is_empty() {
            self.default_runtime.clone()
        } else {
            opts.runtime_binary.clone()
        };
        let runtime = Runtime::new(
            &binary,
            opts.runtime_root.clone(),
            &self.bundle,
            self.reaper.clone(),
        );

        let mounts: Vec<Mount> = opts
            .rootfs
            .iter()
            .map(|m| Mount {
                kind: m.r#type.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                options: m.options.clone(),
            })
            .collect();
        let rootfs = self.rootfs_dir();
        if !mounts.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(Error::io(format!("create {}", rootfs.display())))?;
            mount::mount_all(&mounts, &rootfs)?;
        }
        let res = self.create_process(&runtime, &opts.paths).await;
        let (pid, io) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = runtime.delete(&self.id, true).await;
                if !mounts.is_empty() {
                    let _ = mount::unmount(&rootfs);
                }
                let _ = std::fs::remove_file(self.pid_file(""));
                return Err(e);
            }
        };
        if let Err(e) = runtime.save(&self.bundle) {
            tracing::warn!(error = %e, "could not record the runtime in the bundle");
        }
        let cg = cgroup::Cgroup::of_pid(pid);
        let mut init = Proc::new("", opts.paths.clone(), Vec::new());
        init.pid = pid;
        let mut io = io;
        let output_done = io.take_output_done();
        init.io = Some(io);
        {
            let mut st = self.lock();
            st.runtime = Some(runtime);
            st.rootfs_mounted = !mounts.is_empty();
            st.kill_all_on_exit = !own_pid_ns;
            if let Some(cg) = &cg {
                let weak = Arc::downgrade(self);
                st.oom = oom::watch(cg, move || {
                    if let Some(t) = weak.upgrade() {
                        t.on_oom();
                    }
                });
            }
            st.cgroup = cg;
            st.init = Some(init);
            self.events.publish(
                "/tasks/create",
                "TaskCreate",
                &ev::TaskCreate {
                    container_id: self.id.clone(),
                    bundle: self.bundle.display().to_string(),
                    rootfs: opts.rootfs.clone(),
                    io: Some(ev::TaskIo {
                        stdin: opts.paths.stdin.clone(),
                        stdout: opts.paths.stdout.clone(),
                        stderr: opts.paths.stderr.clone(),
                        terminal: opts.paths.terminal,
                    }),
                    checkpoint: String::new(),
                    pid,
                },
            );
        }
        self.watch_exit("", pid, output_done);
        tracing::info!(pid, runtime = %binary, "task created");
        Ok(pid)
    }

    /// Sets up stdio and runs the runtime's create (init) or exec; returns
    /// the new pid and the shim's side of the io.
    async fn run_process(
        &self,
        runtime: &Runtime,
        exec_id: &str,
        paths: &StdioPaths,
    ) -> Result<(u32, ProcessIo)> {
        let pid_file = self.pid_file(exec_id);
        let _ = std::fs::remove_file(&pid_file);
        let (io, console_socket) = if paths.terminal {
            let name = if exec_id.is_empty() {
                "console".to_string()
            } else {
                format!("console-{exec_id}")
            };
            let sock =
                ConsoleSocket::bind(&self.bundle, &name).map_err(Error::io("console socket"))?;
            (None, Some(sock))
        } else {
            (
                Some(stdio::prepare(paths, &self.id, &self.namespace, &self.reaper).await?),
                None,
            )
        };
        let (child, mut io) = match io {
            Some(p) => (p.child, p.io),
            None => (
                null_stdio().map_err(Error::io("open /dev/null"))?,
                ProcessIo::default(),
            ),
        };
        let console_path = console_socket.as_ref().map(|s| s.path().to_path_buf());
        if exec_id.is_empty() {
            runtime
                .create(
                    &self.id,
                    &self.bundle,
                    &pid_file,
                    console_path.as_deref(),
                    child,
                )
                .await?;
        } else {
            let spec = self.process_file(exec_id);
            runtime
                .exec(&self.id, &spec, &pid_file, console_path.as_deref(), child)
                .await?;
        }
        if let Some(sock) = console_socket {
            let console = sock
                .receive()
                .await
                .map_err(Error::io("receive pty master"))?;
            io = stdio::attach_console(console, paths)?;
        }
        let pid = read_pid_file(&pid_file).map_err(Error::io("read pid file"))?;
        Ok((pid, io))
    }

    async fn create_process(
        &self,
        runtime: &Runtime,
        paths: &StdioPaths,
    ) -> Result<(u32, ProcessIo)> {
        self.run_process(runtime, "", paths).await
    }

    /// Starts the init process (`runtime start`) or an exec'd one
    /// (`runtime exec --detach`). Returns its pid.
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let _op = self.op.lock().await;
        let (runtime, status, paths, spec) = {
            let st = self.lock();
            let p = st.proc(exec_id)?;
            (st.runtime()?, p.status, p.paths.clone(), p.spec.clone())
        };
        if status != ProcStatus::Created {
            return Err(Error::FailedPrecondition(format!(
                "process {} is not in created state",
                self.name(exec_id)
            )));
        }
        if exec_id.is_empty() {
            self.lock().proc_mut("")?.starting = true;
            let res = runtime.start(&self.id).await;
            let mut st = self.lock();
            let p = st.proc_mut("")?;
            p.starting = false;
            if let Err(e) = res {
                if std::mem::take(&mut p.exit_event_pending) {
                    let msg = self.exit_event(p);
                    self.events.publish("/tasks/exit", "TaskExit", &msg);
                }
                return Err(e.into());
            }
            p.started = true;
            if p.exit.is_none() {
                p.status = ProcStatus::Running;
            }
            let pid = p.pid;
            self.events.publish(
                "/tasks/start",
                "TaskStart",
                &ev::TaskStart {
                    container_id: self.id.clone(),
                    pid,
                },
            );
            if std::mem::take(&mut p.exit_event_pending) {
                let msg = self.exit_event(p);
                self.events.publish("/tasks/exit", "TaskExit", &msg);
            }
            tracing::info!(pid, "task started");
            return Ok(pid);
        }
        let file = self.process_file(exec_id);
        write_file(&file, &spec).map_err(Error::io(format!("write {}", file.display())))?;
        let res = self.run_process(&runtime, exec_id, &paths).await;
        let _ = std::fs::remove_file(&file);
        let (pid, mut io) = res?;
        let output_done = io.take_output_done();
        {
            let mut st = self.lock();
            let p = st.proc_mut(exec_id)?;
            p.pid = pid;
            p.status = ProcStatus::Running;
            p.started = true;
            p.io = Some(io);
            self.events.publish(
                "/tasks/exec-started",
                "TaskExecStarted",
                &ev::TaskExecStarted {
                    container_id: self.id.clone(),
                    exec_id: exec_id.to_string(),
                    pid,
                },
            );
        }
        self.watch_exit(exec_id, pid, output_done);
        tracing::info!(exec_id, pid, "exec started");
        Ok(pid)
    }

    pub(crate) fn name(&self, exec_id: &str) -> String {
        if exec_id.is_empty() {
            format!("{:?}", self.id)
        } else {
            format!("{:?} of task {:?}", exec_id, self.id)
        }
    }

    /// Deletes a process that is created or stopped; returns (pid, exit
    /// status, exit time). Deleting init removes the runtime's container,
    /// unmounts the rootfs and makes the shim exit once its events are
    /// acknowledged.
    pub async fn delete(self: &Arc<Self>, exec_id: &str) -> Result<(u32, crate::reaper::Exit)> {
        let _op = self.op.lock().await;
        let (status, runtime, pid) = {
            let st = self.lock();
            let p = st.proc(exec_id)?;
            (p.status, st.runtime()?, p.pid)
        };
        if status == ProcStatus::Running {
            return Err(Error::FailedPrecondition(format!(
                "process {} is running; kill it before deleting",
                self.name(exec_id)
            )));
        }
        if !exec_id.is_empty() {
            let p = self
                .lock()
                .execs
                .remove(exec_id)
                .ok_or_else(|| crate::task::not_found(exec_id))?;
            let _ = std::fs::remove_file(self.pid_file(exec_id));
            if let Some(io) = p.io {
                io.shutdown().await;
            }
            let exit = p.exit.unwrap_or(crate::reaper::Exit {
                pid,
                status: 0,
                at: std::time::SystemTime::now(),
            });
            return Ok((pid, exit));
        }
        if let Err(e) = runtime.delete(&self.id, false).await {
            tracing::warn!(error = %e, "runtime delete failed; forcing");
            runtime.delete(&self.id, true).await?;
        }
        // A never-started init is killed by the runtime's delete: give the
        // reaper a moment to record that exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.wait("")).await;
        self.flush_init_exit();
        let (init, execs, oom, mounted) = {
            let mut st = self.lock();
            st.deleted = true;
            let init = st.init.take();
            let execs: Vec<Proc> = st.execs.drain().map(|(_, p)| p).collect();
            (
                init,
                execs,
                st.oom.take(),
                std::mem::take(&mut st.rootfs_mounted),
            )
        };
        if let Some(h) = oom {
            h.abort();
        }
        let mut init = init.ok_or_else(|| crate::task::not_found(""))?;
        for p in execs {
            if let Some(io) = p.io {
                io.shutdown().await;
            }
        }
        if let Some(io) = init.io.take() {
            io.shutdown().await;
        }
        if mounted {
            if let Err(e) = mount::unmount(&self.rootfs_dir()) {
                tracing::error!(error = %e, "unmount rootfs");
            }
        }
        let _ = std::fs::remove_file(self.pid_file(""));
        let exit = init.exit.unwrap_or(crate::reaper::Exit {
            pid,
            status: 0,
            at: std::time::SystemTime::now(),
        });
        if init.exit_event_pending {
            let msg = self.exit_event(&init);
            self.events.publish("/tasks/exit", "TaskExit", &msg);
        }
        self.events.publish(
            "/tasks/delete",
            "TaskDelete",
            &ev::TaskDelete {
                container_id: self.id.clone(),
                pid,
                exit_status: exit.status,
                exited_at: Some(exit.at.into()),
                id: String::new(),
            },
        );
        tracing::info!(pid, status = exit.status, "task deleted");
        self.exit_after_drain(false);
        Ok((pid, exit))
    }
}

/// Writes `data` atomically (temp file, rename) without fsync. Every file
/// the shim writes lives in the bundle under berthd's state dir, which does
/// not survive a reboot (the containers do not either), so a crash can
/// only lose a process, never leave a torn file; an fsync would buy nothing
/// and costs milliseconds on every container start.
pub(crate) fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
