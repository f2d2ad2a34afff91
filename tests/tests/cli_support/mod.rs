//! Helpers shared by the `cli_*` tests (issue 17: berthd's and berthctl's
//! command lines, config, logs and docs): JSON output, the commit the
//! binaries were built from, berthd run without the harness, and
//! temporary system accounts removed again on drop (also on failure).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::Berthd;
use serde_json::Value;

/// berthctl's `-o json` output, parsed (panics with the output otherwise).
pub(crate) fn json(d: &Berthd, args: &[&str]) -> Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let out = d.berthctl_ok(&full);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("berthctl {args:?}: not JSON ({e}): {out}"))
}

/// Stdout and stderr of an output, lossily.
pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs one of our binaries with `args` and no daemon behind it; killed
/// after 30 s so a command that unexpectedly starts serving cannot hang.
pub(crate) fn run_bin(name: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["--kill-after=5", "30"])
        .arg(berth_tests::bin(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// The commit the workspace is checked out at (as the build scripts
/// record it), or None outside a git checkout.
pub(crate) fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A berthd started with exactly the flags a test gives (the harness
/// always adds `--log-level debug`), on its own temp dirs, its stderr in
/// `DIR/berthd.log`. Killed, and its mounts undone, on drop.
pub(crate) struct PlainBerthd {
    pub(crate) dir: tempfile::TempDir,
    child: Child,
}

impl PlainBerthd {
    /// Starts berthd with `--root/--state/--address` in a temp dir plus
    /// `args`; waits for `berthd ready` in its log.
    pub(crate) fn start(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("berthd.log")).unwrap();
        let child = Command::new(berth_tests::bin("berthd"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("berthd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        let mut d = Self { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.log().contains("berthd ready") {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("berthd exited ({st}):\n{}", d.log());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The socket.
    pub(crate) fn address(&self) -> PathBuf {
        self.dir.path().join("berthd.sock")
    }

    /// Its stderr so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// Runs berthctl against it; panics unless it succeeds.
    pub(crate) fn berthctl_ok(&self, args: &[&str]) -> String {
        let out = Command::new(berth_tests::bin("berthctl"))
            .arg("--address")
            .arg(self.address())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        berth_tests::check(out, &format!("berthctl {args:?}"))
    }
}

impl Drop for PlainBerthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        berth_tests::unmount_under(self.dir.path());
    }
}

/// System groups and users made for one test and deleted on drop (users
/// first), also when the test fails.
#[derive(Default)]
pub(crate) struct TempAccounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl TempAccounts {
    /// Adds system group `name`; returns its gid.
    pub(crate) fn group(&mut self, name: &str) -> u32 {
        retry_locked(&["groupadd", "--system", name]);
        self.groups.push(name.to_string());
        id_of(&["getent", "group", name], 2)
    }

    /// Adds system user `name` (no home, no login shell, primary group
    /// nogroup), a member of `group` when given; returns its uid.
    pub(crate) fn user(&mut self, name: &str, group: Option<&str>) -> u32 {
        let mut args = vec![
            "useradd",
            "--system",
            "--no-create-home",
            "--no-user-group",
            "--gid",
            "nogroup",
            "--shell",
            "/usr/sbin/nologin",
        ];
        if let Some(g) = group {
            args.extend(["--groups", g]);
        }
        args.push(name);
        retry_locked(&args);
        self.users.push(name.to_string());
        id_of(&["getent", "passwd", name], 2)
    }
}

impl Drop for TempAccounts {
    fn drop(&mut self) {
        for u in self.users.drain(..) {
            let _ = retry(&["userdel", &u]);
        }
        for g in self.groups.drain(..) {
            let _ = retry(&["groupdel", &g]);
        }
    }
}

/// Runs an account tool, retrying while another process holds the
/// account files' lock (exit 10: "cannot lock /etc/group").
fn retry(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        if out.status.code() != Some(10) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn retry_locked(args: &[&str]) {
    let out = retry(args);
    berth_tests::check(out, &args.join(" "));
}

/// Field `field` (0-based, `:`-separated) of a getent line.
fn id_of(args: &[&str], field: usize) -> u32 {
    let out = berth_tests::check(
        Command::new(args[0]).args(&args[1..]).output().unwrap(),
        &args.join(" "),
    );
    out.trim().split(':').nth(field).unwrap().parse().unwrap()
}

/// Copies a binary of ours into `dir` (mode 0755), for a user who may not
/// reach the build directory.
pub(crate) fn copy_bin(name: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let to = dir.join(name);
    std::fs::copy(berth_tests::bin(name), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to
}
