//! Shared pieces of the recovery tests: the busybox test image, a berthd
//! with its own containerd namespace whose guard removes everything its
//! containers left (runtime state, shims, mounts, cgroups) also when a
//! test fails, and small gRPC helpers for what `ctr` does not print
//! (exit statuses, events).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::services::events::v1 as epb;
use berth_api::services::tasks::v1 as tpb;
use berth_tests::{kill_shims_under, unmount_under, Berthd};
use epb::events_client::EventsClient;
use tonic::transport::Channel;
use tonic::Request;
use tpb::tasks_client::TasksClient;

/// `args` with `--fifo-dir <dir>` after `run` / `tasks exec`, so ctr's
/// fifos stay under the test dir (ctr never removes a detached task's).
pub(crate) fn with_fifo_dir(args: &[&str], dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let at = match args {
        ["run", ..] => Some(1),
        ["tasks", "exec", ..] => Some(2),
        _ => None,
    };
    if let Some(at) = at {
        v.insert(at, "--fifo-dir".into());
        v.insert(at + 1, dir.display().to_string());
    }
    v
}

/// The test image's reference.
pub(crate) use berth_tests::images::BUSYBOX as IMAGE;

/// What every recovery test runs besides berthd (with `requires_root`):
/// `script` gives `ctr run -t` its console.
pub(crate) const TOOLS: &[&str] = &["runc", "ctr", "script"];

/// A berthd plus one containerd namespace this test owns. Dropping it
/// kills berthd, force-deletes the runtime state of every container of the
/// namespace (which kills their processes), kills the shims recorded
/// under the state dir, unmounts what is under the test dir and removes
/// the namespace's cgroups (`/sys/fs/cgroup/<controller>/<ns>/<id>`, the
/// cgroupsPath `ctr` sets).
pub(crate) struct Rig {
    /// The daemon.
    pub(crate) d: Berthd,
    /// The namespace.
    pub(crate) ns: String,
}

impl Rig {
    /// Starts berthd and imports the busybox image into `ns`.
    pub(crate) fn new(ns: &str) -> Self {
        let tar = berth_tests::images::busybox();
        let ns = format!("{ns}-{}", std::process::id());
        let rig = Self {
            d: Berthd::start(),
            ns,
        };
        rig.ctr_ok(&["images", "import", tar.to_str().unwrap()]);
        rig
    }

    /// `ctr -n <ns> args…`.
    pub(crate) fn ctr(&self, args: &[&str]) -> std::process::Output {
        let args = with_fifo_dir(args, &self.d.dir().join("fifo"));
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend(args.iter().map(String::as_str));
        self.d.ctr(&all)
    }

    /// `ctr -n <ns> args…`, which must succeed; its stdout.
    pub(crate) fn ctr_ok(&self, args: &[&str]) -> String {
        berth_tests::check(
            self.ctr(args),
            &format!("ctr -n {} {}", self.ns, args.join(" ")),
        )
    }

    /// `ctr -n <ns> args…` on a pty (`script`), as `ctr run -t` needs a
    /// console; must succeed.
    pub(crate) fn ctr_tty_ok(&self, args: &[&str]) {
        let q = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
        let mut cmd = format!(
            "ctr --address {} -n {}",
            q(&self.d.address().to_string_lossy()),
            q(&self.ns)
        );
        for a in with_fifo_dir(args, &self.d.dir().join("fifo")) {
            cmd.push(' ');
            cmd.push_str(&q(&a));
        }
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("run script");
        berth_tests::check(out, &cmd);
    }

    /// `ctr tasks ls` as `id -> (pid, status)`.
    pub(crate) fn tasks(&self) -> std::collections::BTreeMap<String, (u32, String)> {
        berth_tests::cli::ctr_tasks(&self.ctr_ok(&["tasks", "ls"]))
    }

    /// Ids from `ctr containers ls`.
    pub(crate) fn containers(&self) -> Vec<String> {
        self.ctr_ok(&["containers", "ls", "-q"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The shim pid recorded in a task's bundle.
    pub(crate) fn shim_pid(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.bundle(id).join("shim.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A task's bundle.
    pub(crate) fn bundle(&self, id: &str) -> PathBuf {
        self.d.state().join(&self.ns).join(id)
    }

    /// runc's `--root` for this namespace (berthd's default).
    pub(crate) fn runc_root(&self) -> PathBuf {
        self.d.state().join(".runc").join(&self.ns)
    }

    /// Cgroup dirs of the namespace, one per v1 controller hierarchy.
    pub(crate) fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path().join(&self.ns))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Container cgroups left under the namespace's cgroup dirs.
    pub(crate) fn leftover_cgroups(&self) -> Vec<PathBuf> {
        self.cgroup_dirs()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Mount points under the test dir that belong to tasks (bundles).
    pub(crate) fn task_mounts(&self) -> Vec<String> {
        let state = self.d.state().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&state))
            .map(str::to_string)
            .collect()
    }

    /// A tokio runtime and a connected gRPC client pair.
    pub(crate) fn api(&self) -> Api {
        Api::connect(&self.d.address(), &self.ns).expect("connect to berthd")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.d.kill9();
        let root = self.runc_root();
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force"])
                .arg(e.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        kill_shims_under(&self.d.state());
        unmount_under(self.d.dir());
        for d in self.cgroup_dirs() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// gRPC clients for what `ctr` does not print.
pub(crate) struct Api {
    /// Tasks.
    pub(crate) tasks: TasksClient<Channel>,
    /// Events.
    pub(crate) events: EventsClient<Channel>,
    ns: String,
    /// The runtime driving the calls.
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Api {
    /// Connects to berthd at `addr`, for namespace `ns`.
    pub(crate) fn connect(addr: &Path, ns: &str) -> Result<Self, tonic::transport::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ch = rt.block_on(berth_tests::grpc::try_channel(addr))?;
        Ok(Api {
            tasks: TasksClient::new(ch.clone()),
            events: EventsClient::new(ch),
            ns: ns.to_string(),
            rt,
        })
    }

    /// Tasks.Get on the init process, or the error.
    pub(crate) fn try_get(&mut self, id: &str) -> Result<(i32, u32), tonic::Status> {
        let r = self.req(tpb::GetRequest {
            container_id: id.into(),
            exec_id: String::new(),
        });
        let mut c = self.tasks.clone();
        let p = self
            .rt
            .block_on(c.get(r))?
            .into_inner()
            .process
            .unwrap_or_default();
        Ok((p.status, p.exit_status))
    }

    /// A request in the rig's namespace.
    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        berth_tests::grpc::request(msg, &self.ns, None)
    }

    /// Tasks.Wait on the init process: its exit status.
    pub(crate) fn wait(&mut self, id: &str) -> u32 {
        let r = self.req(tpb::WaitRequest {
            container_id: id.into(),
            exec_id: String::new(),
        });
        let mut c = self.tasks.clone();
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), c.wait(r)).await })
            .expect("wait timed out")
            .expect("wait")
            .into_inner()
            .exit_status
    }

    /// Tasks.Get on the init process: `(status, exit_status)`.
    pub(crate) fn get(&mut self, id: &str) -> (i32, u32) {
        let r = self.req(tpb::GetRequest {
            container_id: id.into(),
            exec_id: String::new(),
        });
        let mut c = self.tasks.clone();
        let p = self
            .rt
            .block_on(c.get(r))
            .expect("get")
            .into_inner()
            .process
            .expect("process");
        (p.status, p.exit_status)
    }
}

// Each test binary uses a different subset.
#[allow(unused_imports)]
pub(crate) use berth_tests::process::{alive, settle, sigkill};
