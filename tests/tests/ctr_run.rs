//! Issue 4 through Debian's `ctr` (1.6) alone: `ctr run` (foreground, -d,
//! -t), `ctr tasks ...`, `ctr containers rm` and `ctr events` against a real
//! berthd, berth-shim and runc, the key flows again with crun
//! (`--runc-binary crun`), and bad input (missing snapshot, missing runtime
//! binary, duplicate exec id) refused with nothing left behind.
//!
//! Container ids carry the test process id and a per-test tag: the cgroup
//! path (`/default/<id>`) is shared with every other berthd on the machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_tests::{require_root, require_tool, Berthd};

const IMAGE: &str = "docker.io/berthtest/busybox:oci-gzip";
const NS: &str = "default";

/// Builds (once) the busybox test image archive.
fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ctr-run-test-images");
        if !dir.join("images.json").exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images");
            let st = Command::new("python3")
                .arg(script)
                .arg(&dir)
                .args(["--only", "busybox"])
                .status()
                .expect("run build-test-images");
            assert!(st.success(), "build-test-images failed");
        }
        dir.join("busybox/oci-gzip.tar")
    })
}

fn ready(test: &str) -> bool {
    require_root(test)
        && require_tool(test, "ctr")
        && require_tool(test, "runc")
        && require_tool(test, "python3")
}

/// A berthd with the busybox image imported through `ctr`.
fn daemon() -> Berthd {
    let d = Berthd::start();
    d.ctr_ok(&["images", "import", busybox_tar().to_str().unwrap()]);
    d
}

/// A container id unique on this machine: `<tag>-<name>-<pid>`.
fn cid(tag: &str, name: &str) -> String {
    format!("{tag}-{name}-{}", std::process::id())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ctr run` flags selecting the runtime binary (none for runc).
fn runtime_flags(binary: &str) -> Vec<&str> {
    if binary == "runc" {
        vec![]
    } else {
        vec!["--runc-binary", binary]
    }
}

/// Runs `ctr run [runtime flags] ARGS...`.
fn ctr_run(d: &Berthd, binary: &str, args: &[&str]) -> Output {
    let mut full = vec!["run"];
    full.extend(runtime_flags(binary));
    full.extend_from_slice(args);
    d.ctr(&full)
}

/// `ctr tasks ls` rows as (id, pid, status).
fn tasks_ls(d: &Berthd) -> Vec<(String, u32, String)> {
    d.ctr_ok(&["tasks", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(2)?.to_string(),
            ))
        })
        .collect()
}

fn task_status(d: &Berthd, id: &str) -> Option<(u32, String)> {
    tasks_ls(d)
        .into_iter()
        .find(|(t, _, _)| t == id)
        .map(|(_, pid, st)| (pid, st))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The shim's pid for a live task (its `shim.pid` in the bundle).
fn shim_pid(d: &Berthd, id: &str) -> i32 {
    let p = d.state().join(NS).join(id).join("shim.pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Nothing of container `id` is left: no task, no container record, no
/// bundle, no runc state, no mount under the test dir, no shim process,
/// no cgroup.
fn assert_gone(d: &Berthd, id: &str, shim: Option<i32>) {
    assert!(task_status(d, id).is_none(), "task {id} still listed");
    let cs = d.ctr_ok(&["containers", "ls", "-q"]);
    assert!(!cs.lines().any(|l| l == id), "container {id} listed: {cs}");
    let bundle = d.state().join(NS).join(id);
    assert!(!bundle.exists(), "bundle {} left", bundle.display());
    let runc_state = d.state().join(".runc").join(NS).join(id);
    assert!(
        !runc_state.exists(),
        "runc state {} left",
        runc_state.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = d.dir().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&dir)),
        "mounts left under {dir}:\n{mounts}"
    );
    if let Some(pid) = shim {
        wait_until(&format!("shim {pid} of {id} to exit"), || !pid_alive(pid));
    }
    let cg = Path::new("/sys/fs/cgroup/memory").join(NS).join(id);
    assert!(!cg.exists(), "cgroup {} left", cg.display());
}

/// Only the image's committed snapshot is left (no container's active one).
fn assert_only_image_snapshot(d: &Berthd) {
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    let rows: Vec<&str> = snaps.lines().skip(1).collect();
    assert!(
        rows.len() == 1 && rows[0].trim_end().ends_with("Committed"),
        "snapshots left:\n{snaps}"
    );
}

/// A child process killed and reaped on drop.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ctr run --rm` of `echo hello` and `exit 7`: output and ctr's exit code.
fn foreground(binary: &str, tag: &str) {
    let d = daemon();
    let t1 = cid(tag, "t1");
    let out = ctr_run(&d, binary, &["--rm", IMAGE, &t1, "echo", "hello"]);
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let t2 = cid(tag, "t2");
    let out = ctr_run(&d, binary, &["--rm", IMAGE, &t2, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    // Killed from outside while ctr waits on it: 128 + 9.
    let t4 = cid(tag, "t4");
    let mut run = Reap(
        Command::new("ctr")
            .arg("--address")
            .arg(d.address())
            .arg("run")
            .args(runtime_flags(binary))
            .args(["--rm", IMAGE, &t4, "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr run"),
    );
    wait_until("t4 to run", || {
        task_status(&d, &t4).is_some_and(|(_, s)| s == "RUNNING")
    });
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", &t4]);
    let mut st = None;
    wait_until("ctr run to return", || {
        st = run.0.try_wait().unwrap();
        st.is_some()
    });
    assert_eq!(st.unwrap().code(), Some(137));
    for id in [&t1, &t2, &t4] {
        assert_gone(&d, id, None);
    }
    assert_only_image_snapshot(&d);
}

/// `ctr run -d`, then tasks ls/exec/ps/pause/resume/metrics/kill/rm and
/// containers rm.
fn detached(binary: &str, tag: &str) {
    let d = daemon();
    let t3 = cid(tag, "t3");
    let script = "trap \"exit 0\" TERM; while :; do sleep 1; done";
    let out = ctr_run(&d, binary, &["-d", IMAGE, &t3, "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shim = shim_pid(&d, &t3);
    assert!(pid_alive(shim), "shim {shim} not running");
    // The chosen runtime holds the container: runc keeps `state.json`,
    // crun a `status` file, under the runtime root.
    let own = if binary == "crun" {
        "status"
    } else {
        "state.json"
    };
    let rt_state = d.state().join(".runc").join(NS).join(&t3).join(own);
    assert!(rt_state.exists(), "{binary}: no {}", rt_state.display());

    // RUNNING, with the pid of the container's init.
    let (pid, status) = task_status(&d, &t3).expect("task listed");
    assert_eq!(status, "RUNNING");
    // Right after start it may still be `runc init` about to exec.
    let cmdline = || text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
    wait_until(&format!("pid {pid} to be the container's sh"), || {
        cmdline().contains("while :")
    });
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"), "not in its own pid ns");

    // exec e1: ps inside sees the container's processes (sh is pid 1).
    let ps = d.ctr_ok(&["tasks", "exec", "--exec-id", "e1", &t3, "ps"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("while")),
        "{ps}"
    );
    // The finished exec is gone; its id can be used again.
    d.ctr_ok(&["tasks", "exec", "--exec-id", "e1", &t3, "true"]);

    let ps = d.ctr_ok(&["tasks", "ps", &t3]);
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{ps}"
    );

    d.ctr_ok(&["tasks", "pause", &t3]);
    assert_eq!(task_status(&d, &t3).unwrap().1, "PAUSED");
    d.ctr_ok(&["tasks", "resume", &t3]);
    assert_eq!(task_status(&d, &t3).unwrap().1, "RUNNING");

    let metrics = d.ctr_ok(&["tasks", "metrics", &t3]);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&name)).then(|| f.get(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(value("memory.usage_in_bytes") > 0, "{metrics}");
    assert!(value("pids.current") >= 2, "{metrics}");
    assert!(metrics.contains(&t3), "{metrics}");

    d.ctr_ok(&["tasks", "kill", "-s", "SIGTERM", &t3]);
    wait_until("task to stop", || {
        task_status(&d, &t3).is_some_and(|(_, s)| s == "STOPPED")
    });
    assert!(!pid_alive(pid as i32), "container init {pid} still alive");
    // ctr warns on a non-zero exit status: the trap made it 0.
    let out = d.ctr(&["tasks", "rm", &t3]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("non-zero"),
        "{}",
        text(&out.stderr)
    );
    d.ctr_ok(&["containers", "rm", &t3]);
    assert_gone(&d, &t3, Some(shim));
    assert_only_image_snapshot(&d);
}

#[test]
fn ctr_run_foreground_runc() {
    if ready("ctr_run_foreground_runc") {
        foreground("runc", "r");
    }
}

#[test]
fn ctr_run_foreground_crun() {
    if ready("ctr_run_foreground_crun") && require_tool("ctr_run_foreground_crun", "crun") {
        foreground("crun", "c");
    }
}

#[test]
fn ctr_run_detached_lifecycle_runc() {
    if ready("ctr_run_detached_lifecycle_runc") {
        detached("runc", "r");
    }
}

#[test]
fn ctr_run_detached_lifecycle_crun() {
    if ready("ctr_run_detached_lifecycle_crun")
        && require_tool("ctr_run_detached_lifecycle_crun", "crun")
    {
        detached("crun", "c");
    }
}

/// `ctr events` in the background, output in a file.
struct CtrEvents {
    _child: Reap,
    out: PathBuf,
}

impl CtrEvents {
    fn start(d: &Berthd) -> Self {
        let out = d.dir().join("ctr-events.txt");
        let child = Reap(
            Command::new("ctr")
                .arg("--address")
                .arg(d.address())
                .arg("events")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("ctr events"),
        );
        let ev = Self { _child: child, out };
        // It subscribes asynchronously: tag the image until the tag's
        // /images/create shows up, so no later event can be missed.
        for i in 0.. {
            let probe = format!("docker.io/berthtest/probe:{i}");
            d.ctr_ok(&["images", "tag", IMAGE, &probe]);
            d.ctr_ok(&["images", "rm", "--sync", &probe]);
            if ev.text().contains(&format!("probe:{i}")) {
                break;
            }
            assert!(i < 100, "ctr events never showed /images/create");
            std::thread::sleep(Duration::from_millis(50));
        }
        ev
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

#[test]
fn ctr_events_show_start_and_exit_of_ctr_run() {
    if !ready("ctr_events_show_start_and_exit_of_ctr_run") {
        return;
    }
    let d = daemon();
    let ev = CtrEvents::start(&d);
    let id = cid("e", "t2");
    let out = d.ctr(&["run", "--rm", IMAGE, &id, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    wait_until("/containers/delete in ctr events", || {
        ev.text().contains("/containers/delete")
    });
    let all = ev.text();
    let line = |topic: &str| {
        all.lines()
            .find(|l| l.contains(topic) && l.contains(&id))
            .unwrap_or_else(|| panic!("{topic} for {id} missing:\n{all}"))
    };
    line("/tasks/start");
    assert!(line("/tasks/exit").contains("\"exit_status\":7"), "{all}");
    let pos = |t: &str| all.find(t).unwrap();
    assert!(pos("/tasks/create") < pos("/tasks/start"), "{all}");
    assert!(pos("/tasks/start") < pos("/tasks/exit"), "{all}");
    assert!(pos("/tasks/exit") < pos("/tasks/delete"), "{all}");
}

/// A private tmux server, killed (by its socket) on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    fn screen(&self) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-t", "tty"]).stdout)
    }

    fn wait_screen(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if s.contains(want) {
                return s;
            }
            assert!(Instant::now() < deadline, "{want:?} never appeared:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, line: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", "tty", line, "Enter"])
            .status
            .success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

impl Tmux {
    /// A private tmux server (socket in the test dir) running `cmd` in a
    /// 100x30 window, session `tty`.
    fn start(d: &Berthd, name: &str, cmd: &str) -> Self {
        let tmux = Tmux {
            socket: d.dir().join(format!("tmux-{name}.sock")),
        };
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "tty",
            "-x",
            "100",
            "-y",
            "30",
            cmd,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        tmux
    }

    /// Types a marker line and waits for its output (`mark-N` as 40+N).
    fn run_marked(&self, line: &str, n: u32) -> String {
        self.keys(&format!("{line}; echo mark-$((40+{n}))"));
        self.wait_screen(&format!("mark-{}", 40 + n))
    }
}

/// `ctr run -t ... sh` in tmux: arithmetic, the pty's size (also after a
/// resize), `exit 3` is ctr's exit status; then `ctr tasks exec -t` into a
/// detached container the same way.
fn tty(binary: &str, tag: &str) {
    let d = daemon();
    let id = cid(tag, "tty");
    let flags = runtime_flags(binary).join(" ");
    let ctr = format!("ctr --address {}", d.address().display());
    let tmux = Tmux::start(
        &d,
        "run",
        &format!("{ctr} run {flags} --rm -t {IMAGE} {id} sh; echo EXIT=$?; sleep 60"),
    );
    tmux.wait_screen("/ #");
    let s = tmux.run_marked("echo $((6*7)); stty size; tty", 1);
    assert!(s.lines().any(|l| l.trim() == "42"), "{s}");
    assert!(s.lines().any(|l| l.trim() == "30 100"), "{s}");
    assert!(s.contains("/dev/pts/"), "{s}");
    let out = tmux.cmd(&["resize-window", "-t", "tty", "-x", "120", "-y", "40"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ctr forwards SIGWINCH as ResizePty; give it a moment.
    let mut n = 2;
    wait_until("the resize to reach the pty", || {
        n += 1;
        let s = tmux.run_marked("stty size", n);
        s.lines().any(|l| l.trim() == "40 120")
    });
    tmux.keys("exit 3");
    tmux.wait_screen("EXIT=3");
    assert_gone(&d, &id, None);

    // exec -t into a detached container.
    let bg = cid(tag, "ttyexec");
    let out = ctr_run(&d, binary, &["-d", IMAGE, &bg, "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shim = shim_pid(&d, &bg);
    let tmux = Tmux::start(
        &d,
        "exec",
        &format!("{ctr} tasks exec -t --exec-id sh1 {bg} sh; echo EXIT=$?; sleep 60"),
    );
    tmux.wait_screen("/ #");
    let s = tmux.run_marked("stty size; ps", 1);
    assert!(s.lines().any(|l| l.trim() == "30 100"), "{s}");
    assert!(s.contains("sleep 1000"), "{s}");
    tmux.keys("exit 4");
    tmux.wait_screen("EXIT=4");
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", &bg]);
    wait_until("task to stop", || {
        task_status(&d, &bg).is_some_and(|(_, s)| s == "STOPPED")
    });
    d.ctr_ok(&["tasks", "rm", &bg]);
    d.ctr_ok(&["containers", "rm", &bg]);
    assert_gone(&d, &bg, Some(shim));
}

#[test]
fn ctr_run_tty_in_tmux_runc() {
    if ready("ctr_run_tty_in_tmux_runc") && require_tool("ctr_run_tty_in_tmux_runc", "tmux") {
        tty("runc", "y");
    }
}

#[test]
fn ctr_run_tty_in_tmux_crun() {
    let t = "ctr_run_tty_in_tmux_crun";
    if ready(t) && require_tool(t, "tmux") && require_tool(t, "crun") {
        tty("crun", "z");
    }
}

#[test]
fn ctr_bad_input_leaves_nothing() {
    if !ready("ctr_bad_input_leaves_nothing") {
        return;
    }
    let d = daemon();

    // A container whose snapshot was removed before its task starts.
    let nosnap = cid("b", "nosnap");
    d.ctr_ok(&["containers", "create", IMAGE, &nosnap, "true"]);
    d.ctr_ok(&["snapshots", "rm", &nosnap]);
    let out = d.ctr(&["tasks", "start", &nosnap]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("not found") && err.contains(&nosnap),
        "missing snapshot: {err}"
    );
    assert!(task_status(&d, &nosnap).is_none());
    d.ctr_ok(&["containers", "rm", &nosnap]);
    assert_gone(&d, &nosnap, None);

    // A runtime binary that does not exist.
    let nobin = cid("b", "nobin");
    let out = ctr_run(&d, "/nonexistent/runc", &["--rm", IMAGE, &nobin, "true"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/runc") && err.contains("failed precondition"),
        "missing runtime binary: {err}"
    );
    assert_gone(&d, &nobin, None);

    // exec with an exec id already in use.
    let dup = cid("b", "dup");
    d.ctr_ok(&["run", "-d", IMAGE, &dup, "sleep", "1000"]);
    let shim = shim_pid(&d, &dup);
    d.ctr_ok(&[
        "tasks",
        "exec",
        "-d",
        "--exec-id",
        "e1",
        &dup,
        "sleep",
        "1000",
    ]);
    let out = d.ctr(&["tasks", "exec", "--exec-id", "e1", &dup, "true"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("e1"),
        "{err}"
    );
    // The first e1 still runs.
    let ps = d.ctr_ok(&["tasks", "ps", &dup]);
    assert_eq!(ps.lines().skip(1).count(), 2, "{ps}");
    d.ctr_ok(&["tasks", "rm", "--force", &dup]);
    d.ctr_ok(&["containers", "rm", &dup]);
    assert_gone(&d, &dup, Some(shim));
    assert_only_image_snapshot(&d);
}

/// stderr of a `ctr` call that must fail.
fn ctr_err(d: &Berthd, args: &[&str]) -> String {
    let out = d.ctr(args);
    assert!(!out.status.success(), "ctr {args:?} succeeded");
    text(&out.stderr)
}

#[test]
fn ctr_refusals_on_a_live_task() {
    if !ready("ctr_refusals_on_a_live_task") {
        return;
    }
    let d = daemon();
    let id = cid("f", "live");
    d.ctr_ok(&["run", "-d", IMAGE, &id, "sleep", "1000"]);
    let shim = shim_pid(&d, &id);
    // (`ctr containers rm` refuses a running task on its own side.)
    let err = ctr_err(&d, &["tasks", "rm", &id]);
    assert!(err.contains("failed precondition"), "{err}");
    let err = ctr_err(&d, &["tasks", "start", &id]);
    assert!(err.contains("already exists"), "{err}");
    // An exec of a missing program fails; nothing of it stays.
    let err = ctr_err(&d, &["tasks", "exec", "--exec-id", "nx", &id, "/no/such"]);
    assert!(err.contains("\"/no/such\": stat"), "{err}");
    let ps = d.ctr_ok(&["tasks", "ps", &id]);
    assert_eq!(ps.lines().skip(1).count(), 1, "{ps}");
    d.ctr_ok(&["tasks", "exec", "--exec-id", "nx", &id, "true"]);
    let err = ctr_err(&d, &["tasks", "resume", &id]);
    assert!(err.contains("failed precondition"), "{err}");
    d.ctr_ok(&["tasks", "kill", "-a", "-s", "SIGKILL", &id]);
    wait_until("task to stop", || {
        task_status(&d, &id).is_some_and(|(_, s)| s == "STOPPED")
    });
    let err = ctr_err(&d, &["tasks", "kill", &id]);
    assert!(
        err.contains("not found") || err.contains("process already finished"),
        "{err}"
    );
    d.ctr_ok(&["tasks", "rm", &id]);
    d.ctr_ok(&["containers", "rm", &id]);
    assert_gone(&d, &id, Some(shim));
    assert_only_image_snapshot(&d);
}
