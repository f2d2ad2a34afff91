//! One task: its shim connection, and the calls berthd makes on it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use berth_api::runc::v1::Options as RuncOptions;
use berth_api::shim::v1 as sp;
use prost::Message;
use tokio::sync::watch;

use super::bundle::{self, RuntimeInfo};
use super::known::{Change, Known};
use super::shim::{self, Client};
use super::{Error, Inner, RUNC_RUNTIMES};
use crate::store::containers::Container;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status (128 + signal when killed).
    pub status: u32,
    /// When it was seen.
    pub at: SystemTime,
}

/// What Tasks.Create carries, decoded.
#[derive(Debug, Clone)]
pub struct CreateTask {
    /// The container record the task runs.
    pub container: Container,
    /// Mounts that make up the rootfs (mounted on `<bundle>/rootfs`).
    pub rootfs: Vec<berth_api::types::Mount>,
    /// stdin fifo/URI.
    pub stdin: String,
    /// stdout fifo/URI.
    pub stdout: String,
    /// stderr fifo/URI.
    pub stderr: String,
    /// Whether to give the process a pty.
    pub terminal: bool,
    /// Task options (`containerd.runc.v1.Options`), over the container's.
    pub options: Option<prost_types::Any>,
}

/// A live (or dead-shim) task.
pub struct Task {
    /// Namespace.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Init pid.
    pub pid: u32,
    /// The shim's pid.
    pub shim_pid: u32,
    pub(super) info: RuntimeInfo,
    client: Client,
    /// Serialises Delete with dead-shim cleanup.
    op: tokio::sync::Mutex<()>,
    /// Set from just before the shim's Delete: the shim is expected to exit.
    pub(super) deleting: AtomicBool,
    /// Some once the shim is known dead.
    dead: watch::Sender<Option<Exit>>,
    /// True once the event pump has finished.
    pub(super) pump_done: watch::Sender<bool>,
    /// The init process as last known, for List.
    known: Known,
}

fn decode_options(any: &prost_types::Any) -> Result<RuncOptions, Error> {
    if !any.type_url.ends_with("containerd.runc.v1.Options") {
        return Err(Error::InvalidArgument(format!(
            "options: unsupported type {:?} (want containerd.runc.v1.Options)",
            any.type_url
        )));
    }
    RuncOptions::decode(any.value.as_slice())
        .map_err(|e| Error::InvalidArgument(format!("options: {e}")))
}

/// The runtime binary and options for a Create: the task's options win
/// over the container's, and berthd's defaults fill in the rest: the
/// binary from its config, and a runtime `--root` of its own per
/// namespace (`runtime_root`), so its containers never collide with
/// another daemon's in the runtime's global state.
fn runtime_for(
    default: &str,
    runtime_root: &std::path::Path,
    req: &CreateTask,
) -> Result<(RuntimeInfo, Option<prost_types::Any>), Error> {
    let rt = &req.container.runtime;
    if !RUNC_RUNTIMES.contains(&rt.name.as_str()) {
        return Err(Error::FailedPrecondition(format!(
            "runtime {:?}: not supported (berthd serves {})",
            rt.name,
            RUNC_RUNTIMES.join(", ")
        )));
    }
    let options = req
        .options
        .clone()
        .filter(|a| !a.value.is_empty() || !a.type_url.is_empty())
        .or_else(|| rt.options.clone().map(Into::into));
    let mut o = match &options {
        Some(any) => decode_options(any)?,
        None => RuncOptions::default(),
    };
    if o.root.is_empty() {
        o.root = runtime_root.display().to_string();
    }
    let info = RuntimeInfo {
        runtime_binary: if o.binary_name.is_empty() {
            default.to_string()
        } else {
            o.binary_name.clone()
        },
        runtime_root: Some(o.root.clone()),
    };
    if shim::find_binary(&info.runtime_binary).is_none() {
        return Err(Error::FailedPrecondition(format!(
            "runtime binary {:?}: not found (neither a file nor on PATH)",
            info.runtime_binary
        )));
    }
    let options = prost_types::Any {
        type_url: berth_api::type_urls::RUNC_OPTIONS.to_string(),
        value: o.encode_to_vec(),
    };
    Ok((info, Some(options)))
}

/// Creates the task's bundle and shim; see [`super::TaskManager::create`].
pub(super) async fn create(inner: &Inner, ns: &str, req: CreateTask) -> Result<Task, Error> {
    let id = req.container.id.clone();
    let runtime_root = inner.state.join(".runc").join(ns);
    let (info, options) = runtime_for(&inner.default_runtime, &runtime_root, &req)?;
    let spec = req
        .container
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("container.Spec must be set".into()))?;
    match serde_json::from_slice::<serde_json::Value>(&spec.value) {
        Ok(v) if v.is_object() => {}
        Ok(_) => {
            return Err(Error::InvalidArgument(
                "spec: the OCI spec must be a JSON object".into(),
            ))
        }
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "spec: invalid OCI spec JSON: {e}"
            )))
        }
    }
    let dir = bundle::path(&inner.state, ns, &id);
    if dir.exists() {
        // Left by a task that is no longer in the table: its shim is gone.
        tracing::warn!(namespace = ns, id, bundle = %dir.display(), "removing a stale bundle");
        bundle::cleanup(&dir, &id, &bundle::runtime_info(&dir, &info.runtime_binary)).await;
    }
    bundle::create(&dir, &spec.value, &info)?;
    match start_shim(inner, ns, &id, &dir, &info, options, &req).await {
        Ok(t) => Ok(t),
        Err((e, shim_pid)) => {
            if let Some(pid) = shim_pid.or_else(|| shim::read_shim_pid(&dir)) {
                shim::kill(pid).await;
            }
            bundle::cleanup(&dir, &id, &info).await;
            Err(e)
        }
    }
}

async fn start_shim(
    inner: &Inner,
    ns: &str,
    id: &str,
    dir: &std::path::Path,
    info: &RuntimeInfo,
    options: Option<prost_types::Any>,
    req: &CreateTask,
) -> Result<Task, (Error, Option<u32>)> {
    let socket_dir = inner.state.join(".s");
    let t0 = std::time::Instant::now();
    let address = shim::launch(&shim::LaunchArgs {
        namespace: ns,
        id,
        bundle: dir,
        address: &inner.address,
        runtime: &info.runtime_binary,
        socket_dir: &socket_dir,
    })
    .await
    .map_err(|e| (e, None))?;
    let mut client = shim::connect(&address).await.map_err(|e| (e, None))?;
    let hs = client
        .handshake(())
        .await
        .map_err(|e| (Error::Launch(format!("handshake: {}", e.message())), None))?
        .into_inner();
    let shim_pid = Some(hs.shim_pid);
    let launch_ms = t0.elapsed().as_millis() as u64;
    let created = client
        .create(sp::CreateRequest {
            id: id.to_string(),
            bundle: dir.display().to_string(),
            rootfs: req.rootfs.clone(),
            terminal: req.terminal,
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            options,
            runtime_binary: info.runtime_binary.clone(),
            namespace: ns.to_string(),
            log: None,
        })
        .await
        .map_err(|e| (Error::Shim(e), shim_pid))?
        .into_inner();
    tracing::info!(
        namespace = ns,
        id,
        pid = created.pid,
        shim_pid = hs.shim_pid,
        launch_ms,
        create_ms = t0.elapsed().as_millis() as u64 - launch_ms,
        "task created"
    );
    Ok(Task::new(
        ns,
        id,
        dir.to_path_buf(),
        created.pid,
        hs.shim_pid,
        info.clone(),
        client,
    )
    .with_known(sp::StateResponse {
        id: id.to_string(),
        pid: created.pid,
        status: berth_api::task_types::Status::Created as i32,
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: req.terminal,
        bundle: dir.display().to_string(),
        ..Default::default()
    }))
}

impl Task {
    pub(super) fn new(
        ns: &str,
        id: &str,
        bundle: PathBuf,
        pid: u32,
        shim_pid: u32,
        info: RuntimeInfo,
        client: Client,
    ) -> Self {
        Self {
            namespace: ns.to_string(),
            id: id.to_string(),
            bundle,
            pid,
            shim_pid,
            info,
            client,
            op: tokio::sync::Mutex::new(()),
            deleting: AtomicBool::new(false),
            dead: watch::channel(None).0,
            pump_done: watch::channel(false).0,
            known: Known::new(sp::StateResponse {
                id: id.to_string(),
                pid,
                status: berth_api::task_types::Status::Created as i32,
                ..Default::default()
            }),
        }
    }

    /// Starts the known state from the shim's answer about init.
    pub(super) fn with_known(self, state: sp::StateResponse) -> Self {
        self.known.remember(state);
        self
    }

    /// Applies a change of the init process reported by a call or event.
    pub fn note(&self, change: Change) {
        self.known.note(change);
    }

    /// The init process's state without a call to the shim (see
    /// [`super::known`]); a dead shim's task reads as stopped (137).
    pub fn known_state(&self) -> sp::StateResponse {
        match self.dead() {
            Some(exit) => self.dead_state(exit),
            None => self.known.get(),
        }
    }

    /// A shim client for one call (clones share the connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The exit recorded when the shim died, if it did.
    pub fn dead(&self) -> Option<Exit> {
        *self.dead.borrow()
    }

    fn check_alive(&self) -> Result<(), Error> {
        match self.dead() {
            Some(_) => Err(Error::NotFound(format!(
                "task {:?}: its shim died; the task is stopped",
                self.id
            ))),
            None => Ok(()),
        }
    }

    /// A live client, or NotFound for a task whose shim died.
    pub fn live_client(&self) -> Result<Client, Error> {
        self.check_alive()?;
        Ok(self.client())
    }

    fn dead_state(&self, exit: Exit) -> sp::StateResponse {
        sp::StateResponse {
            id: self.id.clone(),
            exec_id: String::new(),
            pid: self.pid,
            status: berth_api::task_types::Status::Stopped as i32,
            exit_status: exit.status,
            exited_at: Some(crate::services::convert::timestamp(exit.at)),
            bundle: self.bundle.display().to_string(),
            ..Default::default()
        }
    }

    /// The state of a process (`exec_id` empty: init). A dead shim's task
    /// reads as stopped with status 137.
    pub async fn state(&self, exec_id: &str) -> Result<sp::StateResponse, Error> {
        if let Some(exit) = self.dead() {
            if !exec_id.is_empty() {
                return Err(Error::NotFound(format!("process {exec_id:?}: not found")));
            }
            return Ok(self.dead_state(exit));
        }
        let res = self
            .client()
            .state(sp::ProcessRequest {
                exec_id: exec_id.to_string(),
            })
            .await;
        match res {
            Ok(r) => {
                let r = r.into_inner();
                if exec_id.is_empty() {
                    self.known.remember(r.clone());
                }
                Ok(r)
            }
            Err(e) => {
                self.after_failure(e, exec_id).await?;
                Ok(self.dead_state(self.dead().unwrap_or_else(super::dead_exit)))
            }
        }
    }

    /// Waits for a process to exit. Ends with 137 if the shim dies.
    pub async fn wait(&self, exec_id: &str) -> Result<Exit, Error> {
        let mut dead = self.dead.subscribe();
        let mut client = self.client();
        let call = client.wait(sp::ProcessRequest {
            exec_id: exec_id.to_string(),
        });
        tokio::select! {
            r = call => match r {
                Ok(r) => {
                    let r = r.into_inner();
                    let exit = Exit {
                        status: r.exit_status,
                        at: crate::services::convert::system_time(r.exited_at.as_ref()).unwrap_or_else(SystemTime::now),
                    };
                    if exec_id.is_empty() {
                        self.known.note(Change::Exited(exit));
                    }
                    Ok(exit)
                }
                Err(e) => {
                    self.after_failure(e, exec_id).await?;
                    Ok(self.dead().unwrap_or_else(super::dead_exit))
                }
            },
            exit = async { dead.wait_for(|d| d.is_some()).await.ok().and_then(|d| *d) } => {
                Ok(exit.unwrap_or_else(super::dead_exit))
            }
        }
    }

    /// Whether a failed call means the shim went away: a broken
    /// connection whose shim pid is gone (it may take a moment to exit).
    async fn shim_gone(&self, e: &tonic::Status) -> bool {
        use std::error::Error as _;
        let broken = e.source().is_some()
            || matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Cancelled);
        broken && shim::wait_gone(self.shim_pid, Duration::from_secs(2)).await
    }

    /// After a failed shim call: if the shim is gone, wait (briefly) for
    /// the pump to record it dead and report that; else the call's error.
    async fn after_failure(&self, e: tonic::Status, exec_id: &str) -> Result<(), Error> {
        if !self.shim_gone(&e).await {
            return Err(Error::Shim(e));
        }
        let mut dead = self.dead.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), dead.wait_for(|d| d.is_some())).await;
        if exec_id.is_empty() && self.dead().is_some() {
            return Ok(());
        }
        Err(Error::NotFound(format!(
            "task {:?}: its shim died; the task is stopped",
            self.id
        )))
    }

    /// Deletes the init process; see [`super::TaskManager::delete`].
    pub(super) async fn delete(&self, inner: &Inner) -> Result<(u32, Exit), Error> {
        let _op = self.op.lock().await;
        if let Some(exit) = self.dead() {
            return Ok((self.pid, exit));
        }
        self.deleting.store(true, Ordering::SeqCst);
        let res = self
            .client()
            .delete(sp::ProcessRequest {
                exec_id: String::new(),
            })
            .await;
        let r = match res {
            Ok(r) => r.into_inner(),
            Err(e) => {
                self.deleting.store(false, Ordering::SeqCst);
                if !self.shim_gone(&e).await {
                    return Err(Error::Shim(e));
                }
                drop(_op);
                self.handle_dead(inner).await;
                return Ok((self.pid, self.dead().unwrap_or_else(super::dead_exit)));
            }
        };
        // The shim has deleted the container and unmounted its rootfs; it
        // exits once its last events are acknowledged. Waiting for that
        // (and removing the bundle) is off the reply's path: the bundle is
        // moved aside first, so the id is free at once.
        let dir = bundle::move_to_trash(&inner.state, &self.bundle);
        let mut done = self.pump_done.subscribe();
        let (ns, id, shim_pid) = (self.namespace.clone(), self.id.clone(), self.shim_pid);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
            if !shim::wait_gone(shim_pid, Duration::from_secs(2)).await {
                tracing::warn!(namespace = %ns, id = %id, shim_pid, "shim did not exit after delete; killing it");
                shim::kill(shim_pid).await;
            }
            let _ = tokio::task::spawn_blocking(move || bundle::remove(&dir)).await;
        });
        let exit = Exit {
            status: r.exit_status,
            at: crate::services::convert::system_time(r.exited_at.as_ref())
                .unwrap_or_else(SystemTime::now),
        };
        tracing::info!(namespace = %self.namespace, id = %self.id, status = exit.status, "task deleted");
        Ok((r.pid, exit))
    }

    /// Cleans up after a shim that died and reports the task stopped with
    /// status 137 (once).
    pub(super) async fn handle_dead(&self, inner: &Inner) {
        let _op = self.op.lock().await;
        if self.dead().is_some() {
            return;
        }
        tracing::warn!(namespace = %self.namespace, id = %self.id, shim_pid = self.shim_pid, "shim died; cleaning up its task");
        bundle::cleanup(&self.bundle, &self.id, &self.info).await;
        let exit = super::dead_exit();
        self.dead.send_replace(Some(exit));
        inner.publish_dead_exit(self, exit, false);
    }

    /// Marks a task dead without publishing (recovery found it so).
    pub(super) fn mark_dead(&self, exit: Exit) {
        self.dead.send_replace(Some(exit));
    }
}
