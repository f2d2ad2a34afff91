//! Issue 4 through Debian's `ctr` (1.6) alone: `ctr run` (foreground, -d,
//! -t), `ctr tasks ...`, `ctr containers rm` and `ctr events` against a real
//! berthd, berth-shim and runc, the key flows again with crun
//! (`--runc-binary crun`). Bad input is in ctr_errors.rs.

mod ctr_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::tmux::Tmux;
use berth_tests::{requires_root, Berthd};
use ctr_support::*;

/// `ctr run --rm` of `echo hello` and `exit 7`: output and ctr's exit code.
fn foreground(binary: &str, tag: &str) {
    let d = daemon();
    let t1 = cid(tag, "t1");
    let out = ctr_run(&d, binary, &["--rm", IMAGE, &t1, "echo", "hello"]);
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // The same id again at once: each run's delete leaves nothing that
    // stands in the way of the next (runtime state, bundle, shim socket).
    for _ in 0..3 {
        let out = ctr_run(&d, binary, &["--rm", IMAGE, &t1, "true"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // `ctr tasks start` deletes the task it ran; the container stays.
    // (`ctr containers create` has no runtime binary flag: runc.)
    let t3 = cid(tag, "t3");
    if binary == "runc" {
        d.ctr_ok(&["containers", "create", IMAGE, &t3, "true"]);
        let fifos = fifo_dir(&d);
        for _ in 0..3 {
            d.ctr_ok(&["tasks", "start", "--fifo-dir", &fifos, &t3]);
        }
        d.ctr_ok(&["containers", "rm", &t3]);
    }
    let t2 = cid(tag, "t2");
    let out = ctr_run(&d, binary, &["--rm", IMAGE, &t2, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    // Killed from outside while ctr waits on it: 128 + 9.
    let t4 = cid(tag, "t4");
    let mut run = Reap(
        Command::new("ctr")
            .arg("--address")
            .arg(d.address())
            .args(["run", "--fifo-dir", &fifo_dir(&d)])
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
    for id in [&t1, &t2, &t3, &t4] {
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
    let fifos = fifo_dir(&d);
    let exec = |id: &str, cmd: &str| {
        d.ctr_ok(&[
            "tasks",
            "exec",
            "--fifo-dir",
            &fifos,
            "--exec-id",
            id,
            &t3,
            cmd,
        ])
    };
    let ps = exec("e1", "ps");
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("while")),
        "{ps}"
    );
    // The finished exec is gone; its id can be used again.
    exec("e1", "true");

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
#[ignore = "needs root"]
fn ctr_run_foreground_runc() {
    requires_root(TOOLS);
    foreground("runc", "r");
}

#[test]
#[ignore = "needs root"]
fn ctr_run_foreground_crun() {
    requires_root(&[TOOLS, &["crun"]].concat());
    foreground("crun", "c");
}

#[test]
#[ignore = "needs root"]
fn ctr_run_detached_lifecycle_runc() {
    requires_root(TOOLS);
    detached("runc", "r");
}

#[test]
#[ignore = "needs root"]
fn ctr_run_detached_lifecycle_crun() {
    requires_root(&[TOOLS, &["crun"]].concat());
    detached("crun", "c");
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
#[ignore = "needs root"]
fn ctr_events_show_start_and_exit_of_ctr_run() {
    requires_root(TOOLS);
    let d = daemon();
    let ev = CtrEvents::start(&d);
    let id = cid("e", "t2");
    let out = ctr_run(&d, "runc", &["--rm", IMAGE, &id, "sh", "-c", "exit 7"]);
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

/// `ctr run -t ... sh` in tmux: arithmetic, the pty's size (also after a
/// resize), `exit 3` is ctr's exit status; then `ctr tasks exec -t` into a
/// detached container the same way.
fn tty(binary: &str, tag: &str) {
    let d = daemon();
    let id = cid(tag, "tty");
    let flags = format!(
        "--fifo-dir {} {}",
        fifo_dir(&d),
        runtime_flags(binary).join(" ")
    );
    let ctr = format!("ctr --address {}", d.address().display());
    let tmux = Tmux::start(
        d.dir(),
        "run",
        100,
        30,
        &format!("{ctr} run {flags} --rm -t {IMAGE} {id} sh; echo EXIT=$?; sleep 60"),
    );
    tmux.wait_screen("/ #");
    let mut n = 0;
    let s = tmux.run_marked("echo $((6*7)); tty", &mut n);
    assert!(s.lines().any(|l| l.trim() == "42"), "{s}");
    assert!(s.contains("/dev/pts/"), "{s}");
    tmux.wait_size("30 100", &mut n);
    tmux.resize(120, 40);
    tmux.wait_size("40 120", &mut n);
    tmux.keys("exit 3");
    tmux.wait_screen("EXIT=3");
    assert_gone(&d, &id, None);

    // exec -t into a detached container.
    let bg = cid(tag, "ttyexec");
    let out = ctr_run(&d, binary, &["-d", IMAGE, &bg, "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shim = shim_pid(&d, &bg);
    let tmux = Tmux::start(
        d.dir(),
        "exec",
        100,
        30,
        &format!(
            "{ctr} tasks exec -t --fifo-dir {} --exec-id sh1 {bg} sh; echo EXIT=$?; sleep 60",
            fifo_dir(&d)
        ),
    );
    tmux.wait_screen("/ #");
    let mut n = 0;
    let s = tmux.run_marked("ps", &mut n);
    assert!(s.contains("sleep 1000"), "{s}");
    tmux.wait_size("30 100", &mut n);
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
#[ignore = "needs root"]
fn ctr_run_tty_in_tmux_runc() {
    requires_root(&[TOOLS, &["tmux"]].concat());
    tty("runc", "y");
}

#[test]
#[ignore = "needs root"]
fn ctr_run_tty_in_tmux_crun() {
    requires_root(&[TOOLS, &["tmux", "crun"]].concat());
    tty("crun", "z");
}
