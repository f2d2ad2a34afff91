//! The two daemons under test, each on private temp paths, driven through
//! Debian's `ctr`. A [`Daemon`] owns everything it created: on drop it
//! removes its tasks and containers, stops the daemon by PID, kills shims it
//! saw (checked by PID and command line), unmounts what is left under its
//! directory and removes it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub(crate) use crate::procfs::parent_pid;
pub(crate) use crate::side::{Kind, SideError};

/// A ctr failure whose stderr says the server lacks the method or service.
pub(crate) fn is_unimplemented(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("unimplemented") || s.contains("unknown service") || s.contains("not implemented")
}

/// One running (or stopped) daemon on its own root, state and socket.
pub(crate) struct Daemon {
    pub(crate) kind: Kind,
    pub(crate) dir: PathBuf,
    pub(crate) sock: PathBuf,
    pub(crate) namespace: String,
    binary: PathBuf,
    child: Option<Child>,
    shims: BTreeSet<i32>,
    /// Set once the CRI workloads turned the daemon's CRI on.
    pub(crate) cri: Option<crate::crihost::CriHost>,
}

impl Daemon {
    /// Create `parent/<kind>` and start the daemon there; returns when
    /// `ctr version` answers (or fails after 30 s).
    pub(crate) fn start(kind: Kind, binary: &Path, parent: &Path) -> Result<Daemon> {
        let dir = parent.join(kind.name());
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let sock = dir.join(match kind {
            Kind::Berthd => "b.sock",
            Kind::Containerd => "c.sock",
        });
        let mut d = Daemon {
            kind,
            dir,
            sock,
            namespace: format!("berth-bench-{}", std::process::id()),
            binary: binary.to_path_buf(),
            child: None,
            shims: BTreeSet::new(),
            cri: None,
        };
        if kind == Kind::Containerd {
            fs::write(
                d.dir.join("config.toml"),
                containerd_config(&d.dir, &d.sock, None),
            )?;
        }
        d.spawn()?;
        Ok(d)
    }

    /// (Re)start the daemon process on the same directories; returns the
    /// time until `ctr version` answered.
    pub(crate) fn spawn(&mut self) -> Result<Duration> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let mut cmd = Command::new(&self.binary);
        let (root, state) = (self.dir.join("root"), self.dir.join("state"));
        if self.kind == Kind::Containerd {
            cmd.arg("--config").arg(self.dir.join("config.toml"));
        } else if self.cri.is_some() {
            cmd.arg("--config").arg(self.dir.join("berthd.toml"));
        }
        cmd.arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&state)
            .arg("--address")
            .arg(&self.sock);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Own process group: a Ctrl-C at the terminal reaches berth-bench
        // (which then cleans up in order), not the daemon directly.
        cmd.process_group(0);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = started + Duration::from_secs(30);
        loop {
            if self.sock.exists() && self.ctr_status(&["version"]) {
                return Ok(started.elapsed());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} exited during start-up ({status}); see {}",
                        self.kind.name(),
                        self.dir.join("daemon.log").display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer on {} within 30 s",
                    self.kind.name(),
                    self.sock.display()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's PID while it runs.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Stop the daemon with `sig` (SIGKILL after 15 s) and reap it.
    pub(crate) fn stop(&mut self, sig: Signal) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, sig);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `ctr` command against this daemon in the bench namespace.
    pub(crate) fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.namespace);
        c.stdin(Stdio::null());
        c
    }

    /// A `ctr` command against this daemon in namespace `ns`.
    pub(crate) fn ctr_ns(&self, ns: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(ns);
        c.stdin(Stdio::null());
        c
    }

    fn ctr_status(&self, args: &[&str]) -> bool {
        self.ctr()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Run ctr, return its stdout; an Unimplemented answer becomes Skipped.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String, SideError> {
        let out = self
            .ctr()
            .args(args)
            .output()
            .map_err(|e| SideError::Failed(format!("run ctr: {e}")))?;
        check(self, args, out)
    }

    /// Like [`Daemon::run`] with the given stdin and stdout (stderr captured).
    pub(crate) fn run_io(
        &self,
        args: &[&str],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<String, SideError> {
        let out = self
            .ctr()
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| SideError::Failed(format!("run ctr: {e}")))?;
        check(self, args, out)
    }

    /// Remember a shim PID so cleanup can make sure it is gone.
    pub(crate) fn note_shim(&mut self, pid: i32) {
        self.shims.insert(pid);
    }

    /// Kill and remove every task and container in the bench namespace.
    pub(crate) fn remove_all_containers(&mut self) {
        if self.child.is_none() {
            return;
        }
        let ids: Vec<String> = self
            .run(&["containers", "ls", "-q"])
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        for pid in self.task_pids() {
            if let Some(ppid) = parent_pid(pid) {
                self.note_shim(ppid);
            }
        }
        let chunks: Vec<Vec<String>> = ids
            .chunks(ids.len().div_ceil(8).max(1))
            .map(|c| c.to_vec())
            .collect();
        let me = &*self;
        thread::scope(|s| {
            for chunk in &chunks {
                s.spawn(move || {
                    for id in chunk {
                        let _ = me.ctr_status(&["tasks", "kill", "--signal", "SIGKILL", id]);
                        for _ in 0..50 {
                            if me.ctr_status(&["tasks", "delete", "--force", id])
                                || !me.ctr_status(&["tasks", "ps", id])
                            {
                                break;
                            }
                            thread::sleep(Duration::from_millis(100));
                        }
                        let _ = me.ctr_status(&["containers", "delete", id]);
                    }
                });
            }
        });
    }

    /// Last resort for containers the daemon could not remove: `runc
    /// delete --force` of every container left in containerd's runc root for
    /// our namespace (berthd's runc root is its own business).
    fn force_delete_runc_leftovers(&self) {
        force_delete_in(&PathBuf::from("/run/containerd/runc").join(&self.namespace));
    }

    /// Restart the daemon with its CRI on: a CNI network of its own
    /// (`host`), the given sandbox image, runc state under its directory.
    /// Nothing happens when it is on already.
    pub(crate) fn enable_cri(&mut self, host: crate::crihost::CriHost) -> Result<()> {
        if self.cri.is_some() {
            return Ok(());
        }
        self.remove_all_containers();
        host.write_conflist(&self.dir.join("net.d"))?;
        match self.kind {
            Kind::Containerd => fs::write(
                self.dir.join("config.toml"),
                containerd_config(&self.dir, &self.sock, Some(&host.sandbox_image)),
            )?,
            Kind::Berthd => fs::write(
                self.dir.join("berthd.toml"),
                berthd_cri_config(&self.dir, &host.sandbox_image),
            )?,
        }
        self.cri = Some(host);
        self.stop(Signal::SIGTERM);
        self.spawn()?;
        Ok(())
    }

    /// PIDs of all tasks in the namespace, from `ctr tasks ls`.
    pub(crate) fn task_pids(&self) -> Vec<i32> {
        let Ok(out) = self.run(&["tasks", "ls"]) else {
            return Vec::new();
        };
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .filter(|p| *p > 0)
            .collect()
    }
}

/// `runc delete --force` of every container left in runc root `root`.
fn force_delete_in(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name();
        eprintln!(
            "berth-bench: runc delete --force {} (left behind)",
            id.to_string_lossy()
        );
        let _ = Command::new("runc")
            .arg("--root")
            .arg(root)
            .args(["delete", "--force"])
            .arg(&id)
            .output();
    }
}

fn check(d: &Daemon, args: &[&str], out: std::process::Output) -> Result<String, SideError> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if is_unimplemented(&stderr) {
        return Err(SideError::Skipped(format!(
            "{} lacks `ctr {}` ({stderr})",
            d.kind.name(),
            args.join(" ")
        )));
    }
    Err(SideError::Failed(format!(
        "ctr {}: {stderr}",
        args.join(" ")
    )))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            // Containers outlive their daemon: bring it back to remove them.
            let _ = self.spawn();
        }
        if self.cri.is_some() {
            crate::crihost::remove_pods(self.kind, &self.sock);
        }
        self.remove_all_containers();
        self.force_delete_runc_leftovers();
        self.stop(Signal::SIGTERM);
        for &pid in &self.shims {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("shim") {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        remove_namespace_dirs(&self.namespace);
        unmount_under(&self.dir);
        if let Some(host) = self.cri.take() {
            // Shims of pods the daemon could not remove (their command
            // line names this daemon's socket), then the host side.
            crate::crihost::kill_shims(&self.sock);
            if self.kind == Kind::Containerd {
                force_delete_in(&self.dir.join("runc-cri").join("k8s.io"));
            }
            unmount_under(&self.dir);
            host.clean_host();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("berth-bench: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Remove the (by now empty) per-namespace directories runc leaves behind:
/// the cgroup parent `/<namespace>` in every hierarchy and containerd's
/// runc root `/run/containerd/runc/<namespace>`. rmdir only: a non-empty
/// directory stays (and is reported).
fn remove_namespace_dirs(namespace: &str) {
    let mut dirs = vec![PathBuf::from("/run/containerd/runc").join(namespace)];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(namespace)));
    }
    dirs.push(PathBuf::from("/sys/fs/cgroup").join(namespace));
    for d in dirs {
        if d.is_dir() {
            if let Err(e) = fs::remove_dir(&d) {
                eprintln!("berth-bench: could not remove {}: {e}", d.display());
            }
        }
    }
}

/// Lazily unmount every mount point at or below `dir`, deepest first.
pub(crate) fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// containerd 1.6 config: everything under `dir`, overlayfs; no CRI, or
/// (with a sandbox image) the CRI with its CNI confs in `dir/net.d`,
/// Debian's plugins, network namespaces and runc state under `dir`.
fn containerd_config(dir: &Path, sock: &Path, cri_sandbox: Option<&str>) -> String {
    let d = dir.display();
    let s = sock.display();
    let (disabled, cri) = match cri_sandbox {
        None => (
            r#"["io.containerd.grpc.v1.cri"]"#.to_string(),
            String::new(),
        ),
        Some(image) => (
            "[]".to_string(),
            format!(
                r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{d}/runc-cri"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"#
            ),
        ),
    };
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = {disabled}

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[debug]
  address = "{d}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
{cri}"#
    )
}

/// berthd's config file for the CRI workloads (root, state and socket stay
/// flags): the same CNI dir, plugins and sandbox image as containerd's.
fn berthd_cri_config(dir: &Path, sandbox_image: &str) -> String {
    format!(
        r#"[cri]
sandbox_image = "{sandbox_image}"
cni_bin_dirs = ["/usr/lib/cni"]
cni_conf_dir = "{}/net.d"
restrict_oom_score_adj = true
"#,
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_is_recognised() {
        assert!(is_unimplemented("ctr: rpc error: code = Unimplemented desc = unknown service containerd.services.tasks.v1.Tasks"));
        assert!(!is_unimplemented("ctr: not found"));
    }

    #[test]
    fn config_names_private_paths() {
        let c = containerd_config(Path::new("/t/x"), Path::new("/t/x/c.sock"), None);
        assert!(c.contains("root = \"/t/x/root\""));
        assert!(c.contains("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"));
        assert!(c.contains("address = \"/t/x/c.sock.ttrpc\""));
        assert!(!c.contains("sandbox_image"));
    }

    #[test]
    fn cri_config_keeps_everything_private() {
        let c = containerd_config(Path::new("/t/x"), Path::new("/t/x/c.sock"), Some("p:1"));
        assert!(c.contains("disabled_plugins = []"));
        assert!(c.contains("sandbox_image = \"p:1\""));
        assert!(c.contains("conf_dir = \"/t/x/net.d\""));
        assert!(c.contains("Root = \"/t/x/runc-cri\""));
        let b = berthd_cri_config(Path::new("/t/y"), "p:1");
        assert!(b.contains("cni_conf_dir = \"/t/y/net.d\""));
        assert!(b.contains("sandbox_image = \"p:1\""));
    }
}
