//! Helpers for the shim's end-to-end tests: a busybox rootfs, an OCI
//! bundle, `berth-shim start`, a tonic client, and a guard that cleans up
//! (kills the shim, `runtime delete --force`, unmounts, removes cgroups)
//! even when a test fails.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_api::shim::v1::shim_client::ShimClient;
use berth_api::shim::v1::{self as pb};
use berth_api::types::Mount;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

pub const NS: &str = "berth-shim-test";

/// The shim under test: `BERTH_SHIM_BIN` (e.g. a release build) or this
/// crate's binary.
pub fn shim_binary() -> PathBuf {
    std::env::var_os("BERTH_SHIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")))
}

/// (private kB = Private_Clean + Private_Dirty, Rss kB) of a process.
pub fn private_and_rss_kb(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Private_Clean:") + field("Private_Dirty:"),
        field("Rss:"),
    )
}

/// Whether the prerequisites are present; prints loudly when not.
pub fn can_run(runtime: &str) -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Path::new("/bin/busybox").exists()
        && Command::new(runtime)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!!!! SKIPPING: needs root, /bin/busybox and {runtime} !!!!!");
    }
    ok
}

/// A test container: temp dirs, bundle, the shim it started.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub runtime: String,
    pub bundle: PathBuf,
    pub shim_pid: Option<i32>,
    pub address: String,
}

impl Fixture {
    /// A bundle whose rootfs is an overlay (busybox lower dir) that the shim
    /// mounts; `args` is the init process; `edit` may change the spec.
    pub fn new(id: &str, runtime: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-")
            .tempdir()
            .unwrap();
        let lower = dir.path().join("lower");
        make_busybox_rootfs(&lower);
        for d in ["upper", "work", "bundle/rootfs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let bundle = dir.path().join("bundle");
        let mut spec = spec(id, args);
        edit(&mut spec);
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        Self {
            dir,
            id: id.to_string(),
            runtime: runtime.to_string(),
            bundle,
            shim_pid: None,
            address: String::new(),
        }
    }

    /// A fixture with its shim started and a client, or None (after a loud
    /// message) when the runtime, root or busybox is missing.
    pub async fn launch(
        id: &str,
        runtime: &str,
        args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> Option<(Self, ShimClient<Channel>)> {
        if !can_run(runtime) {
            return None;
        }
        let mut fx = Self::new(id, runtime, args, edit);
        let c = fx.start_shim().await;
        Some((fx, c))
    }

    /// Creates the container with `req` and starts it; returns the init pid.
    pub async fn run(&self, c: &mut ShimClient<Channel>, req: pb::CreateRequest) -> u32 {
        let pid = c.create(req).await.unwrap().into_inner().pid;
        c.start(proc_req("")).await.unwrap();
        pid
    }

    /// Deletes init, then [`Fixture::shutdown_clean`].
    pub async fn delete_and_finish(&self, c: &mut ShimClient<Channel>) {
        c.delete(proc_req("")).await.unwrap();
        self.shutdown_clean(c).await;
    }

    /// Shutdown(now), the shim exits, nothing of the container is left.
    pub async fn shutdown_clean(&self, c: &mut ShimClient<Channel>) {
        c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
        assert!(self.wait_shim_gone(5).await, "shim did not exit");
        self.assert_clean();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The overlay mount the shim is asked to perform.
    pub fn rootfs(&self) -> Vec<Mount> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", p("lower")),
                format!("upperdir={}", p("upper")),
                format!("workdir={}", p("work")),
            ],
        }]
    }

    /// Runs `berth-shim start` and connects.
    pub async fn start_shim(&mut self) -> ShimClient<Channel> {
        let out = Command::new(shim_binary())
            .args(["start", "--namespace", NS, "--id", &self.id, "--bundle"])
            .arg(&self.bundle)
            .args([
                "--address",
                "/run/berth/none.sock",
                "--runtime",
                &self.runtime,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(address.starts_with("unix://"), "{address}");
        let pid: i32 = std::fs::read_to_string(self.bundle.join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.shim_pid = Some(pid);
        assert_eq!(
            std::fs::read_to_string(self.bundle.join("address")).unwrap(),
            address
        );
        self.address = address.clone();
        connect(&address).await
    }

    pub fn create_request(&self, stdout: &str, stderr: &str) -> pb::CreateRequest {
        pb::CreateRequest {
            id: self.id.clone(),
            bundle: self.bundle.display().to_string(),
            rootfs: self.rootfs(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            namespace: NS.into(),
            runtime_binary: self.runtime.clone(),
            ..Default::default()
        }
    }

    pub fn shim_alive(&self) -> bool {
        self.shim_pid.is_some_and(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // A zombie counts as gone.
            !stat.is_empty() && !stat.contains(") Z ")
        })
    }

    /// Waits (up to `secs`) for the shim process to go away.
    pub async fn wait_shim_gone(&self, secs: u64) -> bool {
        for _ in 0..secs * 200 {
            if !self.shim_alive() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// The container's cgroup, relative to each hierarchy's root.
    pub fn cgroup_name(&self) -> String {
        format!("berth-shim-test-{}", self.id)
    }

    /// Asserts nothing of the container is left on the host.
    pub fn assert_clean(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().display().to_string();
        assert!(!mounts.contains(&root), "mounts left under {root}");
        assert!(
            !runtime_state_dir(&self.runtime).join(&self.id).exists(),
            "runtime state left"
        );
        for c in ["memory", "pids", "cpu,cpuacct", "freezer"] {
            let p = Path::new("/sys/fs/cgroup").join(c).join(self.cgroup_name());
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
    }
}

fn runtime_state_dir(runtime: &str) -> PathBuf {
    if runtime.ends_with("crun") {
        PathBuf::from("/run/crun")
    } else {
        PathBuf::from("/run/runc")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(pid) = self.shim_pid {
            if self.shim_alive() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = Command::new(&self.runtime)
            .args(["delete", "--force", &self.id])
            .output();
        let rootfs = self.bundle.join("rootfs");
        while nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        for c in [
            "memory",
            "pids",
            "cpu,cpuacct",
            "cpuset",
            "freezer",
            "blkio",
            "devices",
            "net_cls,net_prio",
            "perf_event",
            "hugetlb",
            "systemd",
            "rdma",
            "misc",
        ] {
            let _ =
                std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(self.cgroup_name()));
        }
        if self.address.contains("/run/berth/s/") {
            let _ = std::fs::remove_file(self.address.trim_start_matches("unix://"));
        }
    }
}

/// Connects a tonic client to `unix://PATH`.
pub async fn connect(address: &str) -> ShimClient<Channel> {
    let path = PathBuf::from(address.trim_start_matches("unix://"));
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();
    ShimClient::new(channel)
}

/// A busybox-static tree: /bin/busybox plus one symlink per applet.
pub fn make_busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
}

/// An OCI spec like `runc spec`'s, without a terminal, with a cgroupfs path.
pub fn spec(id: &str, args: &[&str]) -> Value {
    let out = tempfile::tempdir().unwrap();
    let st = Command::new("runc")
        .arg("spec")
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(st.success());
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("config.json")).unwrap()).unwrap();
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(args);
    v["root"] = json!({"path": "rootfs", "readonly": false});
    // One level, so the runtime's own cleanup leaves no parent behind.
    v["linux"]["cgroupsPath"] = json!(format!("/berth-shim-test-{id}"));
    v["hostname"] = json!(id);
    v
}

/// An OCI process spec for exec.
pub fn process(args: &[&str], terminal: bool) -> prost_types::Any {
    let v = json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin", "TERM=xterm"],
        "cwd": "/",
    });
    prost_types::Any {
        type_url: berth_api::type_urls::OCI_PROCESS.into(),
        value: serde_json::to_vec(&v).unwrap(),
    }
}

/// `mkfifo`
pub fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Opens a fifo's read side without blocking (as ctr does before Create).
pub fn open_fifo_reader(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap()
}

/// Reads what is buffered in a non-blocking fd, waiting up to `secs` for
/// `want` to appear.
pub async fn read_until(f: &mut std::fs::File, want: &str, secs: u64) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    for _ in 0..secs * 20 {
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        if String::from_utf8_lossy(&out).contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Collects events from a fresh Events(after) stream until `n` arrived or
/// `secs` passed.
pub async fn collect_events(
    c: &mut ShimClient<Channel>,
    after: u64,
    n: usize,
    secs: u64,
) -> Vec<pb::ShimEvent> {
    let mut stream = c
        .events(pb::EventsRequest { after })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(e))) => out.push(e),
            _ => break,
        }
    }
    out
}

pub fn topics(events: &[pb::ShimEvent]) -> Vec<String> {
    events.iter().map(|e| e.topic.clone()).collect()
}

/// A request naming one process (empty: init).
pub fn proc_req(exec_id: &str) -> pb::ProcessRequest {
    pb::ProcessRequest {
        exec_id: exec_id.into(),
    }
}

/// Waits for a process's exit; returns its status.
pub async fn wait_status(c: &mut ShimClient<Channel>, exec_id: &str) -> u32 {
    c.wait(proc_req(exec_id))
        .await
        .unwrap()
        .into_inner()
        .exit_status
}

/// Like [`wait_status`], failing after `secs`.
pub async fn wait_status_within(c: &mut ShimClient<Channel>, exec_id: &str, secs: u64) -> u32 {
    tokio::time::timeout(Duration::from_secs(secs), wait_status(c, exec_id))
        .await
        .unwrap_or_else(|_| panic!("{exec_id:?} did not exit within {secs}s"))
}

/// The state of one process.
pub async fn state(c: &mut ShimClient<Channel>, exec_id: &str) -> pb::StateResponse {
    c.state(proc_req(exec_id)).await.unwrap().into_inner()
}

/// Kill with a signal, not `all`.
pub fn kill_req(exec_id: &str, signal: u32) -> pb::KillRequest {
    pb::KillRequest {
        exec_id: exec_id.into(),
        signal,
        all: false,
    }
}
