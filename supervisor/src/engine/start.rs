//! Start: a new run of a created or stopped container, on the same rootfs.
//! Its published ports are bound, its network namespace made and its
//! networks attached (the published ports on the first), its hosts file
//! written (and its peers'), its stdin fifo opened when it keeps stdin
//! open, and its task created with the json-file log the shim writes, then
//! started. A failure undoes what was done and records why.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::blocking;
use super::model::{EndpointState, PortSpec, Status};
use super::{files, ports, Engine, Error, Result, RunMark, Slot};
use crate::netman::{Attach, Kind};
use crate::tasks::{CreateTask, LogFile};

/// Who asked for a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum By {
    /// a user (start, restart, run): the restart count starts over
    User,
    /// the restart policy
    Policy,
}

impl Engine {
    /// Starts container `what` (a no-op when it runs); its init pid.
    /// `tty_size` is applied to its terminal before the process starts.
    pub async fn start(
        &self,
        ns: &str,
        what: &str,
        tty_size: Option<(u16, u16)>,
    ) -> Result<(String, u32)> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let pid = self.start_locked(&slot, tty_size, By::User).await?;
        Ok((slot.id.clone(), pid))
    }

    /// Start with the container's lock held.
    pub(super) async fn start_locked(
        &self,
        slot: &Arc<Slot>,
        tty_size: Option<(u16, u16)>,
        by: By,
    ) -> Result<u32> {
        let rec = slot.record();
        match rec.state.status {
            Status::Running => return Ok(rec.state.pid),
            Status::Paused => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is paused: unpause it instead",
                    rec.name
                )))
            }
            Status::Removing => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is being removed",
                    rec.name
                )))
            }
            _ => {}
        }
        let (ns, id) = (slot.ns.as_str(), slot.id.as_str());
        let tasks = &self.deps().tasks;
        if tasks.exists(ns, id) {
            // a task left by an earlier run (or started through the task API)
            match tasks.delete(ns, id).await {
                Ok(_) => {}
                Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::FailedPrecondition(format!(
                        "container {}: a task outside this workflow is in the way: {e}",
                        rec.name
                    )))
                }
            }
        }
        self.teardown_network(slot).await;

        let mut wanted: Vec<PortSpec> = rec.config.ports.clone();
        if rec.config.publish_all {
            for p in ports::exposed_ports(&rec.exposed) {
                if !wanted
                    .iter()
                    .any(|w| w.container_port == p.container_port && w.protocol == p.protocol)
                {
                    wanted.push(p);
                }
            }
        }
        let held = ports::bind_all(&mut wanted)?;
        let run = rec.state.runs + 1;
        let started = self.start_run(slot, &wanted, tty_size).await;
        let (pid, endpoints, stdin) = match started {
            Ok(x) => x,
            Err(e) => {
                drop(held);
                self.teardown_network(slot).await;
                let msg = e.to_string();
                let _ = self
                    .update(slot, |r| {
                        r.state.error = msg;
                    })
                    .await;
                return Err(e);
            }
        };
        *slot.ports.lock().unwrap_or_else(|p| p.into_inner()) = held;
        *slot.stdin.lock().unwrap_or_else(|p| p.into_inner()) = stdin;
        let rec = self
            .update(slot, |r| {
                let s = &mut r.state;
                s.status = Status::Running;
                s.pid = pid;
                s.started_at = Some(SystemTime::now());
                s.error.clear();
                s.runs = run;
                s.ports = wanted.clone();
                s.endpoints = endpoints.clone();
                s.manually_stopped = false;
                if by == By::User {
                    s.restart_count = 0;
                }
            })
            .await?;
        slot.run.send_replace(RunMark {
            run,
            running: true,
            exit_code: 0,
            removed: false,
        });
        self.refresh_hosts(&rec.config.networks).await;
        self.spawn_monitor(Arc::clone(slot), run);
        tracing::info!(namespace = ns, id, name = %rec.name, pid, run, "container started");
        Ok(pid)
    }

    /// The run's network, stdio and task; on failure its task is gone
    /// (the caller undoes the network).
    async fn start_run(
        &self,
        slot: &Arc<Slot>,
        ports: &[PortSpec],
        tty_size: Option<(u16, u16)>,
    ) -> Result<(u32, Vec<EndpointState>, Option<Arc<std::fs::File>>)> {
        let rec = slot.record();
        let (ns, id) = (slot.ns.as_str(), slot.id.as_str());
        let endpoints = self.setup_network(slot, ports).await?;
        let own = self.own_hosts(&rec, &endpoints);
        let hosts_path = rec.dir.join("hosts");
        let peers = self.peer_hosts(ns, id, &rec.config.networks);
        let text = files::hosts(&own, &peers);
        blocking(move || files::write_in_place(&hosts_path, &text)).await?;

        let stdin_dir = self.cfg().state.join("engine").join(id);
        let (stdin_path, stdin) = if rec.config.open_stdin {
            let dir = stdin_dir.clone();
            let (p, f) = blocking(move || {
                std::fs::create_dir_all(&dir).map_err(Error::io("create stdin dir", &dir))?;
                let p = dir.join("stdin");
                let _ = std::fs::remove_file(&p);
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| Error::io("mkfifo", &p)(e.into()))?;
                // read-write: open without a reader, and the shim's reader
                // sees no end of input while berthd holds it
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&p)
                    .map_err(Error::io("open stdin fifo", &p))?;
                Ok((p, f))
            })
            .await?;
            (p.display().to_string(), Some(Arc::new(f)))
        } else {
            (String::new(), None)
        };
        let rootfs = self
            .deps()
            .snapshots
            .mounts(ns, &rec.snapshotter, id)
            .await?;
        let tasks = &self.deps().tasks;
        tasks
            .create(
                ns,
                CreateTask {
                    container_id: id.to_string(),
                    rootfs,
                    stdin: stdin_path,
                    stdout: String::new(),
                    stderr: String::new(),
                    terminal: rec.config.tty,
                    options: None,
                    log: Some(LogFile {
                        path: rec.log_path().display().to_string(),
                        cri_format: false,
                        max_size: rec.config.log.max_size,
                        max_files: rec.config.log.max_files,
                    }),
                },
            )
            .await?;
        let started = async {
            if rec.config.tty {
                if let Some((w, h)) = tty_size.or(rec.config.tty_size) {
                    tasks.resize_pty(ns, id, "", w as u32, h as u32).await?;
                }
            }
            Ok::<_, Error>(tasks.start(ns, id, "").await?)
        }
        .await;
        match started {
            Ok(pid) => Ok((pid, endpoints, stdin)),
            Err(e) => {
                let _ = tasks
                    .kill(
                        ns,
                        id,
                        crate::tasks::Kill {
                            exec_id: String::new(),
                            signal: libc::SIGKILL as u32,
                            all: true,
                        },
                    )
                    .await;
                let _ = tasks.delete(ns, id).await;
                Err(e)
            }
        }
    }

    /// Makes the run's network namespace and attaches its networks; on
    /// failure what was attached is detached.
    async fn setup_network(
        &self,
        slot: &Arc<Slot>,
        ports: &[PortSpec],
    ) -> Result<Vec<EndpointState>> {
        let rec = slot.record();
        if !rec.uses_netns() {
            return Ok(Vec::new());
        }
        let path = self.netns_path(&slot.id);
        let (dir, name) = (self.cfg().state.join("netns"), slot.id.clone());
        blocking(move || {
            let p = dir.join(&name);
            crate::network::netns::remove(&p)?;
            crate::network::netns::create(&dir, &name)?;
            Ok(())
        })
        .await?;
        let mut endpoints = Vec::new();
        let mut published = false;
        for (i, net) in rec.config.networks.iter().enumerate() {
            if !matches!(self.deps().networks.kind(net).await?, Kind::Bridge(_)) {
                continue;
            }
            let a = Attach {
                network: net.clone(),
                container_id: slot.id.clone(),
                netns: path.clone(),
                ifname: format!("eth{i}"),
                ports: if published {
                    Vec::new()
                } else {
                    ports.iter().map(ports::mapping).collect()
                },
            };
            published = true;
            let ep = self.deps().networks.attach(&a).await?;
            endpoints.push(EndpointState {
                network: ep.network,
                ifname: ep.ifname,
                ip: ep.ip,
                gateway: ep.gateway,
                mac: ep.mac,
            });
        }
        Ok(endpoints)
    }

    /// Detaches every network of a container and removes its network
    /// namespace. Idempotent; failures are logged (a later call retries).
    pub(super) async fn teardown_network(&self, slot: &Slot) {
        let nets = &self.deps().networks;
        let path = self.netns_path(&slot.id);
        match nets.attachments_of(&slot.id).await {
            Ok(list) => {
                for a in list {
                    if let Err(e) = nets
                        .detach(&a.network, &slot.id, &a.ifname, Some(&path))
                        .await
                    {
                        tracing::warn!(id = %slot.id, network = %a.network, error = %e, "detach failed");
                    }
                }
            }
            Err(e) => tracing::warn!(id = %slot.id, error = %e, "listing attachments failed"),
        }
        let _ = blocking(move || Ok(crate::network::netns::remove(&path)?)).await;
    }
}
