//! Create, start and delete: the verbs that mount, run the runtime and
//! clean up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_api::events as ev;
use berth_snapshotter::mount::{self, Mount};

use crate::bundle::{self, write_file};
use crate::console::ConsoleSocket;
use crate::error::{Error, Result};
use crate::process::Proc;
use crate::reaper::Exit;
use crate::runtime::{read_pid_file, ChildStdio, Runtime, RuntimeError};
use crate::stdio::{self, ProcessIo, StdioPaths};
use crate::task::{Container, Live, Task};
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

/// An exit for a process whose exit was never recorded.
fn no_exit(pid: u32) -> Exit {
    Exit {
        pid,
        status: 0,
        at: std::time::SystemTime::now(),
    }
}

impl Task {
    /// Mounts the rootfs and runs `runtime create`. Returns the init pid.
    /// On failure nothing is left: no mount, no runtime state.
    pub async fn create(self: &Arc<Self>, opts: CreateOpts) -> Result<u32> {
        let _op = self.op.lock().await;
        if !matches!(*self.lock(), Container::Empty) {
            return Err(Error::AlreadyExists(format!(
                "task {:?} already exists",
                self.id
            )));
        }
        let config = self.bundle.config();
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
            self.bundle.path(),
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
        let rootfs = self.bundle.rootfs();
        if !mounts.is_empty() {
            bundle::create_dirs(&rootfs)
                .map_err(Error::io(format!("create {}", rootfs.display())))?;
            mount::mount_all(&mounts, &rootfs)?;
        }
        let (pid, mut io) = match self.run_process(&runtime, "", &opts.paths).await {
            Ok(v) => v,
            Err(e) => {
                let _ = runtime.delete(&self.id, true).await;
                if !mounts.is_empty() {
                    let _ = mount::unmount(&rootfs);
                }
                let _ = std::fs::remove_file(self.bundle.pid_file(""));
                return Err(e);
            }
        };
        if let Err(e) = runtime.save(self.bundle.path()) {
            tracing::warn!(error = %e, "could not record the runtime in the bundle");
        }
        let cgroup = cgroup::Cgroup::of_pid(pid);
        let mut init = Proc::new("", opts.paths.clone(), Vec::new());
        init.pid = pid;
        let output_done = io.take_output_done();
        init.io = Some(io);
        let oom = cgroup.as_ref().and_then(|cg| {
            let weak = Arc::downgrade(self);
            oom::watch(cg, move || {
                if let Some(t) = weak.upgrade() {
                    t.on_oom();
                }
            })
        });
        *self.lock() = Container::Live(Box::new(Live {
            runtime,
            init,
            execs: HashMap::new(),
            cgroup,
            oom,
            rootfs_mounted: !mounts.is_empty(),
            own_pid_ns,
        }));
        self.events.publish(
            "/tasks/create",
            "TaskCreate",
            &ev::TaskCreate {
                container_id: self.id.clone(),
                bundle: self.bundle.path().display().to_string(),
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
        let pid_file = self.bundle.pid_file(exec_id);
        let _ = std::fs::remove_file(&pid_file);
        let (io, console_socket) = if paths.terminal {
            let name = if exec_id.is_empty() {
                "console".to_string()
            } else {
                format!("console-{exec_id}")
            };
            let sock = ConsoleSocket::bind(self.bundle.path(), &name)
                .map_err(Error::io("console socket"))?;
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
                    self.bundle.path(),
                    &pid_file,
                    console_path.as_deref(),
                    child,
                )
                .await?;
        } else {
            let spec = self.bundle.process_file(exec_id);
            runtime
                .exec(&self.id, &spec, &pid_file, console_path.as_deref(), child)
                .await?;
        }
        let pid = read_pid_file(&pid_file).map_err(Error::io("read pid file"));
        // The runtime wrote it 0644.
        let _ = bundle::make_private(&pid_file);
        if let Some(sock) = console_socket {
            let attached = match sock.receive().await {
                Ok(console) => stdio::attach_console(console, paths).map_err(Error::from),
                Err(e) => Err(Error::io("receive pty master")(e)),
            };
            match attached {
                Ok(attached) => io = attached,
                Err(e) => {
                    // The runtime started the process: a failed exec or
                    // create leaves nothing running (the caller deletes a
                    // created container).
                    if let (Ok(pid), false) = (&pid, exec_id.is_empty()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(*pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    return Err(e);
                }
            }
        }
        Ok((pid?, io))
    }

    /// Starts the init process (`runtime start`) or an exec'd one
    /// (`runtime exec --detach`). Returns its pid.
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let _op = self.op.lock().await;
        let (runtime, paths, spec) = {
            let mut st = self.lock();
            let live = st.live_mut().map_err(|_| crate::task::not_found(exec_id))?;
            let runtime = live.runtime.clone();
            if !exec_id.is_empty() {
                // An exec starts only in a live container.
                live.init
                    .phase
                    .can_exec()
                    .map_err(|r| r.error(&self.name("")))?;
            }
            let p = live.proc_mut(exec_id)?;
            p.phase
                .can_start()
                .map_err(|r| r.error(&self.name(exec_id)))?;
            p.phase.starting();
            (runtime, p.paths.clone(), p.spec.clone())
        };
        if exec_id.is_empty() {
            return self.start_init(&runtime).await;
        }
        let file = self.bundle.process_file(exec_id);
        let res = match write_file(&file, &spec) {
            Ok(()) => self.run_process(&runtime, exec_id, &paths).await,
            Err(e) => Err(Error::io(format!("write {}", file.display()))(e)),
        };
        let _ = std::fs::remove_file(&file);
        let mut st = self.lock();
        let live = st.live_mut()?;
        let p = live.proc_mut(exec_id)?;
        let (pid, mut io) = match res {
            Ok(v) => v,
            Err(e) => {
                p.phase.start_done(false);
                return Err(e);
            }
        };
        let output_done = io.take_output_done();
        p.pid = pid;
        p.phase.start_done(true);
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
        drop(st);
        self.watch_exit(exec_id, pid, output_done);
        tracing::info!(exec_id, pid, "exec started");
        Ok(pid)
    }

    /// `runtime start`; TaskStart, then the exit if it came meanwhile.
    async fn start_init(&self, runtime: &Runtime) -> Result<u32> {
        let res = runtime.start(&self.id).await;
        let mut st = self.lock();
        let live = st.live_mut()?;
        live.init.phase.start_done(res.is_ok());
        if let Err(e) = res {
            self.report_exits(live, false);
            return Err(e.into());
        }
        let pid = live.init.pid;
        self.events.publish(
            "/tasks/start",
            "TaskStart",
            &ev::TaskStart {
                container_id: self.id.clone(),
                pid,
            },
        );
        self.report_exits(live, false);
        tracing::info!(pid, "task started");
        Ok(pid)
    }

    /// Deletes a process that is created or stopped; returns (pid, exit).
    /// Deleting init removes the runtime's container, unmounts the rootfs
    /// and makes the shim exit once its events are acknowledged.
    pub async fn delete(self: &Arc<Self>, exec_id: &str) -> Result<(u32, Exit)> {
        let _op = self.op.lock().await;
        let (runtime, pid) = {
            let st = self.lock();
            let p = st.proc(exec_id)?;
            p.phase
                .can_delete()
                .map_err(|r| r.error(&self.name(exec_id)))?;
            (st.live()?.runtime.clone(), p.pid)
        };
        if !exec_id.is_empty() {
            let p = self
                .lock()
                .live_mut()?
                .execs
                .remove(exec_id)
                .ok_or_else(|| crate::task::not_found(exec_id))?;
            let _ = std::fs::remove_file(self.bundle.pid_file(exec_id));
            if let Some(io) = p.io {
                io.shutdown().await;
            }
            return Ok((pid, p.phase.exit().unwrap_or_else(|| no_exit(pid))));
        }
        match runtime.delete(&self.id, false).await {
            Ok(()) => {}
            // Deleted behind the shim's back (`runc delete --force`).
            Err(RuntimeError::Gone { .. }) => {
                tracing::warn!("the runtime no longer knows the container");
            }
            Err(e) => {
                tracing::warn!(error = %e, "runtime delete failed; forcing");
                match runtime.delete(&self.id, true).await {
                    Ok(()) | Err(RuntimeError::Gone { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // A never-started init is killed by the runtime's delete: give the
        // reaper a moment to record that exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.wait("")).await;
        let live = {
            let mut st = self.lock();
            if let Ok(live) = st.live_mut() {
                self.report_exits(live, true);
            }
            match std::mem::replace(&mut *st, Container::Deleted) {
                Container::Live(live) => live,
                _ => return Err(crate::task::not_found("")),
            }
        };
        let Live {
            mut init,
            execs,
            oom,
            rootfs_mounted,
            ..
        } = *live;
        if let Some(h) = oom {
            h.abort();
        }
        for p in execs.into_values() {
            if let Some(io) = p.io {
                io.shutdown().await;
            }
        }
        if let Some(io) = init.io.take() {
            io.shutdown().await;
        }
        if rootfs_mounted {
            if let Err(e) = mount::unmount(&self.bundle.rootfs()) {
                tracing::error!(error = %e, "unmount rootfs");
            }
        }
        let _ = std::fs::remove_file(self.bundle.pid_file(""));
        let exit = init.phase.exit().unwrap_or_else(|| no_exit(pid));
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
