//! Issue 4 through berthctl: `run` (foreground, --rm, -d, env/cwd/user/
//! mounts, limits), containers, tasks (exec, ps, pause/resume, metrics,
//! kill, rm) and events, against a real berthd with berth-shim and runc,
//! cross-checked with Debian's ctr.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{requires_root, Berthd};
use serde_json::Value;

use berth_tests::images::BUSYBOX as IMAGE;

/// What every test here runs besides berthd (with `requires_root`).
const TOOLS: &[&str] = &["ctr", "runc"];

/// Imports (and unpacks) busybox through berthctl.
fn import_busybox(d: &Berthd) {
    let tar = berth_tests::images::busybox();
    let out = d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    assert_eq!(out.trim(), IMAGE);
}

/// Runs berthctl with stdin from `input`; returns (exit code, stdout, stderr).
fn run_with_stdin(d: &Berthd, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut c = d
        .berthctl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_foreground_exit_codes_and_stdio() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let out = d.berthctl(&["run", "--rm", IMAGE, "t1", "echo", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    let out = d.berthctl(&[
        "run",
        "--rm",
        IMAGE,
        "t2",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let (code, stdout, _) = run_with_stdin(
        &d,
        &["run", "--rm", IMAGE, "t3", "sh", "-c", "tr a-z A-Z"],
        b"piped in\n",
    );
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "PIPED IN\n");

    // Without --rm the container stays, its task is gone.
    d.berthctl_ok(&["run", IMAGE, "kept", "true"]);
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "kept\n");
    assert_eq!(d.berthctl_ok(&["tasks", "ls", "-q"]), "");
    let ctr_ls = d.ctr_ok(&["containers", "ls"]);
    assert!(
        ctr_ls.contains("kept") && ctr_ls.contains(IMAGE),
        "{ctr_ls}"
    );
    // It can be started again.
    let out = d.berthctl(&["tasks", "start", "kept"]);
    assert_eq!(out.status.code(), Some(0));
    d.berthctl_ok(&["containers", "rm", "kept"]);

    // --rm left nothing: no containers, only the image's snapshot.
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    let snaps = d.json(&["snapshots", "ls"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["kind"], "committed");
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_spec_from_flags() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let host = d.dir().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from the host\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        host.display()
    );
    let out = d.berthctl_ok(&[
        "run",
        "--rm",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        "--mount",
        &mount,
        IMAGE,
        "s1",
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u; id -g; cat /data/f; hostname",
    ]);
    assert_eq!(out, "hi\n/tmp\n1000\n1000\nfrom the host\ns1\n");

    // User names resolve through the image's /etc/passwd and /etc/group.
    let out = d.berthctl_ok(&["run", "--rm", "--user", "nobody", IMAGE, "n1", "id"]);
    assert!(out.starts_with("uid=65534(nobody) gid=65534"), "{out}");
    let err = d.berthctl(&["run", "--rm", "--user", "ghost", IMAGE, "n2", "id"]);
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("ghost"));

    d.berthctl_ok(&[
        "containers",
        "create",
        "--memory-limit",
        "33554432",
        "--cpus",
        "0.5",
        "--runtime-binary",
        "runc",
        IMAGE,
        "c1",
    ]);
    let info = d.json(&["containers", "info", "c1"]);
    let spec = &info["spec"];
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 33554432);
    assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50000);
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["linux"]["cgroupsPath"], "/default/c1");
    assert_eq!(info["runtime"]["name"], "io.containerd.runc.v2");
    assert_eq!(
        info["runtime"]["options_type"],
        "containerd.runc.v1.Options"
    );
    assert_eq!(info["snapshot_key"], "c1");
    d.berthctl_ok(&["containers", "rm", "c1"]);
    assert_eq!(d.json(&["snapshots", "ls"]).as_array().unwrap().len(), 1);
}

fn task(d: &Berthd, id: &str) -> Value {
    let v = d.json(&["tasks", "ls"]);
    v.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
#[ignore = "needs root"]
fn berthctl_detached_task_lifecycle_and_events() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let events_out = d.dir().join("events.json");
    let mut events = d
        .berthctl_cmd(&["-o", "json", "events", "topic~=\"/tasks/\""])
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    d.berthctl_ok(&["run", "-d", IMAGE, "d1", "sleep", "1000"]);
    let t = task(&d, "d1");
    assert_eq!(t["status"], "RUNNING", "{t}");
    let pid = t["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let ctr_ls = d.ctr_ok(&["tasks", "ls"]);
    assert!(
        ctr_ls
            .lines()
            .any(|l| l.starts_with("d1") && l.contains(&pid.to_string()) && l.contains("RUNNING")),
        "{ctr_ls}"
    );

    let ps = d.berthctl_ok(&["tasks", "exec", "--exec-id", "e1", "d1", "ps"]);
    assert!(ps.contains("sleep 1000"), "{ps}");
    let out = d.berthctl(&[
        "tasks",
        "exec",
        "--exec-id",
        "e2",
        "d1",
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let pids = d.json(&["tasks", "ps", "d1"]);
    assert!(
        pids.as_array().unwrap().iter().any(|p| p["pid"] == pid),
        "{pids}"
    );

    d.berthctl_ok(&["tasks", "pause", "d1"]);
    assert_eq!(task(&d, "d1")["status"], "PAUSED");
    d.berthctl_ok(&["tasks", "resume", "d1"]);
    assert_eq!(task(&d, "d1")["status"], "RUNNING");

    let metrics = d.json(&["tasks", "metrics", "d1"]);
    let usage = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "memory.usage_in_bytes" || m["metric"] == "memory.usage")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(usage["value"].as_u64().unwrap() > 0, "{metrics}");

    // A running task cannot be removed; its container neither.
    let out = d.berthctl(&["tasks", "rm", "d1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FailedPrecondition"));
    let out = d.berthctl(&["containers", "rm", "d1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FailedPrecondition"));

    d.berthctl_ok(&["tasks", "kill", "-s", "SIGKILL", "d1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while task(&d, "d1")["status"] != "STOPPED" {
        assert!(Instant::now() < deadline, "not stopped: {}", task(&d, "d1"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(task(&d, "d1")["exit_status"], 137);
    d.berthctl_ok(&["tasks", "rm", "d1"]);
    d.berthctl_ok(&["containers", "rm", "d1"]);
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert_eq!(d.ctr_ok(&["tasks", "ls", "-q"]).trim(), "");

    // Events: start and exit (137) of d1, exec-added for e1.
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let _ = events.wait();
    let text = std::fs::read_to_string(&events_out).unwrap();
    let evs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        evs.iter()
            .all(|e| e["topic"].as_str().unwrap().starts_with("/tasks/")),
        "{text}"
    );
    assert!(
        evs.iter()
            .any(|e| e["topic"] == "/tasks/start" && e["event"]["container_id"] == "d1"),
        "{text}"
    );
    assert!(
        evs.iter()
            .any(|e| e["topic"] == "/tasks/exec-added" && e["event"]["exec_id"] == "e1"),
        "{text}"
    );
    assert!(
        evs.iter().any(|e| e["topic"] == "/tasks/exit"
            && e["event"]["id"] == "d1"
            && e["event"]["exit_status"] == 137),
        "{text}"
    );
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_bad_input() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let one_line = |args: &[&str], want: &str| {
        let out = d.berthctl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: want {want}: {err}");
    };
    one_line(
        &["run", "--rm", "docker.io/nope:latest", "x1", "true"],
        "NotFound",
    );
    one_line(&["run", "--rm", IMAGE, "a/b", "true"], "container id");
    one_line(
        &["run", "--rm", "--mount", "src=/tmp", IMAGE, "x2", "true"],
        "--mount",
    );
    one_line(
        &[
            "run",
            "--rm",
            "--runtime-binary",
            "/nonexistent/runc",
            IMAGE,
            "x3",
            "true",
        ],
        "runc",
    );
    d.berthctl_ok(&["run", "-d", IMAGE, "dup", "sleep", "100"]);
    one_line(&["run", "-d", IMAGE, "dup", "true"], "AlreadyExists");
    d.berthctl_ok(&[
        "tasks",
        "exec",
        "-d",
        "--exec-id",
        "e1",
        "dup",
        "sleep",
        "100",
    ]);
    one_line(
        &["tasks", "exec", "--exec-id", "e1", "dup", "true"],
        "AlreadyExists",
    );
    one_line(&["tasks", "kill", "-s", "SIGNOPE", "dup"], "signal");
    d.berthctl_ok(&["tasks", "rm", "--force", "dup"]);
    d.berthctl_ok(&["containers", "rm", "dup"]);
    // Refused runs left no containers or snapshots behind.
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    assert_eq!(d.json(&["snapshots", "ls"]).as_array().unwrap().len(), 1);
}

/// Kills a tmux session on drop.
struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn tmux_screen(session: &str) -> String {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_screen(session: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = tmux_screen(session);
        if s.contains(want) {
            return s;
        }
        assert!(Instant::now() < deadline, "{want:?} never appeared:\n{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_tty_in_tmux() {
    requires_root(&[TOOLS, &["tmux"]].concat());
    let d = Berthd::start();
    import_busybox(&d);
    let session = format!("berthctl-tty-{}", std::process::id());
    let cmd = format!(
        "BERTH_ADDRESS={} BERTH_FIFO_DIR={} {} run --rm -t {IMAGE} tty1 sh; echo EXIT=$?; sleep 30",
        d.address().display(),
        d.berthctl_fifo_dir().display(),
        berth_tests::bin("berthctl").display()
    );
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "20",
            &cmd,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = Tmux(session.clone());
    wait_screen(&session, "/ #");
    let keys = |k: &str| {
        Command::new("tmux")
            .args(["send-keys", "-t", &session, k, "Enter"])
            .status()
            .unwrap();
    };
    keys("stty size; tty; echo mark-$((40+2))");
    let s = wait_screen(&session, "mark-42");
    assert!(s.contains("20 100") && s.contains("/dev/pts/"), "{s}");
    Command::new("tmux")
        .args(["resize-window", "-t", &session, "-x", "120", "-y", "30"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    keys("stty size; exit 3");
    let s = wait_screen(&session, "EXIT=3");
    assert!(s.contains("30 120"), "resize reached the pty: {s}");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
}

#[test]
#[ignore = "needs root"]
fn berthctl_memory_limit_oom_and_crun() {
    requires_root(&[TOOLS, &["crun"]].concat());
    let d = Berthd::start();
    import_busybox(&d);
    let events_out = d.dir().join("oom-events.json");
    let mut events = d
        .berthctl_cmd(&["-o", "json", "events", "topic~=\"/tasks/(oom|exit)\""])
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // The limit reaches the container's cgroup (cgroupfs: /<ns>/<id>).
    d.berthctl_ok(&[
        "run",
        "-d",
        "--memory-limit",
        "33554432",
        IMAGE,
        "m1",
        "sleep",
        "100",
    ]);
    let limit = Path::new("/sys/fs/cgroup/memory/default/m1/memory.limit_in_bytes");
    if limit.exists() {
        assert_eq!(std::fs::read_to_string(limit).unwrap().trim(), "33554432");
    } else {
        eprintln!(
            "!!! no cgroup v1 memory controller at {}: limit not checked on the host",
            limit.display()
        );
    }
    d.berthctl_ok(&["tasks", "rm", "--force", "m1"]);
    d.berthctl_ok(&["containers", "rm", "m1"]);

    // Allocating past it: killed, a TaskOOM event, exit status 137.
    let out = d.berthctl(&[
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        IMAGE,
        "o1",
        "sh",
        "-c",
        "head -c 200000000 /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&events_out).unwrap_or_default();
        let evs: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let oom = evs
            .iter()
            .any(|e| e["topic"] == "/tasks/oom" && e["event"]["container_id"] == "o1");
        let exit = evs.iter().any(|e| {
            e["topic"] == "/tasks/exit"
                && e["event"]["container_id"] == "o1"
                && e["event"]["exit_status"] == 137
        });
        if oom && exit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no oom/exit events for o1: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.kill();
    let _ = events.wait();

    // crun as the runtime binary for one container.
    let out = d.berthctl_ok(&[
        "run",
        "--rm",
        "--runtime-binary",
        "crun",
        IMAGE,
        "c1",
        "echo",
        "hi-crun",
    ]);
    assert_eq!(out, "hi-crun\n");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
}

#[test]
#[ignore = "needs root"]
fn berthctl_parallel_containers_leave_nothing_behind() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let ids: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || {
                d.berthctl_ok(&["run", "-d", IMAGE, id, "sleep", "1000"]);
            });
        }
    });
    // One more started by ctr: berthctl sees and stops it too.
    // Its fifos go under the test dir: ctr never removes a detached task's.
    let fifo_dir = d.dir().join("ctr-fifo");
    let fifo_dir = fifo_dir.to_str().unwrap();
    d.ctr_ok(&[
        "run",
        "-d",
        "--fifo-dir",
        fifo_dir,
        IMAGE,
        "fromctr",
        "sleep",
        "1000",
    ]);
    let tasks = d.json(&["tasks", "ls"]);
    assert_eq!(tasks.as_array().unwrap().len(), 11, "{tasks}");
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "RUNNING"),
        "{tasks}"
    );

    std::thread::scope(|s| {
        for id in ids.iter().map(String::as_str).chain(["fromctr"]) {
            let d = &d;
            s.spawn(move || {
                d.berthctl_ok(&["tasks", "rm", "--force", id]);
                d.berthctl_ok(&["containers", "rm", id]);
            });
        }
    });
    assert_eq!(d.berthctl_ok(&["tasks", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["snapshots", "ls", "-q"]).lines().count(), 1);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = d.dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&dir), "mounts left under {dir}");
    for id in &ids {
        let fifo = d.berthctl_fifo_dir().join("default").join(id);
        assert!(!fifo.exists(), "fifo dir left for {id}");
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/memory/default/{id}")).exists(),
            "cgroup left for {id}"
        );
    }
    // berthctl's container leases went with the containers.
    let leases = d.json(&["leases", "ls"]);
    assert!(
        !leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"].as_str().unwrap().starts_with("berthctl.container.")),
        "{leases}"
    );
}
