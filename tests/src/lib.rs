//! Harness for end-to-end tests: starts a real `berthd` on private temp
//! dirs, runs Debian's `ctr` and `berthctl` against it, and cleans up
//! everything (processes it started, mounts under its dir) on drop, also
//! when a test fails.
//!
//! Binaries come from `$BERTH_BIN_DIR` or the workspace's `target/debug`;
//! build them first (`cargo build --workspace --bins`), as the README's test
//! command does.

pub mod cri;
pub mod grpc;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the binaries under test live.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_BIN_DIR") {
        return d.into();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().unwrap().join("target"));
    target.join("debug")
}

/// Path of one of our binaries; panics with instructions when missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (or set BERTH_BIN_DIR)",
        p.display()
    );
    p
}

/// True when running as root; otherwise prints a loud skip notice.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("\n!!! SKIPPED {test}: needs root (mounts, runc, cgroups) !!!\n");
    false
}

/// True when `tool` is on PATH; otherwise prints a loud skip notice.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false);
    if !found {
        eprintln!("\n!!! SKIPPED {test}: `{tool}` is not installed (the README's test command installs it) !!!\n");
    }
    found
}

/// A running berthd on temp dirs.
pub struct Berthd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra flags passed at every (re)start.
    pub extra_args: Vec<String>,
}

impl Berthd {
    /// Starts berthd and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts berthd with extra flags.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut d = Self {
            dir,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    /// The temp dir holding root, state and socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }
    /// `--state`.
    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }
    /// `--address`.
    pub fn address(&self) -> PathBuf {
        self.dir().join("berthd.sock")
    }
    /// berthd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd running").id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("berthd.log"))
            .expect("log file");
        let child = Command::new(bin("berthd"))
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.state())
            .arg("--address")
            .arg(self.address())
            .arg("--log-level")
            .arg("debug")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the daemon answers Version (or panics after 30 s).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("berthd exited early ({status}); log:\n{}", self.log());
                }
            }
            if self.address().exists() {
                let out = self.ctr(&["version"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "berthd not ready after 30s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("berthd.log")).unwrap_or_default()
    }

    /// SIGKILLs the daemon (its shims live on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("berthd running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().expect("wait berthd")
    }

    /// Starts the daemon again on the same dirs.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill9 first");
        self.spawn();
    }

    /// Runs Debian's `ctr` against this daemon (namespace `default` unless
    /// the args say otherwise).
    /// A hung call fails after ten minutes (exit 124) instead of hanging
    /// the suite.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=10", "600", "ctr"])
            .arg("--address")
            .arg(self.address())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr (apt-get install containerd)")
    }

    /// Runs `ctr` and panics with its output unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        check(self.ctr(args), &format!("ctr {}", args.join(" ")))
    }

    /// Runs `berthctl` against this daemon.
    pub fn berthctl(&self, args: &[&str]) -> Output {
        self.berthctl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berthctl")
    }

    /// A `berthctl` command pointed at this daemon, for custom stdio.
    pub fn berthctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("berthctl"));
        c.env("BERTH_ADDRESS", self.address()).args(args);
        c
    }

    /// Runs `berthctl` and panics with its output unless it succeeds.
    pub fn berthctl_ok(&self, args: &[&str]) -> String {
        check(self.berthctl(args), &format!("berthctl {}", args.join(" ")))
    }
}

/// Stdout of a successful command; panics with both streams otherwise.
pub fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Unmounts everything mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|t| t.replace("\\040", " "))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        self.kill9();
        // Containers first (their shims still reap), then the shims.
        kill_containers_under(&self.state());
        // Shims this daemon started record their pid in their bundle.
        kill_shims_under(&self.state());
        unmount_under(self.dir());
        if std::thread::panicking() {
            eprintln!(
                "--- berthd log ({}) ---\n{}",
                self.dir().display(),
                self.log()
            );
        }
    }
}

/// Kills shims recorded under a state dir (`shim.pid` files), and only those.
pub fn kill_shims_under(state: &Path) {
    let mut stack = vec![state.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "shim.pid") {
                if let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// Kills the processes of every container whose bundle (`config.json` with
/// `linux.cgroupsPath`) is under a state dir, and removes its cgroups
/// (cgroupfs, every v1 controller and the v2 mount): a failed test must not
/// leave its containers running after the shims are gone. Only processes
/// descending from this state dir's shims are touched (cgroup paths such as
/// `/default/t1` may be shared with other daemons on the machine).
pub fn kill_containers_under(state: &Path) {
    let mut stack = vec![state.to_path_buf()];
    let mut cgroups = Vec::new();
    let mut shims = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                if p.file_name().is_some_and(|n| n != "rootfs") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n == "shim.pid") {
                if let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    shims.push(pid);
                }
            } else if p.file_name().is_some_and(|n| n == "config.json") {
                let cg = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_owned));
                // Only plain cgroupfs paths below the root.
                if let Some(cg) = cg.filter(|c| {
                    c.starts_with('/') && !c.contains("..") && c.trim_matches('/').contains('/')
                }) {
                    cgroups.push(cg);
                }
            }
        }
    }
    if cgroups.is_empty() {
        return;
    }
    let controllers: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for cg in cgroups {
        let dirs: Vec<PathBuf> = controllers
            .iter()
            .map(|c| c.join(cg.trim_start_matches('/')))
            .filter(|d| d.is_dir())
            .collect();
        for d in &dirs {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = false;
            for d in &dirs {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .filter(|p| descends_from(*p, &shims))
                {
                    left = true;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if !left || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// True when `pid` is one of `ancestors` or a descendant of one.
fn descends_from(mut pid: i32, ancestors: &[i32]) -> bool {
    for _ in 0..64 {
        if ancestors.contains(&pid) {
            return true;
        }
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse::<i32>()
                    .ok()
            })
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        pid = ppid;
    }
    false
}
