//! Helpers for the `operator_*` tests (issue 17: berthd run as an operator
//! runs it): berthd started by hand with the environment a service manager
//! gives it, a minimal HTTP/1.1 GET for the metrics endpoint, and a strict
//! reader of Prometheus text.

#![allow(dead_code)]

pub(crate) mod prom;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{bin, kill_containers_under, kill_shims_under, unmount_under};

/// A berthd this test starts itself (the harness's [`berth_tests::Berthd`]
/// waits for Version, which a test of start-up must not). Dropping it
/// kills berthd, the containers and shims under its state dir, and
/// unmounts what is under its dir.
pub(crate) struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The log's length when berthd was last started: what this run wrote
    /// follows it.
    log_start: usize,
}

impl Daemon {
    /// A daemon on fresh temp dirs; nothing started yet.
    pub(crate) fn new(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("berth-op-")
                .tempdir()
                .unwrap(),
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_start: 0,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.dir().join("state")
    }
    pub(crate) fn address(&self) -> PathBuf {
        self.dir().join("berthd.sock")
    }
    fn log_path(&self) -> PathBuf {
        self.dir().join("berthd.log")
    }
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    /// What the latest run of berthd logged.
    pub(crate) fn run_log(&self) -> String {
        self.log()
            .get(self.log_start..)
            .unwrap_or_default()
            .to_string()
    }
    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Starts berthd (again, on the same dirs) without waiting for it.
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        self.log_start = self.log().len();
        let mut cmd = Command::new(bin("berthd"));
        cmd.arg("--root")
            .arg(self.dir().join("root"))
            .arg("--state")
            .arg(self.state())
            .arg("--address")
            .arg(self.address())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn berthd"));
    }

    /// Waits until `f` holds of what this run of berthd logged (berthd
    /// still running), up to 30 s; returns that part of the log.
    pub(crate) fn wait_log(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.run_log();
            if f(&log) {
                return log;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("berthd exited ({status}) before {what}; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after 30 s; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The metrics endpoint's address, from berthd's log line (berthd was
    /// given port 0).
    pub(crate) fn metrics_address(&mut self) -> SocketAddr {
        const LINE: &str = "metrics and health endpoint listening";
        let log = self.wait_log("the metrics endpoint", |l| l.contains(LINE));
        let line = log.lines().rev().find(|l| l.contains(LINE)).unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address= in {line}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("{addr:?} in {line}: {e}"))
    }

    /// SIGTERM; waits for the exit.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        c.wait().unwrap()
    }

    /// Waits for an exit a signal sent elsewhere caused.
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }

    /// SIGKILL (its shims live on).
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `berthctl ARGS` against this daemon; panics unless it succeeds.
    pub(crate) fn berthctl_ok(&self, args: &[&str]) -> String {
        let out = berth_tests::cli::berthctl_command(&self.address(), &self.dir().join("fifo"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        berth_tests::check(out, &format!("berthctl {}", args.join(" ")))
    }

    /// Debian's `ctr ARGS` against this daemon (its output, success or not).
    pub(crate) fn ctr(&self, args: &[&str]) -> std::process::Output {
        berth_tests::cli::ctr_command(&self.address())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        kill_containers_under(&self.state());
        kill_shims_under(&self.state());
        unmount_under(self.dir());
        if std::thread::panicking() {
            eprintln!("--- berthd log ---\n{}", self.log());
        }
    }
}

/// One HTTP/1.1 request to `addr`: (status, headers lowercased, body).
pub(crate) fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// `GET path`: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http(addr, "GET", path);
    (status, body)
}
