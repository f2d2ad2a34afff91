//! A real `berthd` on private temp dirs, and the tools pointed at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cleanup::{kill_containers_under, kill_shims_under, unmount_under};
use crate::cli;
use crate::paths::bin;

/// A running berthd on temp dirs. Dropping it kills the daemon, the
/// containers and shims it started and unmounts what is under its dir.
pub struct Berthd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Where root and state live: `dir`, or a filesystem mounted in it.
    data: PathBuf,
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
        let data = dir.path().to_path_buf();
        let mut d = Self {
            dir,
            child: None,
            data,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    /// Starts berthd with root and state on a tmpfs of `mb` MiB of its
    /// own (mounted at [`Berthd::data`]; needs root), its socket and log
    /// outside it. Dropping the daemon unmounts it.
    pub fn start_on_tmpfs(mb: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("fs");
        std::fs::create_dir(&data).expect("tmpfs mount point");
        nix::mount::mount(
            Some("tmpfs"),
            &data,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={mb}m,mode=0700").as_str()),
        )
        .expect("mount tmpfs");
        let mut d = Self {
            dir,
            child: None,
            data,
            extra_args: Vec::new(),
        };
        d.spawn();
        d
    }

    /// The directory holding root and state (a tmpfs of its own after
    /// [`Berthd::start_on_tmpfs`]).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The temp dir holding root, state and socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// `--root`.
    pub fn root(&self) -> PathBuf {
        self.data.join("root")
    }
    /// `--state`.
    pub fn state(&self) -> PathBuf {
        self.data.join("state")
    }
    /// `--address`.
    pub fn address(&self) -> PathBuf {
        self.dir().join("berthd.sock")
    }
    /// Where `berthctl` run through this daemon keeps its fifos
    /// (`BERTH_FIFO_DIR`): `<dir>/berthctl-fifo/<namespace>/<id>`.
    pub fn berthctl_fifo_dir(&self) -> PathBuf {
        self.dir().join("berthctl-fifo")
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
    /// the args say otherwise). A hung call fails after ten minutes (exit
    /// 124) instead of hanging the suite.
    pub fn ctr(&self, args: &[&str]) -> Output {
        cli::ctr_command(&self.address())
            .args(args)
            .output()
            .expect("run ctr (apt-get install containerd)")
    }

    /// Runs `ctr` and panics with its output unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        cli::check(self.ctr(args), &format!("ctr {}", args.join(" ")))
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
        let mut c = cli::berthctl_command(&self.address(), &self.berthctl_fifo_dir());
        c.args(args);
        c
    }

    /// Runs `berthctl` and panics with its output unless it succeeds.
    pub fn berthctl_ok(&self, args: &[&str]) -> String {
        cli::check(self.berthctl(args), &format!("berthctl {}", args.join(" ")))
    }

    /// Runs `berthctl -o json ARGS`, which must succeed; its output parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let out = self.berthctl_ok(&full);
        cli::parse_json(&out, &format!("berthctl {args:?}"))
    }

    /// Runs `berthctl ARGS`, which must fail the way berthctl fails (exit
    /// 1, one line on stderr starting `berthctl: `); returns that line.
    pub fn berthctl_fails(&self, args: &[&str]) -> String {
        cli::berthctl_failure(self.berthctl(args), &format!("berthctl {args:?}"))
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
