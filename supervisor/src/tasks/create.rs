//! Create: write the bundle, launch and connect the shim, have it create
//! the init process. On any failure nothing is left: no shim, no bundle,
//! no table entry.

use std::path::Path;
use std::sync::Arc;

use berth_api::runc::{self, v1::Options as RuncOptions};
use berth_api::shim::v1 as sp;
use berth_snapshotter::Mount;

use super::bundle::{self, RuntimeInfo};
use super::error::Error;
use super::process::{Process, Status};
use super::pump;
use super::shim;
use super::table::{Inner, Tasks};
use super::task::{Placement, Task};
use crate::store::containers::Container;

/// Runtime names served by berth-shim: containerd's runc shims and its
/// v1 Linux runtime (whose options are read as runc's, see
/// [`berth_api::runc::decode_options`]).
pub const RUNC_RUNTIMES: [&str; 3] = [
    "io.containerd.runc.v2",
    "io.containerd.runc.v1",
    runc::LINUX_V1_RUNTIME,
];

/// A task to create.
#[derive(Debug, Clone, Default)]
pub struct CreateTask {
    /// The container the task runs.
    pub container_id: String,
    /// Mounts that make up the rootfs (mounted on `<bundle>/rootfs`).
    pub rootfs: Vec<Mount>,
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
    /// A log file the shim writes stdout and stderr to itself (stdout
    /// and stderr must then be empty).
    pub log: Option<LogFile>,
}

/// A log file kept by the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Absolute path.
    pub path: String,
    /// The kubelet's CRI format (else Docker's json-file).
    pub cri_format: bool,
    /// json-file: rotate before the file passes this many bytes (0: never).
    pub max_size: u64,
    /// json-file: how many files are kept (`PATH`, `PATH.1`, ...).
    pub max_files: u32,
}

/// A stdin the shim keeps open for attachers (CRI `stdin`,
/// `stdin_once`); the task needs a [`LogFile`] and no stdin of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStdin {
    /// The first attach that ends its stdin closes the process's.
    pub once: bool,
}

/// The runtime binary and options for a Create, combined as containerd
/// does: for the runc shims the task's options, when given, replace the
/// container's; for the v1 Linux runtime the container's `RuncOptions`
/// say which runtime and where, and the task's `CreateOptions` add the
/// create flags. A runtime root from the options gets the namespace
/// appended, as containerd's shims run the runtime with `--root
/// ROOT/NAMESPACE`. berthd's defaults fill in the rest: the binary from
/// its config, and a runtime `--root` of its own per namespace
/// (`runtime_root`), so its containers never collide with another
/// daemon's in the runtime's global state.
fn runtime_for(
    default: &str,
    ns: &str,
    runtime_root: &Path,
    container: &Container,
    task_options: Option<&prost_types::Any>,
) -> Result<(RuntimeInfo, RuncOptions), Error> {
    let rt = &container.runtime;
    if !RUNC_RUNTIMES.contains(&rt.name.as_str()) {
        return Err(Error::FailedPrecondition(format!(
            "runtime {:?}: not supported (berthd serves {})",
            rt.name,
            RUNC_RUNTIMES.join(", ")
        )));
    }
    let decode = |any: &prost_types::Any| {
        runc::decode_options(any).map_err(|e| Error::InvalidArgument(e.to_string()))
    };
    let task = task_options
        .filter(|a| !a.value.is_empty() || !a.type_url.is_empty())
        .map(decode)
        .transpose()?;
    let container_options = || -> Result<RuncOptions, Error> {
        match &rt.options {
            Some(any) => decode(&any.clone().into()),
            None => Ok(RuncOptions::default()),
        }
    };
    let mut o = match task {
        Some(task) if rt.name == runc::LINUX_V1_RUNTIME => {
            runc::with_create_flags(container_options()?, task)
        }
        Some(task) => task,
        None => container_options()?,
    };
    o.root = if o.root.is_empty() {
        runtime_root.display().to_string()
    } else {
        Path::new(&o.root).join(ns).display().to_string()
    };
    let info = RuntimeInfo {
        runtime_binary: if o.binary_name.is_empty() {
            default.to_string()
        } else {
            o.binary_name.clone()
        },
        runtime_root: Some(o.root.clone()),
    };
    if runc::find_binary(&info.runtime_binary).is_none() {
        return Err(Error::FailedPrecondition(format!(
            "runtime binary {:?}: not found (neither a file nor on PATH)",
            info.runtime_binary
        )));
    }
    Ok((info, o))
}

/// Checks that the container's spec is a JSON object; returns its bytes.
fn spec_of(container: &Container) -> Result<&[u8], Error> {
    let spec = container
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("container.Spec must be set".into()))?;
    match serde_json::from_slice::<serde_json::Value>(&spec.value) {
        Ok(v) if v.is_object() => Ok(&spec.value),
        Ok(_) => Err(Error::InvalidArgument(
            "spec: the OCI spec must be a JSON object".into(),
        )),
        Err(e) => Err(Error::InvalidArgument(format!(
            "spec: invalid OCI spec JSON: {e}"
        ))),
    }
}

impl Tasks {
    /// Creates the task of container `req.container_id` (its record must
    /// exist): writes the bundle, launches and connects the shim, and has
    /// it create the init process. Returns the init pid.
    pub async fn create(&self, ns: &str, req: CreateTask) -> Result<u32, Error> {
        self.create_with_stdin(ns, req, None).await
    }

    /// [`Tasks::create`], with a stdin the shim keeps open for
    /// [`Tasks::attach`] when `stdin` is given.
    pub async fn create_with_stdin(
        &self,
        ns: &str,
        req: CreateTask,
        stdin: Option<OpenStdin>,
    ) -> Result<u32, Error> {
        let id = req.container_id.clone();
        berth_api::identifiers::validate("container_id", &id)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let container = crate::store::containers::get(&self.inner.deps.store, ns, &id)?;
        let reservation = self.reserve(ns, &id)?;
        let task = Arc::new(create(&self.inner, ns, &container, req, stdin).await?);
        pump::spawn(Arc::clone(&self.inner), Arc::clone(&task), 0);
        let pid = task.pid;
        reservation.fill(task);
        Ok(pid)
    }
}

async fn create(
    inner: &Inner,
    ns: &str,
    container: &Container,
    req: CreateTask,
    stdin: Option<OpenStdin>,
) -> Result<Task, Error> {
    let id = container.id.as_str();
    let cfg = &inner.config;
    let runtime_root = cfg.state.join(".runc").join(ns);
    let (info, options) = runtime_for(
        &cfg.default_runtime,
        ns,
        &runtime_root,
        container,
        req.options.as_ref(),
    )?;
    let spec = spec_of(container)?;
    let dir = bundle::path(&cfg.state, ns, id);
    if dir.exists() {
        // Left by a task that is no longer in the table: its shim is gone.
        tracing::warn!(namespace = ns, id, bundle = %dir.display(), "removing a stale bundle");
        bundle::cleanup(&dir, id, &bundle::runtime_info(&dir, &info.runtime_binary)).await;
    }
    bundle::create(&dir, spec, &info)?;
    let launch = Launch {
        inner,
        ns,
        id,
        dir: &dir,
        info: &info,
    };
    match launch
        .start(runc::encode_options(&options), req, stdin)
        .await
    {
        Ok(t) => Ok(t),
        Err((e, shim_pid)) => {
            if let Some(pid) = shim_pid.or_else(|| shim::read_shim_pid(&dir)) {
                shim::kill(pid).await;
            }
            bundle::cleanup(&dir, id, &info).await;
            Err(e)
        }
    }
}

/// One shim launch for a Create.
struct Launch<'a> {
    inner: &'a Inner,
    ns: &'a str,
    id: &'a str,
    dir: &'a Path,
    info: &'a RuntimeInfo,
}

impl Launch<'_> {
    /// Launches the shim and has it create the init process. On failure,
    /// the error and the shim's pid once it is known.
    async fn start(
        &self,
        options: prost_types::Any,
        req: CreateTask,
        stdin: Option<OpenStdin>,
    ) -> Result<Task, (Error, Option<u32>)> {
        let (inner, ns, id, dir, info) = (self.inner, self.ns, self.id, self.dir, self.info);
        let socket_dir = inner.config.state.join(".s");
        let t0 = std::time::Instant::now();
        let address = shim::launch(&shim::LaunchArgs {
            namespace: ns,
            id,
            bundle: dir,
            address: &inner.config.address,
            runtime: &info.runtime_binary,
            socket_dir: &socket_dir,
        })
        .await
        .map_err(|e| (e, None))?;
        let mut client = shim::connect(&address).await.map_err(|e| (e, None))?;
        let hs = shim::outcome(client.handshake(()).await)
            .map_err(|e| (Error::Launch(format!("handshake: {}", e.message)), None))?;
        let shim_pid = Some(hs.shim_pid);
        let launch_ms = t0.elapsed().as_millis() as u64;
        let created = client
            .create(sp::CreateRequest {
                id: id.to_string(),
                bundle: dir.display().to_string(),
                rootfs: shim::wire_mounts(req.rootfs),
                terminal: req.terminal,
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                options: Some(options),
                runtime_binary: info.runtime_binary.clone(),
                namespace: ns.to_string(),
                log: req.log.as_ref().map(|l| sp::LogFile {
                    path: l.path.clone(),
                    format: if l.cri_format {
                        sp::LogFormat::Cri as i32
                    } else {
                        sp::LogFormat::JsonFile as i32
                    },
                    max_size: l.max_size,
                    max_files: l.max_files,
                }),
                open_stdin: stdin.is_some(),
                stdin_once: stdin.is_some_and(|s| s.once),
            })
            .await;
        let created = shim::outcome(created).map_err(|e| (e.into(), shim_pid))?;
        tracing::info!(
            namespace = ns,
            id,
            pid = created.pid,
            shim_pid = hs.shim_pid,
            launch_ms,
            create_ms = t0.elapsed().as_millis() as u64 - launch_ms,
            "task created"
        );
        let at = Placement {
            bundle: dir.to_path_buf(),
            pid: created.pid,
            shim_pid: hs.shim_pid,
            info: info.clone(),
        };
        let events = inner.deps.events.clone();
        Ok(Task::new(ns, id, at, client, events).with_known(Process {
            status: Status::Created,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
            ..Process::created(id, created.pid)
        }))
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::containers::{AnyRec, Runtime};

    fn container(runtime: &str, options: Option<prost_types::Any>) -> Container {
        Container {
            id: "c".into(),
            labels: Default::default(),
            image: String::new(),
            runtime: Runtime {
                name: runtime.into(),
                options: options.map(AnyRec::from),
            },
            spec: None,
            snapshotter: String::new(),
            snapshot_key: String::new(),
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
            extensions: Default::default(),
            sandbox: String::new(),
        }
    }

    fn any<M: prost::Message>(type_url: &str, m: &M) -> prost_types::Any {
        prost_types::Any {
            type_url: type_url.into(),
            value: m.encode_to_vec(),
        }
    }

    #[test]
    fn v1_linux_runtime_takes_its_binary_and_root_from_runc_options() {
        use berth_api::type_urls::{LINUX_CREATE_OPTIONS, LINUX_RUNC_OPTIONS, RUNC_OPTIONS};
        let own = Path::new("/state/.runc/ns1");
        let c = container(
            runc::LINUX_V1_RUNTIME,
            Some(any(
                LINUX_RUNC_OPTIONS,
                &runc::linux::RuncOptions {
                    runtime: "sh".into(),
                    runtime_root: "/run/rt".into(),
                    ..Default::default()
                },
            )),
        );
        // The container's options alone.
        let (info, o) = runtime_for("runc", "ns1", own, &c, None).unwrap();
        assert_eq!(info.runtime_binary, "sh");
        assert_eq!(info.runtime_root.as_deref(), Some("/run/rt/ns1"));
        assert_eq!(o.root, "/run/rt/ns1");
        // The task's CreateOptions add their flags, keep the runtime.
        let flags = any(
            LINUX_CREATE_OPTIONS,
            &runc::linux::CreateOptions {
                no_pivot_root: true,
                ..Default::default()
            },
        );
        let (info, o) = runtime_for("runc", "ns1", own, &c, Some(&flags)).unwrap();
        assert_eq!(info.runtime_binary, "sh");
        assert!(o.no_pivot_root);
        // A runc shim's task options replace the container's, as before;
        // no root given: berthd's own per namespace.
        let v2 = container(
            "io.containerd.runc.v2",
            Some(any(
                RUNC_OPTIONS,
                &runc::v1::Options {
                    binary_name: "/nonexistent/runc".into(),
                    ..Default::default()
                },
            )),
        );
        let task = any(
            RUNC_OPTIONS,
            &runc::v1::Options {
                binary_name: "sh".into(),
                ..Default::default()
            },
        );
        let (info, _) = runtime_for("runc", "ns1", own, &v2, Some(&task)).unwrap();
        assert_eq!(info.runtime_binary, "sh");
        assert_eq!(info.runtime_root.as_deref(), Some("/state/.runc/ns1"));
        let err = runtime_for("runc", "ns1", own, &v2, None).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        // Unknown runtimes and option types are refused.
        let other = container("io.containerd.kata.v2", None);
        assert!(matches!(
            runtime_for("runc", "ns1", own, &other, None),
            Err(Error::FailedPrecondition(_))
        ));
        let junk = container(
            runc::LINUX_V1_RUNTIME,
            Some(prost_types::Any {
                type_url: "containerd.linux.runc.Nope".into(),
                value: vec![1],
            }),
        );
        assert!(matches!(
            runtime_for("runc", "ns1", own, &junk, None),
            Err(Error::InvalidArgument(_))
        ));
    }
}
